// A logged-in server's traffic and lifetime: forwarding its responses straight from the
// buffers they arrived in, watching ReadyForQuery for the transaction state, reading the
// answers to pgplex's own queries, and closed when idle or old. Lending it to a client,
// and taking it back, is server_lease.cc.
#include <cstring>
#include <string>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/server/server_work.h"

namespace pgplex::server {

namespace {

using proto::BackendMessage;

uint32_t queued_bytes_max(const worker::Worker& worker) {
    return limits::queued_buffers_max * worker.buffers.buffer_size();
}

void record_parameter(Server& server, const uint8_t* body, uint32_t size) {
    const char* name = reinterpret_cast<const char*>(body);
    size_t name_size = strnlen(name, size);
    if (name_size + 1 >= size) return;
    const char* value = name + name_size + 1;
    set_parameter(server, std::string(name, name_size),
                  std::string(value, strnlen(value, size - name_size - 1)));
}

// SHOW STATS and /metrics' histograms: a ReadyForQuery ends a query, and one that reports
// idle a transaction. Both began at the client's request (its last bytes, client.request),
// the transaction at its first.
void count_ready(const worker::Worker& worker, Server& server, const client::Client& client) {
    if (server.pool == nullptr) return;
    pool::Pool& pool = *server.pool;
    constexpr int64_t us_per_ms = 1000;
    uint64_t query_us = uint64_t(std::max<int64_t>(0, worker.now - client.request)) * us_per_ms;
    pool.count(pool::Stat::Queries, 1);
    pool.count(pool::Stat::QueryUs, query_us);
    pool.query_time.observe(query_us);
    if (server.transaction_started == 0) server.transaction_started = client.request;
    if (server.status != proto::TransactionStatus::Idle) return;
    uint64_t transaction_us =
        uint64_t(std::max<int64_t>(0, worker.now - server.transaction_started)) * us_per_ms;
    pool.count(pool::Stat::Transactions, 1);
    pool.count(pool::Stat::TransactionUs, transaction_us);
    pool.transaction_time.observe(transaction_us);
    server.transaction_started = 0;
}

// Bytes from an Active server, on their way to its client.
struct ForwardHandler {
    worker::Worker& worker;
    Server& server;
    client::Client& client;
    uint32_t buffer;
    const uint8_t* base;
    bool reading_error = false;  // an ErrorResponse held to see whether it is FATAL

