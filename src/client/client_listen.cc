// The client side of LISTEN/NOTIFY in transaction and statement pooling (pool/notify.h).
//
// A pooled client's LISTEN and UNLISTEN never reach a server of the pool: pgplex answers
// them and keeps the client's channels; the pool's listener (server/server_listen.cc) does
// the listening.
//   - Between transactions (no server), a Query of LISTEN/UNLISTEN only is answered here.
//     A LISTEN adding a channel the listener does not LISTEN on yet waits for it (the
//     client's next messages wait behind it), so a NOTIFY committed after the client saw
//     "LISTEN" is never missed, as with PostgreSQL.
//   - With a server (inside a transaction, or pipelined behind other messages), the Query,
//     or the unnamed Parse/Bind/Execute drivers send, is answered in order with the
//     server's replies (server_expect.cc) and, as in PostgreSQL, takes effect when the
//     transaction commits (at the ReadyForQuery idle that ends it), not at all when it
//     fails or rolls back. It does not wait for the listener: a NOTIFY committed in the
//     moment after COMMIT returns may be missed.
// A notification goes out at once to a client between transactions, and otherwise waits,
// per client and bounded (limits.h), until the ReadyForQuery that ends its transaction:
// never in the middle of another reply.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

using proto::BackendMessage;

pool::ClientListen& listens_of(Client& client) {
    Session& session = *client.session;
    if (!session.listen) session.listen = std::make_unique<pool::ClientListen>();
    return *session.listen;
}

bool waits(const Client& client) {
    return client.state != ClientState::Free && client.session && client.session->listen &&
           client.session->listen->awaiting > 0;
}

bool contains(const std::vector<std::string>& names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

bool contains(const std::vector<uint32_t>& slots, uint32_t slot) {
    return std::find(slots.begin(), slots.end(), slot) != slots.end();
}

void erase_slot(std::vector<uint32_t>& slots, uint32_t slot) {
    auto found = std::find(slots.begin(), slots.end(), slot);
    if (found == slots.end()) return;
    *found = slots.back();
    slots.pop_back();
}

// The channel on this worker, made wanted when new, with the client in it (`wait`: as a
// waiter until the listener LISTENs on it). The hub hears of it last: its answer may come
// at once, into on_listen_confirmed or on_listen_failed.
void join(worker::Worker& worker, Client& client, const std::string& name, bool wait) {
    pool::PoolListen& listens = server::pool_listen(worker, client.pool->id);
    auto [it, made] = listens.channels.try_emplace(name);
    pool::LocalChannel& channel = it->second;
    if (made) channel.seq = listens.next_seq++;
    uint32_t slot = worker.client_slot(client);
    if (!wait) {
        channel.clients.push_back(slot);
    } else if (!channel.confirmed) {
        channel.waiting.push_back(slot);
        ++listens_of(client).awaiting;
    }
    uint64_t seq = channel.seq;
    if (made) server::want_channel(worker, *client.pool, name, true, seq);
}

// Takes the client out of the channel; the last one out makes it unwanted on this worker.
void leave(worker::Worker& worker, Client& client, const std::string& name) {
    pool::PoolListen& listens = server::pool_listen(worker, client.pool->id);
    auto it = listens.channels.find(name);
    if (it == listens.channels.end()) return;
    uint32_t slot = worker.client_slot(client);
    erase_slot(it->second.clients, slot);
    erase_slot(it->second.waiting, slot);
    if (!it->second.clients.empty() || !it->second.waiting.empty()) return;
    listens.channels.erase(it);
    server::want_channel(worker, *client.pool, name, false, listens.next_seq++);
}

// The client's channels become `after`. Its list is set first: an answer that comes at once
// (a failure) takes the channel out of it again.
void set_channels(worker::Worker& worker, Client& client, std::vector<std::string> after) {
    pool::ClientListen& mine = listens_of(client);
    std::vector<std::string> before = std::move(mine.channels);
    mine.channels = after;
    for (const std::string& name : before)
        if (!contains(after, name)) leave(worker, client, name);
    for (const std::string& name : after) {
        if (contains(before, name)) continue;
        pool::PoolListen& listens = server::pool_listen(worker, client.pool->id);
        auto it = listens.channels.find(name);
        uint32_t slot = worker.client_slot(client);
        if (it != listens.channels.end() && contains(it->second.waiting, slot)) {
            erase_slot(it->second.waiting, slot);  // its held LISTEN is answered
            it->second.clients.push_back(slot);
        } else {
            join(worker, client, name, false);
        }
    }
}

void commit(worker::Worker& worker, Client& client,
            const std::vector<pool::ListenChange>& changes) {
    std::vector<std::string> after = listens_of(client).channels;
    pool::apply_listen(after, changes);
    set_channels(worker, client, std::move(after));
}

void write_tags(proto::Writer& writer, const std::vector<pool::ListenChange>& changes) {
    for (const pool::ListenChange& change : changes) {
        writer.begin(BackendMessage::CommandComplete);
        writer.cstring(pool::listen_tag(change.kind));
        writer.end();
    }
}

std::string refusal_body(pool::ListenQuery kind) {
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Error, sqlstate::feature_not_supported,
                       pool::listen_refusal(kind));
    PGPLEX_ASSERT(writer.ok());
    return std::string(reinterpret_cast<const char*>(bytes) + 5, writer.size() - 5);
}

