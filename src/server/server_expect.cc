// The replies a server owes, in order (server.h, Pending).
//
// PostgreSQL answers the messages of a connection strictly in order, and after an error in
// the extended protocol ignores every message up to the next Sync. pgplex notes, for each
// message it passes on or answers itself, how the reply ends; as replies arrive it pops
// them, drops the replies to its own messages (a lazy Parse of a statement the client
// prepared on another server, the Close of an evicted one), and writes its own replies
// (ParseComplete for a statement this server already holds, CloseComplete, a local error)
// exactly where the server's would have been. A Parse that fails, or is skipped after an
// error, is undone: the server does not hold the statement, the client does not own the
// name.
#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/internal.h"
#include "pgplex/worker/worker.h"

namespace pgplex::server {

namespace {

using proto::BackendMessage;

// Whether a reply of this type is the last one a message of this kind gets.
bool ends(Expect expect, uint8_t type) {
    switch (expect) {
        case Expect::Parse:
            return type == uint8_t(BackendMessage::ParseComplete);
        case Expect::Bind:
            return type == uint8_t(BackendMessage::BindComplete);
        case Expect::Close:
            return type == uint8_t(BackendMessage::CloseComplete);
        case Expect::Describe:
            return type == uint8_t(BackendMessage::RowDescription) ||
                   type == uint8_t(BackendMessage::NoData);
        case Expect::Execute:
            return type == uint8_t(BackendMessage::CommandComplete) ||
                   type == uint8_t(BackendMessage::EmptyQueryResponse) ||
                   type == uint8_t(BackendMessage::PortalSuspended);
        case Expect::Sync:
        case Expect::Query:
        case Expect::FunctionCall:
            return type == uint8_t(BackendMessage::ReadyForQuery);
    }
    return false;
}

// Messages after which an error makes the server skip to the next Sync.
bool extended(Expect expect) {
    return expect != Expect::Sync && expect != Expect::Query && expect != Expect::FunctionCall;
}

// Pops the oldest; `ok`: it was answered, else it failed or the server skipped it.
void settle(worker::Worker& worker, Server& server, bool ok) {
    Pending& head = server.expected.front();
    if (!extended(head.expect) && server.pending_syncs > 0) --server.pending_syncs;
    if (head.statement != nullptr) {
        if (ok && head.prepares) head.statement->validated = true;
        if (!ok) {
            if (head.prepares) server.prepared.remove(head.statement->id);
            if (!head.text.empty() && server.client != io::nil)
                client::forget_statement(worker, worker.client(server.client), head.text,
                                         head.statement);
        }
        worker.statements.unref(head.statement);
    }
    if (head.session_record && server.client != io::nil)
        client::follow_statement(worker.client(server.client), head.expect == Expect::Parse,
                                 head.text, ok);
    if (head.retry && server.replay_record == ReplayRecord::Complete) {
        server.replay_record = ReplayRecord::Off;  // answered: nothing to send again
        server.replay.clear();
    }
    server.expected.pop_front();
}

// pgplex's own Query among the client's (a RESET's follow-up): every reply it gets, errors
// and its ReadyForQuery included, is dropped; a ParameterStatus still tells the client.
bool swallows_query(const Server& server) {
    return !server.expected.empty() && server.expected.front().expect == Expect::Query &&
           server.expected.front().reply == Reply::Swallow;
}

void skip_to_sync(worker::Worker& worker, Server& server) {
    while (!server.expected.empty() && server.expected.front().expect != Expect::Sync)
        settle(worker, server, false);
    server.skipping = server.expected.empty();
}

// The reply PostgreSQL would give to a message pgplex answered itself: a statement the
// server already holds, a Close of a client's name, or a DEALLOCATE of the client's own
// statements (by Query, or by Parse/Bind/Describe/Execute of the unnamed statement).
void write_synthesized(proto::Writer& writer, const Pending& head,
                       proto::TransactionStatus status) {
    switch (head.expect) {
        case Expect::Parse:
            writer.begin(BackendMessage::ParseComplete);
            break;
        case Expect::Bind:
            writer.begin(BackendMessage::BindComplete);
            break;
        case Expect::Close:
            writer.begin(BackendMessage::CloseComplete);
            break;
        case Expect::Describe:
            if (head.text == "S") {
                writer.begin(BackendMessage::ParameterDescription);
                writer.int16(0);
                writer.end();
            }
            writer.begin(BackendMessage::NoData);
            break;
        case Expect::Execute:
        case Expect::Query:
            writer.begin(BackendMessage::CommandComplete);
            writer.cstring(head.text);
            if (head.expect == Expect::Execute) break;
            writer.end();
            writer.begin(BackendMessage::ReadyForQuery);
            writer.int8(uint8_t(status));
            break;
        case Expect::Sync:
        case Expect::FunctionCall:
            PGPLEX_ASSERT(!"never answered by pgplex");
    }
    writer.end();
}

// pgplex's own reply for the oldest, into the client's queue.
void write_reply(worker::Worker& worker, Server& server, client::Client& client) {
    const Pending& head = server.expected.front();
    uint8_t bytes[limits::synthesized_reply_bytes_max];
    proto::Writer writer(bytes, sizeof bytes);
    if (head.reply == Reply::Fail) {
        writer.begin(BackendMessage::ErrorResponse);
        writer.bytes(head.text.data(), uint32_t(head.text.size()));
        writer.end();
        if (head.expect == Expect::Query) {  // a simple Query ends with ReadyForQuery
            writer.begin(BackendMessage::ReadyForQuery);
            writer.int8(uint8_t(server.status));
            writer.end();
        }
    } else if (head.listen) {
        client::write_listen_reply(worker, client, head, server.status, writer);
    } else {
        write_synthesized(writer, head, server.status);
    }
    PGPLEX_ASSERT(writer.ok());
    worker.buffers.append_copy(client.conn.out, writer.data(), writer.size());
}

// What a message of the replay record will be answered with, or false for none.
bool expect_of(uint8_t type, Expect& out) {
    switch (type) {
        case uint8_t(proto::FrontendMessage::Bind):
            out = Expect::Bind;
            return true;
        case uint8_t(proto::FrontendMessage::Describe):
            out = Expect::Describe;
            return true;
        case uint8_t(proto::FrontendMessage::Execute):
            out = Expect::Execute;
            return true;
        case uint8_t(proto::FrontendMessage::Sync):
            out = Expect::Sync;
            return true;
        default:
            return false;
    }
}

// Whether the record holds only Bind, Describe, Execute, Flush and the Sync: messages that
// can go again without pgplex's bookkeeping of statements and names.
bool replayable(std::string_view record) {
    size_t at = 0;
    while (record.size() - at >= 5) {
        uint8_t type = uint8_t(record[at]);
        Expect expect;
        if (!expect_of(type, expect) && type != uint8_t(proto::FrontendMessage::Flush))
            return false;
        at += 1 + proto::read_be32(reinterpret_cast<const uint8_t*>(record.data()) + at + 1);
    }
    return at == record.size();
}

// The head is a retry Bind whose record is complete, and its Sync is the last message the
// server has: sending the record again keeps every reply in order.
bool may_retry(const Server& server) {
    const Pending& head = server.expected.front();
    if (!head.retry || server.replay_record != ReplayRecord::Complete) return false;
    uint32_t syncs = 0;
    for (const Pending& pending : server.expected) syncs += pending.expect == Expect::Sync;
    return syncs == 1 && server.expected.back().expect == Expect::Sync && replayable(server.replay);
}

// The statement went stale on this server: prepare it again and send the record again.
// The failed run's replies, down to its ReadyForQuery, never reach the client.
void replay(worker::Worker& worker, Server& server) {
    pool::Statement* statement = server.expected.front().statement;
    pool::StatementCache::ref(statement);
    std::string record = std::move(server.replay);
    server.replay.clear();
    server.replay_record = ReplayRecord::Off;
    while (server.expected.front().expect != Expect::Sync) settle(worker, server, false);
    server.expected.front().reply = Reply::Swallow;
    uint8_t bytes[128];
    proto::Writer writer(bytes, sizeof bytes);
    writer.begin(proto::FrontendMessage::Close);
    writer.int8('S');
    writer.cstring(statement->server_name);
    writer.end();
    // The Parse's header and name; its tail (query and types) follows as it is kept.
    const std::string& tail = statement->parse_tail;
    writer.int8(uint8_t(proto::FrontendMessage::Parse));
    writer.int32(uint32_t(4 + pool::server_name_bytes + tail.size()));
    writer.cstring(statement->server_name);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, server, writer.data(), writer.size());
    queue(worker, server, reinterpret_cast<const uint8_t*>(tail.data()), uint32_t(tail.size()));
    Pending close;
    close.expect = Expect::Close;
    close.reply = Reply::Swallow;
    expect(worker, server, std::move(close));
    Pending parse;
    parse.expect = Expect::Parse;
    parse.reply = Reply::Swallow;
    parse.prepares = true;
    parse.statement = statement;  // the reference taken above
    expect(worker, server, std::move(parse));
    server.prepared.add(statement->id, server.epoch);
    queue(worker, server, reinterpret_cast<const uint8_t*>(record.data()), uint32_t(record.size()));
    for (size_t at = 0; at < record.size();) {
        Pending again;
        if (expect_of(uint8_t(record[at]), again.expect)) expect(worker, server, std::move(again));
        at += 1 + proto::read_be32(reinterpret_cast<const uint8_t*>(record.data()) + at + 1);
    }
    log_info(
        "server %s: prepared statement %s went stale (cached plan must not change result "
        "type); prepared again and retried once",
        server.pool->target.endpoint.to_string().c_str(), statement->server_name);
}

}  // namespace