    proto::Fate on_header(uint8_t type, uint32_t length) {
        // A pooled client outlives its server (client_failure.h): a FATAL, the server's last
        // words, answers none of its requests, so the error is read before it settles one.
        if (type == uint8_t(BackendMessage::ErrorResponse) && client.session &&
            (client.session->mode != config::PoolMode::Session ||
             !client.session->state_on_server) &&
            length <= limits::assembled_message_bytes_max) {
            reading_error = true;
            return proto::Fate::Inspect;
        }
        proto::Fate fate = on_reply(worker, server, type, length);
        if (fate != proto::Fate::Forward) return fate;  // dropped, or an error held back
        switch (type) {
            case uint8_t(BackendMessage::CopyInResponse):
            case uint8_t(BackendMessage::CopyOutResponse):
            case uint8_t(BackendMessage::CopyBothResponse):
                server.copying = true;
                return proto::Fate::Forward;
            case uint8_t(BackendMessage::ReadyForQuery):
                return proto::Fate::ForwardInspect;
            case uint8_t(BackendMessage::ParameterStatus):
                return length <= limits::assembled_message_bytes_max ? proto::Fate::ForwardInspect
                                                                     : proto::Fate::Forward;
            case uint8_t(BackendMessage::CommandComplete):
                // Only its tag is read: a ROLLBACK drops the SETs of the transaction, a
                // DISCARD ALL every prepared statement.
                return client.session &&
                               (!client.session->pending.empty() || client.session->statements ||
                                client::has_pending_listens(client))
                           ? proto::Fate::ForwardInspect
                           : proto::Fate::Forward;
            case uint8_t(BackendMessage::ErrorResponse):
                if (client.session) client.session->transaction_failed = true;
                return proto::Fate::Forward;
            default:
                return proto::Fate::Forward;
        }
    }
    // An ErrorResponse read on its way: kept when FATAL (the server closes next), else
    // settled and passed on (or held back, on_held_error) as on_header would have.
    void pass_error(const uint8_t* body, uint32_t size) {
        proto::ErrorFields fields;
        if (proto::parse_error(body, size, fields) &&
            (fields.severity == "FATAL" || fields.severity == "PANIC")) {
            server.last_words.assign(body, body + size);
            return;
        }
        uint8_t type = uint8_t(BackendMessage::ErrorResponse);
        proto::Fate fate = on_reply(worker, server, type, size + 4);
        if (fate == proto::Fate::Inspect) {
            on_held_error(worker, server, body, size);
            return;
        }
        if (fate != proto::Fate::Forward) return;
        client.session->transaction_failed = true;
        uint8_t header[5] = {uint8_t(BackendMessage::ErrorResponse), 0, 0, 0, 0};
        for (int i = 0; i < 4; ++i) header[1 + i] = uint8_t((size + 4) >> (24 - 8 * i));
        worker.buffers.append_copy(client.conn.out, header, sizeof header);
        worker.buffers.append_copy(client.conn.out, body, size);
    }
    void forward(const uint8_t* data, uint32_t size, bool from_stash) {
        if (server.pool != nullptr) server.pool->count(pool::Stat::SentBytes, size);
        if (from_stash)
            worker.buffers.append_copy(client.conn.out, data, size);
        else
            worker.buffers.append(client.conn.out, buffer, uint32_t(data - base), size);
    }
    uint8_t* assembly(uint32_t size) { return server::assembly(server, size); }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        if (type == uint8_t(BackendMessage::ErrorResponse) && reading_error) {
            reading_error = false;
            pass_error(body, size);
        } else if (type == uint8_t(BackendMessage::ErrorResponse)) {
            on_held_error(worker, server, body, size);
        } else if (type == uint8_t(BackendMessage::ReadyForQuery)) {
            server.status = static_cast<proto::TransactionStatus>(body[0]);
            server.copying = false;
            if (server.status == proto::TransactionStatus::Idle) ++worker.counters.transactions;
            count_ready(worker, server, client);
            if (server.status == proto::TransactionStatus::Idle && client.session) {
                // A block lost with an earlier server is over: its ROLLBACK ran here.
                client.session->lost = client::TransactionLost::None;
                client::settle_listens(worker, client);
                settle_settings(server, *client.session);
            }
        } else if (type == uint8_t(BackendMessage::CommandComplete)) {
            std::string_view tag(reinterpret_cast<const char*>(body), size);
            if (tag.substr(0, 8) == "ROLLBACK") client.session->transaction_rolled_back = true;
            if (tag.substr(0, 11) == "DISCARD ALL" || tag.substr(0, 14) == "DEALLOCATE ALL") {
                server.prepared.clear();
                server.sql_prepared.clear();
                client::drop_statements(worker, client);
            }
        } else {
            record_parameter(server, body, size);
        }
        return proto::Verdict::Continue;
    }
};

// Statement pooling wraps ForwardHandler to refuse transaction blocks: each ReadyForQuery is
// held back instead of forwarded. One that reports idle goes on to the client unchanged; any
// other means the client's statement left the server inside a transaction block (a BEGIN,
// or a Query ending in one), so feeding stops there and the client is refused before it
// hears that its transaction began (PgBouncer's handle_server_work).
template <typename Inner>
struct StatementHandler {
    Inner& inner;
    bool refused = false;

    proto::Fate on_header(uint8_t type, uint32_t length) {
        proto::Fate fate = inner.on_header(type, length);
        bool ready = type == uint8_t(BackendMessage::ReadyForQuery);
        return ready && fate == proto::Fate::ForwardInspect ? proto::Fate::Inspect : fate;
    }
    void forward(const uint8_t* data, uint32_t size, bool from_stash) {
        inner.forward(data, size, from_stash);
    }
    uint8_t* assembly(uint32_t size) { return inner.assembly(size); }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        proto::Verdict verdict = inner.on_message(type, body, size);
        if (type != uint8_t(BackendMessage::ReadyForQuery)) return verdict;
        if (static_cast<proto::TransactionStatus>(body[0]) != proto::TransactionStatus::Idle) {
            refused = true;
            return proto::Verdict::Pause;
        }
        const uint8_t ready[6] = {type, 0, 0, 0, 5, body[0]};
        inner.forward(ready, sizeof ready, true);  // copied: `ready` is gone after this
        return verdict;
    }
};