void write_dropped_notice(worker::Worker& worker, Client& client, pool::ClientListen& mine) {
    if (mine.dropped == 0) return;
    std::string message =
        "pgplex dropped " + std::to_string(mine.dropped) +
        " notifications for this connection: more than " +
        std::to_string(limits::listen_backlog_notifications_max) + " notifications or " +
        std::to_string(limits::listen_backlog_bytes_max >> 20) + " MiB were waiting for it";
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Warning, sqlstate::program_limit_exceeded, message,
                       {}, "Read notifications sooner, or hold transactions shorter.");
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
    mine.dropped = 0;
}

void deliver(worker::Worker& worker, Client& client, std::string_view message) {
    if (client.state == ClientState::Closing || client.state == ClientState::Free ||
        !client.session)
        return;
    pool::ClientListen& mine = listens_of(client);
    uint64_t unsent = uint64_t(client.conn.out.bytes) + mine.backlog.size() + message.size();
    if (unsent > limits::listen_backlog_bytes_max ||
        mine.backlog_count >= limits::listen_backlog_notifications_max) {
        if (mine.dropped++ == 0)
            log_warning("%s: %u notifications (%zu bytes) wait for it: dropping more",
                        log_context(worker, client).c_str(), mine.backlog_count, size_t(unsent));
        return;
    }
    if (client.state == ClientState::Idle && mine.awaiting == 0 && mine.backlog.empty()) {
        write_dropped_notice(worker, client, mine);
        queue(worker, client, reinterpret_cast<const uint8_t*>(message.data()),
              uint32_t(message.size()));
        return;
    }
    mine.backlog.append(message);
    ++mine.backlog_count;
}

// The held LISTEN's answer: its channels take effect, or (a channel failed) none does.
void finish_held(worker::Worker& worker, Client& client) {
    pool::ClientListen& mine = listens_of(client);
    std::vector<std::string> after = mine.channels;
    pool::apply_listen(after, mine.held);
    uint8_t bytes[limits::synthesized_reply_bytes_max];
    proto::Writer writer(bytes, sizeof bytes);
    if (mine.held_error.empty()) {
        set_channels(worker, client, std::move(after));
        write_tags(writer, mine.held);
    } else {
        for (const std::string& name : after)
            if (!contains(mine.channels, name)) leave(worker, client, name);
        writer.begin(BackendMessage::ErrorResponse);
        writer.bytes(mine.held_error.data(), uint32_t(mine.held_error.size()));
        writer.end();
    }
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
    mine.held.clear();
    mine.held_error.clear();
    mine.awaiting = 0;
    flush_notifications(worker, client);
}

void begin_held(worker::Worker& worker, Client& client, std::vector<pool::ListenChange> changes) {
    pool::ClientListen& mine = listens_of(client);
    mine.held = std::move(changes);
    mine.held_error.clear();
    std::vector<std::string> after = mine.channels;
    pool::apply_listen(after, mine.held);
    mine.awaiting = 1;  // a guard: an answer that comes at once must not finish it yet
    for (const std::string& name : after)
        if (!contains(mine.channels, name)) join(worker, client, name, true);
    if (--mine.awaiting == 0) finish_held(worker, client);
}