void on_held_error(worker::Worker& worker, Server& server, const uint8_t* body, uint32_t size) {
    proto::ErrorFields fields;
    bool stale = proto::parse_error(body, size, fields) && fields.code == "0A000" &&
                 fields.message == "cached plan must not change result type";
    if (stale) {
        replay(worker, server);
        return;
    }
    if (server.client != io::nil) {
        client::Client& client = worker.client(server.client);
        uint8_t header[5] = {uint8_t(BackendMessage::ErrorResponse), 0, 0, 0, 0};
        uint32_t length = size + 4;
        for (int i = 0; i < 4; ++i) header[1 + i] = uint8_t(length >> (24 - 8 * i));
        worker.buffers.append_copy(client.conn.out, header, sizeof header);
        worker.buffers.append_copy(client.conn.out, body, size);
        if (client.session) client.session->transaction_failed = true;
    }
    settle(worker, server, false);
    skip_to_sync(worker, server);
}

void expect(worker::Worker& worker, Server& server, Pending pending) {
    if (server.skipping) {
        if (pending.expect != Expect::Sync) {
            // The server ignores the message; so does pgplex.
            server.expected.push_back(std::move(pending));
            settle(worker, server, false);
            return;
        }
        server.skipping = false;
    }
    if (!extended(pending.expect)) ++server.pending_syncs;
    server.expected.push_back(std::move(pending));
    emit_due(worker, server);
}