// An Active server's bytes go to its client through ForwardHandler, or, for a client in
// statement pooling, through StatementHandler, which sets `refused` on a transaction block.
proto::FeedResult feed_active(Server& server, const client::Client& client, ForwardHandler& handler,
                              const uint8_t* data, uint32_t size, bool& refused) {
    if (!client.session || client.session->mode != config::PoolMode::Statement)
        return proto::feed(server.conn.frame, proto::Direction::Backend, data, size, handler);
    StatementHandler<ForwardHandler> statement{handler};
    proto::FeedResult result =
        proto::feed(server.conn.frame, proto::Direction::Backend, data, size, statement);
    refused = statement.refused;
    return result;
}

// A statement-pooling client opened a transaction block. PgBouncer closes client and server
// with "transaction blocks not allowed in statement pooling mode" (FATAL, 08P01); pgplex
// tells the client the same words and closes it, but keeps the server: unlink() rolls the
// transaction back and returns the server to the pool.
void refuse_transaction_block(worker::Worker& worker, client::Client& client) {
    client::fail(worker, client, client::CloseReason::TransactionBlock, proto::Severity::Fatal,
                 sqlstate::protocol_violation,
                 "transaction blocks not allowed in statement pooling mode", {},
                 "Run each statement on its own (autocommit), or use pool_mode \"transaction\" "
                 "for this client.");
}

// The first column of a one-column DataRow as an integer, or -1.
int64_t first_integer(const uint8_t* body, uint32_t size) {
    if (size < 6 || proto::read_be16(body) != 1) return -1;
    int32_t length = int32_t(proto::read_be32(body + 2));
    if (length <= 0 || uint32_t(length) > size - 6 || length > 18) return -1;
    int64_t value = 0;
    for (int32_t i = 0; i < length; ++i) {
        uint8_t digit = body[6 + i];
        if (digit < '0' || digit > '9') return -1;
        value = value * 10 + (digit - '0');
    }
    return value;
}

// The two text columns of a DataRow of settings_check_sql, or false.
bool two_texts(const uint8_t* body, uint32_t size, std::string_view& first,
               std::string_view& second) {
    if (size < 2 || proto::read_be16(body) != 2) return false;
    uint32_t at = 2;
    std::string_view* out[2] = {&first, &second};
    for (std::string_view* column : out) {
        if (size - at < 4) return false;
        int32_t length = int32_t(proto::read_be32(body + at));
        at += 4;
        if (length < 0 || uint32_t(length) > size - at) return false;
        *column = std::string_view(reinterpret_cast<const char*>(body + at), uint32_t(length));
        at += uint32_t(length);
    }
    return at == size;
}

// Responses to pgplex's own queries (the parameter SET, the reset query), or anything an
// idle server says: read, never forwarded.
struct OwnQueryHandler {
    Server& server;
    bool ready = false;
    bool error = false;
    std::vector<uint8_t> error_body;
    // Notifications the server sent meanwhile (a session-pooled client LISTENs on its own
    // server): whole messages, passed on to the linked client.
    std::vector<uint8_t> notifications;