// A held LISTEN heard about one of its channels: answered when it was the last.
void settle_waiter(worker::Worker& worker, Client& client, std::string_view error) {
    pool::ClientListen& mine = *client.session->listen;
    if (!error.empty() && mine.held_error.empty()) mine.held_error.assign(error);
    if (--mine.awaiting > 0) return;
    finish_held(worker, client);
    resume(worker, client);
}

}  // namespace

uint32_t answer_listen(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (size < 5 || data[0] != uint8_t(proto::FrontendMessage::Query)) return 0;
    uint32_t length = proto::read_be32(data + 1);
    if (length < 5 || length > size - 1) return 0;  // not whole here: the server path has it
    std::string_view query(reinterpret_cast<const char*>(data) + 5, length - 4);
    query = query.substr(0, query.find('\0'));
    if (!pool::may_listen(query)) return 0;
    std::vector<pool::ListenChange> changes;
    pool::ListenQuery kind = pool::parse_listen(query, changes);
    if (kind == pool::ListenQuery::None) return 0;
    if (kind == pool::ListenQuery::Only) {
        begin_held(worker, client, std::move(changes));
        return 1 + length;
    }
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Error, sqlstate::feature_not_supported,
                       pool::listen_refusal(kind));
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
    return 1 + length;
}

bool listen_holds(const Client& client) {
    return waits(client);
}

bool takes_listen_query(Outbound& out, std::string_view query) {
    if (!pool::may_listen(query)) return false;
    std::vector<pool::ListenChange> changes;
    pool::ListenQuery kind = pool::parse_listen(query, changes);
    if (kind == pool::ListenQuery::None) return false;
    // In a failed transaction the server refuses it (25P02) and runs nothing.
    if (kind == pool::ListenQuery::Only && out.server.status == proto::TransactionStatus::Failed &&
        out.server.expected.empty())
        return false;
    server::Pending pending;
    pending.expect = server::Expect::Query;
    pending.reply = server::Reply::Synthesize;
    pending.listen = true;
    pending.text = kind == pool::ListenQuery::Only ? pool::encode_listen(changes)
                                                   : pool::encode_listen_error(refusal_body(kind));
    server::expect(out.worker, out.server, std::move(pending));
    return true;
}

ListenParse on_listen_parse(Outbound& out, std::string_view query, std::string& text) {
    if (!pool::may_listen(query)) return ListenParse::Pass;
    std::vector<pool::ListenChange> changes;
    pool::ListenQuery kind = pool::parse_listen(query, changes);
    if (kind == pool::ListenQuery::Unreadable) {
        text = pool::listen_refusal(kind);
        return ListenParse::Refuse;
    }
    // Several statements: the server refuses a Parse of them, and runs none.
    if (kind != pool::ListenQuery::Only || changes.size() != 1) return ListenParse::Pass;
    if (out.server.status == proto::TransactionStatus::Failed && out.server.expected.empty())
        return ListenParse::Pass;
    text = pool::encode_listen(changes);
    return ListenParse::Local;
}

bool refuses_prepared_listen(std::string_view query, std::string& text) {
    std::vector<pool::ListenChange> changes;
    if (!pool::may_listen(query) || pool::parse_listen(query, changes) == pool::ListenQuery::None)
        return false;
    text =
        "pgplex answers LISTEN and UNLISTEN itself in transaction pooling and cannot prepare "
        "them: send them unprepared (psycopg: prepare=False)";
    return true;
}

void write_listen_reply(worker::Worker& worker, Client& client, const server::Pending& head,
                        proto::TransactionStatus status, proto::Writer& writer) {
    std::vector<pool::ListenChange> changes;
    std::string_view error;
    bool query = head.expect == server::Expect::Query;
    if (!pool::decode_listen(head.text, changes, error)) {
        writer.begin(BackendMessage::ErrorResponse);
        writer.bytes(error.data(), uint32_t(error.size()));
        writer.end();
    } else if (status == proto::TransactionStatus::Failed) {
        proto::write_error(
            writer, proto::Severity::Error, sqlstate::in_failed_sql_transaction,
            "current transaction is aborted, commands ignored until end of transaction block");
    } else {
        write_tags(writer, changes);
        // A Query in no transaction block is its own transaction: it commits now.
        if (query && status == proto::TransactionStatus::Idle) {
            commit(worker, client, changes);
        } else {
            std::vector<pool::ListenChange>& pending = listens_of(client).pending;
            pending.insert(pending.end(), changes.begin(), changes.end());
        }
    }
    if (query) proto::write_ready_for_query(writer, status);
}

