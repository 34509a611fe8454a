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
#include "pgplex/client/client_work.h"
#include "pgplex/io/worker.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/internal.h"

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
void settle(io::Worker& worker, Server& server, bool ok) {
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
    server.expected.pop_front();
}

void skip_to_sync(io::Worker& worker, Server& server) {
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
void write_reply(io::Worker& worker, Server& server, client::Client& client) {
    const Pending& head = server.expected.front();
    uint8_t bytes[2048];
    proto::Writer writer(bytes, sizeof bytes);
    if (head.reply == Reply::Fail) {
        writer.begin(BackendMessage::ErrorResponse);
        writer.bytes(head.text.data(), uint32_t(head.text.size()));
        writer.end();
    } else {
        write_synthesized(writer, head, server.status);
    }
    PGPLEX_ASSERT(writer.ok());
    worker.buffers.append_copy(client.conn.out, writer.data(), writer.size());
}

}  // namespace

void expect(io::Worker& worker, Server& server, Pending pending) {
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

void emit_due(io::Worker& worker, Server& server) {
    if (server.client == io::nil || !server.conn.frame.between_messages()) return;
    client::Client& client = worker.client(server.client);
    bool wrote = false;
    while (!server.expected.empty()) {
        Reply reply = server.expected.front().reply;
        if (reply != Reply::Synthesize && reply != Reply::Fail) break;
        write_reply(worker, server, client);
        wrote = true;
        settle(worker, server, reply == Reply::Synthesize);
        if (reply == Reply::Fail) skip_to_sync(worker, server);
    }
    if (wrote) client::on_server_output(worker, client);
}

proto::Fate on_reply(io::Worker& worker, Server& server, uint8_t type) {
    emit_due(worker, server);  // a new header: the previous reply is complete
    if (server.expected.empty() || type == uint8_t(BackendMessage::NoticeResponse) ||
        type == uint8_t(BackendMessage::NotificationResponse) ||
        type == uint8_t(BackendMessage::ParameterStatus))
        return proto::Fate::Forward;
    Expect expect = server.expected.front().expect;
    if (type == uint8_t(BackendMessage::ErrorResponse)) {
        if (extended(expect)) {
            settle(worker, server, false);
            skip_to_sync(worker, server);
        }
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

void forget_expected(io::Worker& worker, Server& server) {
    while (!server.expected.empty()) settle(worker, server, false);
    server.skipping = false;
}

}  // namespace pgplex::server