    proto::Fate on_header(uint8_t type, uint32_t length) {
        switch (type) {
            case uint8_t(BackendMessage::DataRow):
                if (server.looking_up)
                    return ++server.lookup_rows == 1 ? inspect_if_small(length) : proto::Fate::Drop;
                if (server.reading_settings) return inspect_if_small(length);
                return (server.checking || server.reading_lsn) && length <= 64
                           ? proto::Fate::Inspect
                           : proto::Fate::Drop;
            case uint8_t(BackendMessage::ReadyForQuery):
            case uint8_t(BackendMessage::ParameterStatus):
            case uint8_t(BackendMessage::ErrorResponse):
                return inspect_if_small(length);
            case uint8_t(BackendMessage::NotificationResponse):
                return server.client != io::nil ? inspect_if_small(length) : proto::Fate::Drop;
            default:
                return proto::Fate::Drop;
        }
    }
    void forward(const uint8_t*, uint32_t, bool) {}
    uint8_t* assembly(uint32_t size) { return server::assembly(server, size); }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        switch (type) {
            case uint8_t(BackendMessage::ReadyForQuery):
                server.status = static_cast<proto::TransactionStatus>(body[0]);
                if (server.pending_syncs > 0) --server.pending_syncs;
                ++server.sync_replies;
                ready = server.pending_syncs == 0;
                return ready ? proto::Verdict::Pause : proto::Verdict::Continue;
            case uint8_t(BackendMessage::ParameterStatus):
                record_parameter(server, body, size);
                break;
            case uint8_t(BackendMessage::NotificationResponse): {
                uint8_t header[5] = {type, 0, 0, 0, 0};
                for (int i = 0; i < 4; ++i) header[1 + i] = uint8_t((size + 4) >> (24 - 8 * i));
                notifications.insert(notifications.end(), header, header + 5);
                notifications.insert(notifications.end(), body, body + size);
                break;
            }
            case uint8_t(BackendMessage::ErrorResponse):
                error = true;
                if (server.sync_settings && server.sync_replies == 0)
                    server.sync_settings_failed = true;
                if (error_body.empty()) error_body.assign(body, body + size);
                break;
            case uint8_t(BackendMessage::DataRow):
                if (server.looking_up) {
                    server.lookup_row.assign(reinterpret_cast<const char*>(body), size);
                    break;
                }
                if (server.reading_settings) {
                    std::string_view name, value;
                    if (!two_texts(body, size, name, value)) {
                        error = true;  // not the rows asked for: nothing read is trusted
                    } else if (name == prepared_row || name == pool::protocol_statement_row ||
                               name == pool::listen_row || name == pool::session_state_row) {
                        server.checked.push_back({std::string(name), {}, std::string(value)});
                    } else {
                        pool::add_checked(server.checked, name, value, server.pool->target.user);
                    }
                    break;
                }
                server.session_state_count = first_integer(body, size);
                break;
            default:
                break;
        }
        return proto::Verdict::Continue;
    }
};

// The server is gone (EOF, a reset, or its FATAL last words): its client hears of it, with
// those words when it said any.
void lost(worker::Worker& worker, Server& server) {
    // A FATAL (an administrator's shutdown, a terminated backend) is reported as an EOF is
    // (on_recv_end): the node may be going down, and the monitor looks now.
    if (!server.last_words.empty()) worker.shared.suspects.report(server.pool->target.endpoint);
    if (server.client != io::nil) {
        client::Client& client = worker.client(server.client);
        server.client = io::nil;
        client::on_server_failed(worker, client, server.last_words.data(),
                                 uint32_t(server.last_words.size()));
    }
    close(worker, server, CloseReason::ServerGone);
}

uint32_t consume_active(worker::Worker& worker, Server& server, uint32_t buffer,
                        const uint8_t* data, uint32_t size) {
    client::Client& client = worker.client(server.client);
    ForwardHandler handler{worker, server, client, buffer, worker.buffers.data(buffer)};
    bool refused = false;
    // Whether all the client will have been sent is what this batch forwards.
    bool fresh = client.session && client.session->rerun_recording && client.conn.all_sent();
    proto::FeedResult result = feed_active(server, client, handler, data, size, refused);
    emit_due(worker, server);
    // PostgreSQL buffers what a statement says before it runs (RowDescription, ParseComplete,
    // BindComplete) and flushes it with its FATAL: none of it has left pgplex, so a request
    // that may run again elsewhere (client_failure.cc) takes it back, unsent.
    if (fresh && !server.last_words.empty() && client.session->rerun_recording)
        worker.buffers.clear(client.conn.out);
    if (client.conn.out.bytes > 0) client::on_server_output(worker, client);
    if (!server.last_words.empty()) {  // it said FATAL: it closes next
        lost(worker, server);
        return size;
    }
    if (refused) {
        refuse_transaction_block(worker, client);
        return result.consumed;
    }
    // Shutting down: a client is let go at the ReadyForQuery that ends its transaction,
    // before it can start another.
    if (worker.letting_clients_go() && result.status != proto::FeedStatus::Violation)
        client::on_shutdown(worker, client, false);
    if (server.state == ServerState::Closing) return size;
    if (result.status != proto::FeedStatus::Violation) release_if_done(worker, server);
    if (result.status == proto::FeedStatus::Violation) {
        log_warning("%s: protocol violation: %s", log_context(server).c_str(), result.reason);
        close(worker, server, CloseReason::ProtocolViolation);
        return size;
    }
    return result.consumed;
}