bool has_pending_listens(const Client& client) {
    return client.session && client.session->listen && !client.session->listen->pending.empty();
}

void settle_listens(worker::Worker& worker, Client& client) {
    if (!has_pending_listens(client)) return;
    Session& session = *client.session;
    std::vector<pool::ListenChange> pending = std::move(session.listen->pending);
    session.listen->pending.clear();
    if (session.transaction_failed || session.transaction_rolled_back) return;
    commit(worker, client, pending);
}

void flush_notifications(worker::Worker& worker, Client& client) {
    if (!client.session || !client.session->listen || client.state != ClientState::Idle) return;
    pool::ClientListen& mine = *client.session->listen;
    if (mine.awaiting > 0) return;
    if (!mine.backlog.empty()) {
        queue(worker, client, reinterpret_cast<const uint8_t*>(mine.backlog.data()),
              uint32_t(mine.backlog.size()));
        mine.backlog.clear();
        mine.backlog_count = 0;
        if (mine.backlog.capacity() > 65536) mine.backlog.shrink_to_fit();
    }
    write_dropped_notice(worker, client, mine);  // the dropped ones came after these
}

void forget_listens(worker::Worker& worker, Client& client) {
    if (!client.session || !client.session->listen || client.pool == nullptr) return;
    pool::ClientListen& mine = *client.session->listen;
    std::vector<std::string> names = std::move(mine.channels);
    mine.channels.clear();
    std::vector<std::string> held = names;
    pool::apply_listen(held, mine.held);  // channels its held LISTEN waits for
    for (std::string& name : held)
        if (!contains(names, name)) names.push_back(std::move(name));
    mine.awaiting = 0;
    mine.pending.clear();
    for (const std::string& name : names) leave(worker, client, name);
}

void on_listen_confirmed(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                         uint64_t seq) {
    pool::PoolListen& listens = server::pool_listen(worker, pool.id);
    auto it = listens.channels.find(channel);
    if (it == listens.channels.end() || it->second.seq != seq || it->second.confirmed) return;
    it->second.confirmed = true;
    std::vector<uint32_t> waiting = it->second.waiting;  // finishing one changes the list
    std::string name(channel);
    for (uint32_t slot : waiting) {
        auto now = listens.channels.find(name);
        if (now == listens.channels.end() || !contains(now->second.waiting, slot)) continue;
        Client& client = worker.client(slot);
        if (waits(client)) settle_waiter(worker, client, {});
    }
}

void on_listen_failed(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                      uint64_t seq, std::string_view error_body) {
    pool::PoolListen& listens = server::pool_listen(worker, pool.id);
    auto it = listens.channels.find(channel);
    if (it == listens.channels.end() || it->second.seq != seq || it->second.confirmed) return;
    // The hub no longer counts this worker for it.
    std::vector<uint32_t> clients = std::move(it->second.clients);
    std::vector<uint32_t> waiting = std::move(it->second.waiting);
    listens.channels.erase(it);
    if (!clients.empty())
        log_warning("LISTEN \"%.*s\" failed on the listener: %zu clients no longer listen to it",
                    int(channel.size()), channel.data(), clients.size());
    for (uint32_t slot : clients) {
        Client& client = worker.client(slot);
        if (!client.session || !client.session->listen) continue;
        std::vector<std::string>& names = client.session->listen->channels;
        names.erase(std::remove(names.begin(), names.end(), channel), names.end());
    }
    for (uint32_t slot : waiting) {
        Client& client = worker.client(slot);
        if (waits(client)) settle_waiter(worker, client, error_body);
    }
}

void on_notification(worker::Worker& worker, pool::Pool& pool, std::string_view channel,
                     std::string_view message) {
    pool::PoolListen& listens = server::pool_listen(worker, pool.id);
    auto it = listens.channels.find(channel);
    if (it == listens.channels.end()) {
        // No client here wants it (any more): the hub is told again, in case it missed it.
        server::want_channel(worker, pool, channel, false, listens.next_seq++);
        return;
    }
    for (uint32_t slot : it->second.clients) deliver(worker, worker.client(slot), message);
}

}  // namespace pgplex::client