void emit_due(worker::Worker& worker, Server& server) {
    if (server.client == io::nil || !server.conn.frame.between_messages()) return;
    client::Client& client = worker.client(server.client);
    bool wrote = false;
    while (!server.expected.empty()) {
        Reply reply = server.expected.front().reply;
        if (reply != Reply::Synthesize && reply != Reply::Fail) break;
        write_reply(worker, server, client);
        wrote = true;
        bool extended_failure = reply == Reply::Fail && extended(server.expected.front().expect);
        settle(worker, server, reply == Reply::Synthesize);
        if (extended_failure) skip_to_sync(worker, server);
    }
    if (wrote) client::on_server_output(worker, client);
}

proto::Fate on_reply(worker::Worker& worker, Server& server, uint8_t type, uint32_t length) {
    emit_due(worker, server);  // a new header: the previous reply is complete
    if (swallows_query(server) && type != uint8_t(BackendMessage::NotificationResponse) &&
        type != uint8_t(BackendMessage::ParameterStatus)) {
        if (type == uint8_t(BackendMessage::ReadyForQuery)) settle(worker, server, true);
        return proto::Fate::Drop;
    }
    if (server.expected.empty() || type == uint8_t(BackendMessage::NoticeResponse) ||
        type == uint8_t(BackendMessage::NotificationResponse) ||
        type == uint8_t(BackendMessage::ParameterStatus))
        return proto::Fate::Forward;
    Expect expect = server.expected.front().expect;
    if (type == uint8_t(BackendMessage::ErrorResponse)) {
        if (!extended(expect)) return proto::Fate::Forward;
        // Held back to read: the Bind may be retried (on_held_error).
        if (may_retry(server) && length <= limits::assembled_message_bytes_max)
            return proto::Fate::Inspect;
        settle(worker, server, false);
        skip_to_sync(worker, server);
        return proto::Fate::Forward;
    }
    if (type == uint8_t(BackendMessage::ReadyForQuery) && extended(expect)) {
        skip_to_sync(worker, server);  // not expected: the server skipped them
        server.skipping = false;
        if (server.expected.empty()) return proto::Fate::Forward;
        expect = server.expected.front().expect;
    }
    if (!ends(expect, type)) return proto::Fate::Forward;
    Reply reply = server.expected.front().reply;
    settle(worker, server, true);
    return reply == Reply::Swallow ? proto::Fate::Drop : proto::Fate::Forward;
}

void forget_expected(worker::Worker& worker, Server& server) {
    while (!server.expected.empty()) settle(worker, server, false);
    server.skipping = false;
}

}  // namespace pgplex::server