// Notifications that came among the replies to pgplex's own query go to the linked client
// (not while it logs in: nothing may come before its welcome).
void pass_notifications(worker::Worker& worker, Server& server,
                        const std::vector<uint8_t>& notifications) {
    if (notifications.empty() || server.client == io::nil) return;
    client::Client& client = worker.client(server.client);
    if (client.login) return;
    worker.buffers.append_copy(client.conn.out, notifications.data(),
                               uint32_t(notifications.size()));
    client::on_server_output(worker, client);
}

uint32_t consume_own(worker::Worker& worker, Server& server, const uint8_t* data, uint32_t size) {
    OwnQueryHandler handler{server};
    proto::FeedResult result =
        proto::feed(server.conn.frame, proto::Direction::Backend, data, size, handler);
    pass_notifications(worker, server, handler.notifications);
    if (result.status == proto::FeedStatus::Violation) {
        close(worker, server, CloseReason::ProtocolViolation);
        return size;
    }
    switch (server.state) {
        case ServerState::Syncing: {
            if (server.aborting) {  // its failing statement's error is the point
                if (handler.ready) lost_block_entered(worker, server);
                return result.consumed;
            }
            if (server.reading_lsn) {
                if (handler.ready) read_lsn_done(worker, server, handler.error);
                return result.consumed;
            }
            if (server.checking) {
                if (handler.ready) checked_session_state(worker, server, handler.error);
                return result.consumed;
            }
            if (handler.error && server.pending_error.empty())
                server.pending_error = std::move(handler.error_body);
            if (!handler.ready) return result.consumed;
            std::vector<uint8_t> error = std::move(server.pending_error);
            server.pending_error.clear();
            if (server.looking_up) {
                looked_up(worker, server, error);
                return result.consumed;
            }
            if (server.reading_settings) {
                settings_checked(worker, server, !error.empty());
                return result.consumed;
            }
            synced(worker, server, error);
            return result.consumed;
        }
        case ServerState::Resetting:
            if (handler.error) {
                log_warning("%s: server_reset_query failed; closing it",
                            log_context(server).c_str());
                close(worker, server, CloseReason::Unusable);
                return size;
            }
            if (handler.ready) make_available(worker, server);
            return result.consumed;
        case ServerState::Idle:
        case ServerState::Yielding:
            if (handler.error) {
                close(worker, server, CloseReason::ServerGone);
                return size;
            }
            return result.consumed;
        case ServerState::Free:
        case ServerState::Connecting:
        case ServerState::Login:
        case ServerState::Active:
        case ServerState::Cancelling:
        case ServerState::Adopting:
        case ServerState::Listening:
        case ServerState::Closing:
            break;
    }
    return size;
}

}  // namespace

void send_query(worker::Worker& worker, Server& server, std::string_view sql) {
    std::vector<uint8_t> bytes(sql.size() + 16);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    writer.begin(proto::FrontendMessage::Query);
    writer.cstring(sql);
    writer.end();
    PGPLEX_ASSERT(writer.ok());
    queue(worker, server, writer.data(), writer.size());
    ++server.pending_syncs;
}

void send_message(worker::Worker& worker, Server& server, proto::FrontendMessage type,
                  std::string_view body) {
    std::vector<uint8_t> bytes(body.size() + 16);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    writer.begin(type);
    writer.bytes(body.data(), uint32_t(body.size()));
    writer.end();
    PGPLEX_ASSERT(writer.ok());
    queue(worker, server, writer.data(), writer.size());
}

void send_parse(worker::Worker& worker, Server& server, std::string_view body) {
    send_message(worker, server, proto::FrontendMessage::Parse, body);
    send_message(worker, server, proto::FrontendMessage::Sync, {});
    ++server.pending_syncs;
}

uint8_t* assembly(Server& server, uint32_t size) {
    if (size > limits::assembled_message_bytes_max) return nullptr;
    if (!server.assembly)
        server.assembly = std::make_unique<uint8_t[]>(limits::assembled_message_bytes_max);
    return server.assembly.get();
}

void queue(worker::Worker& worker, Server& server, const uint8_t* data, uint32_t size) {
    worker.buffers.append_copy(server.conn.out, data, size);
    worker.mark_dirty(server.conn, io::Op::ServerSend, worker.server_slot(server));
}

void on_recv(worker::Worker& worker, Server& server, uint32_t buffer, uint32_t size) {
    const uint8_t* data = worker.buffers.data(buffer);
    uint32_t used = 0;
    while (used < size && server.state != ServerState::Closing) {
        uint32_t step = 0;
        switch (server.state) {
            case ServerState::Login:
                step = login_consume(worker, server, buffer, data + used, size - used);
                break;
            case ServerState::Active:
                step = consume_active(worker, server, buffer, data + used, size - used);
                break;
            case ServerState::Idle:
            case ServerState::Yielding:
            case ServerState::Syncing:
            case ServerState::Resetting:
                step = consume_own(worker, server, data + used, size - used);
                break;
            case ServerState::Cancelling:
                step = cancel_consume(worker, server, data + used, size - used);
                break;
            case ServerState::Listening:
                step = listener_consume(worker, server, data + used, size - used);
                break;
            case ServerState::Free:
            case ServerState::Connecting:
            case ServerState::Adopting:
            case ServerState::Closing:
                return;
        }
        if (step == 0) break;
        used += step;
    }
}

void on_recv_end(worker::Worker& worker, Server& server, int result) {
    server.conn.eof = true;
    if (server.state == ServerState::Closing) {
        worker.request_close(server.conn, io::Op::ServerClose, worker.server_slot(server));
        return;
    }
    if (server.state == ServerState::Cancelling) {
        close(worker, server, CloseReason::CancelDone);
        return;
    }
    // A connection that ends unasked: the node may be going down; the monitor looks now.
    worker.shared.suspects.report(server.pool->target.endpoint);
    if (server.state == ServerState::Login) {
        std::string why = result < 0 ? std::string("connection lost: ") + strerror(-result)
                                     : std::string("the server closed the connection");
        login_failed(worker, server, nullptr, 0, why.c_str());
        return;
    }
    if (result < 0) log_warning("%s: %s", log_context(server).c_str(), strerror(-result));
    lost(worker, server);
}

void on_sent(worker::Worker& worker, Server& server) {
    if (server.client == io::nil) return;
    client::Client& client = worker.client(server.client);
    if (server.conn.out.bytes < queued_bytes_max(worker) / 2)
        worker.resume_recv(client.conn, io::Op::ClientRecv, server.client);
}

void on_client_output(worker::Worker& worker, Server& server) {
    worker.mark_dirty(server.conn, io::Op::ServerSend, worker.server_slot(server));
}

// The close itself; `release_place`: give the server's place in its pool back (false when
// the caller already did).
void close_server(worker::Worker& worker, Server& server, CloseReason reason, bool release_place);

// A cancel request's connection ends: its server may be lent again, once no other cancel of
// it is in flight, unless this one's fate is unknown (a late signal could still come).
void cancel_done(worker::Worker& worker, Server& server, CloseReason reason) {
    if (server.cancel_of == io::nil) return;
    Server& target = worker.server(server.cancel_of);
    server.cancel_of = io::nil;
    if (target.conn.generation != server.cancel_of_generation || target.cancels_in_flight == 0)
        return;  // it closed meanwhile
    if (reason == CloseReason::CancelTimeout) target.cancel_unsure = true;
    if (--target.cancels_in_flight > 0) return;
    uint32_t holder = target.client;
    release_if_done(worker, target);
    // Still the client's (session pooling, an open transaction): what it sent meanwhile goes.
    if (holder != io::nil && target.client == holder &&
        worker.client(holder).state == client::ClientState::Active)
        client::resume(worker, worker.client(holder));
}

void close(worker::Worker& worker, Server& server, CloseReason reason) {
    close_server(worker, server, reason, true);
}

void close_released(worker::Worker& worker, Server& server, CloseReason reason) {
    close_server(worker, server, reason, false);
}

void close_server(worker::Worker& worker, Server& server, CloseReason reason, bool release_place) {
    if (server.state == ServerState::Closing || server.state == ServerState::Free) return;
    if (server.state == ServerState::Idle) idle_remove(worker, worker.server_slot(server));
    if (server.state == ServerState::Yielding) {
        PGPLEX_ASSERT(server.transfer == nullptr);  // never closed while its file is in flight
        worker.message(server.yield_worker, io::MessageKind::HandoffFailed, server.pool->id,
                       server.yield_file);
    }
    if (server.state == ServerState::Adopting) {
        handoff_failed(worker, worker.server_file(worker.server_slot(server)));
        return;
    }
    if (server.state == ServerState::Cancelling) cancel_done(worker, server, reason);
    if (server.state != ServerState::Cancelling && !server.listener) {
        if (release_place) server.pool->release_server();
        if (reason != CloseReason::LoginFailed)
            log_info("%s: closing: %s", log_context(server).c_str(), to_string(reason));
        // A failed login is not retried at once: login_failed() tells the waiters instead.
        if (reason != CloseReason::LoginFailed) place_freed(worker, *server.pool);
    }
    if (server.client != io::nil) {
        client::Client& client = worker.client(server.client);
        server.client = io::nil;
        client::on_server_failed(worker, client, nullptr, 0);
    }
    set_state(worker, server, ServerState::Closing);
    server.close_reason = reason;
    worker.request_close(server.conn, io::Op::ServerClose, worker.server_slot(server));
}

void on_closed(worker::Worker& worker, Server& server) {
    if (server.listener) listener_closed(worker, server);
    forget_expected(worker, server);  // drops the statements its replies still held
    set_state(worker, server, ServerState::Free);
    // The slot's next server starts from nothing: no flag of a query pgplex had running
    // when this one closed (its client left mid-check) may carry over to it.
    uint32_t generation = server.conn.generation;
    std::unique_ptr<uint8_t[]> assembly = std::move(server.assembly);
    server = Server{};
    server.conn.generation = generation;
    server.assembly = std::move(assembly);
    worker.server_release_slot(worker.server_slot(server));
}

void on_tick(worker::Worker& worker, Server& server) {
    const config::Config& config = *worker.config;
    int64_t age = worker.now - server.since;
    switch (server.state) {
        case ServerState::Idle:
            if (config.server_idle_timeout_ms > 0 && age > config.server_idle_timeout_ms &&
                leave_above_min_pool_size(*server.pool))
                close_released(worker, server, CloseReason::IdleTimeout);
            else if (config.server_lifetime_ms > 0 &&
                     worker.now - server.created > config.server_lifetime_ms)
                close(worker, server, CloseReason::Lifetime);
            else if (server.created <
                     server.pool->reconnect_before_ms.load(std::memory_order_relaxed))
                close(worker, server, CloseReason::Reconnect);
            return;
        case ServerState::Connecting:
        case ServerState::Login:
            if (config.server_connect_timeout_ms > 0 && age > config.server_connect_timeout_ms)
                login_failed(worker, server, nullptr, 0, "server_connect_timeout");
            return;
        case ServerState::Cancelling:
            if (age > limits::cancel_confirm_ms) {
                log_warning("cancel of backend %u: the server did not confirm it in %lld ms",
                            server.cancel_pid, (long long)limits::cancel_confirm_ms);
                close(worker, server, CloseReason::CancelTimeout);
            }
            return;
        case ServerState::Adopting:
            // The other worker never answered: stop holding the slot. A late arrival is
            // closed by adopt().
            if (age > 5000) handoff_failed(worker, worker.server_file(worker.server_slot(server)));
            return;
        case ServerState::Yielding:
        case ServerState::Free:
        case ServerState::Syncing:
        case ServerState::Active:
        case ServerState::Resetting:
        case ServerState::Listening:
        case ServerState::Closing:
            return;
    }
}

void on_shutdown(worker::Worker& worker, Server& server, bool immediate) {
    switch (server.state) {
        case ServerState::Idle: {
            // Say goodbye properly so the backend does not log an unexpected EOF.
            static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
            queue(worker, server, terminate, sizeof terminate);
            idle_remove(worker, worker.server_slot(server));
            server.conn.close_when_sent = true;
            server.pool->release_server();
            set_state(worker, server, ServerState::Closing);
            return;
        }
        case ServerState::Connecting:
        case ServerState::Login:
        case ServerState::Resetting:
        case ServerState::Cancelling:
            if (immediate) close(worker, server, CloseReason::Shutdown);
            return;
        case ServerState::Syncing:
        case ServerState::Active:
            if (immediate && server.client == io::nil) close(worker, server, CloseReason::Shutdown);
            return;
        case ServerState::Adopting:
            handoff_failed(worker, worker.server_file(worker.server_slot(server)));
            return;
        case ServerState::Yielding:
            if (immediate && server.transfer == nullptr)
                close(worker, server, CloseReason::Shutdown);
            return;
        case ServerState::Listening:
            listener_shutdown(worker, server);
            return;
        case ServerState::Free:
        case ServerState::Closing:
            return;
    }
}

}  // namespace pgplex::server
