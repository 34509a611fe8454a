// A logged-in client's traffic, and the client's lifetime: accept, close, timeouts,
// shutdown. In session mode a client holds its server from its first ReadyForQuery to its
// Terminate; every message goes through unchanged, straight from the buffer it arrived in,
// except Terminate, which ends the client's lease instead of the server's session.
#include <algorithm>
#include <cstring>
#include <string>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_admin.h"
#include "pgplex/client/client_auth_query.h"
#include "pgplex/client/client_cancel.h"
#include "pgplex/client/client_extended.h"
#include "pgplex/client/client_failure.h"
#include "pgplex/client/client_handover.h"
#include "pgplex/client/client_limits.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_route.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/route/router.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_work.h"

namespace pgplex::client {

namespace {

using proto::FrontendMessage;
using proto::Severity;

uint32_t queued_bytes_max(const worker::Worker& worker) {
    return limits::queued_buffers_max * worker.buffers.buffer_size();
}

// Bytes from an Active client, on their way to its server. Every message that gets a
// reply is noted with the server (server_expect.cc) so replies can be told apart.
struct ForwardHandler {
    Outbound out;
    bool track_sets;  // transaction pooling: SET/RESET must follow the client
    bool renames;     // transaction pooling: named statements are renamed (extended.h)
    bool rewrites;    // [[rewrites]] exist: every Query is read, and may be rewritten
    bool watch;       // session pooling, no state on the server yet: reads what may leave some
    bool terminate = false;

    void expect(server::Expect what) {
        server::Pending pending;
        pending.expect = what;
        server::expect(out.worker, out.server, std::move(pending));
    }
    proto::Fate on_query_header(bool inspectable) {
        Session& session = *out.client.session;
        on_simple_query(out.worker, out.client);
        if ((track_sets || rewrites) && inspectable) return proto::Fate::Inspect;
        // Too long to read: it may change anything.
        if ((track_sets || watch) && !inspectable) session.check_settings = true;
        expect(server::Expect::Query);
        // Read on its way, for a RESET of a startup parameter (follow_resets), or for what it
        // may leave on a session-pooled server.
        if (inspectable && (watch || !pool::settings_of(session.startup).empty()))
            return proto::Fate::ForwardInspect;
        return proto::Fate::Forward;
    }
    proto::Fate on_parse_header(bool inspectable, uint32_t length) {
        Session& session = *out.client.session;
        // JDBC and other drivers send SET through the extended protocol too.
        out.server.unsynced = true;
        if (track_sets && !inspectable && !(renames && length <= limits::kept_statement_bytes_max))
            session.check_settings = true;  // too long to read: it may change anything
        if (renames)
            return length <= limits::kept_statement_bytes_max ? proto::Fate::Inspect
                                                              : proto::Fate::Head;
        expect(server::Expect::Parse);
        // A named statement too long to keep (its name cannot even be read).
        if (watch && !inspectable) session.state_on_server = true;
        // Session pooling: read for a reset of a startup parameter (follow_parsed_resets).
        bool resets_startup = session.mode == config::PoolMode::Session &&
                              !pool::settings_of(session.startup).empty();
        if ((track_sets || watch || resets_startup) && inspectable)
            return proto::Fate::ForwardInspect;
        return proto::Fate::Forward;
    }
    proto::Fate on_header(uint8_t type, uint32_t length) {
        Session& session = *out.client.session;
        if (session.discarding && type != uint8_t(FrontendMessage::Sync) &&
            type != uint8_t(FrontendMessage::Terminate))
            return proto::Fate::Drop;
        if (out.client.cancel_wanted != 0 && refuse_cancelled(out, type)) return proto::Fate::Drop;
        bool inspectable = length <= limits::assembled_message_bytes_max;
        switch (static_cast<FrontendMessage>(type)) {
            case FrontendMessage::Terminate:
                return proto::Fate::Inspect;
            case FrontendMessage::Query:
                return on_query_header(inspectable);
            case FrontendMessage::FunctionCall:
                // A fast-path call runs a function pgplex cannot see into.
                if (track_sets || watch) out.client.session->check_settings = true;
                expect(server::Expect::FunctionCall);
                break;
            case FrontendMessage::Sync:
                session.discarding = false;
                on_sync(out.client);
                out.server.unsynced = false;
                expect(server::Expect::Sync);
                if (out.server.replay_record == server::ReplayRecord::Recording) {
                    static const uint8_t sync[5] = {'S', 0, 0, 0, 4};
                    out.record(sync, sizeof sync);
                    out.server.replay_record = server::ReplayRecord::Complete;
                    return proto::Fate::Forward;  // forward() records no more
                }
                // pgplex's follow-up of a Parse goes after the Sync (on_message).
                if (session.kept && !session.kept->parse_follow_up.empty())
                    return proto::Fate::ForwardInspect;
                break;
            case FrontendMessage::Parse:
                return on_parse_header(inspectable, length);
            case FrontendMessage::Bind:
                out.server.unsynced = true;
                if (renames && has_statements(out.client)) return proto::Fate::Head;
                expect(server::Expect::Bind);
                break;
            case FrontendMessage::Describe:
            case FrontendMessage::Close:
                out.server.unsynced = true;
                if (renames) return proto::Fate::Inspect;
                expect(type == uint8_t(FrontendMessage::Close) ? server::Expect::Close
                                                               : server::Expect::Describe);
                // Session pooling: the Close of a named statement drops it from the record.
                if (watch && type == uint8_t(FrontendMessage::Close) && inspectable)
                    return proto::Fate::ForwardInspect;
                break;
            case FrontendMessage::Execute:
                out.server.unsynced = true;
                if (renames && has_local_portal(out.client)) return proto::Fate::Inspect;
                expect(server::Expect::Execute);
                break;
            case FrontendMessage::Flush:
                out.server.unsynced = true;
                break;
            case FrontendMessage::CopyData:
            case FrontendMessage::CopyDone:
            case FrontendMessage::CopyFail:
            case FrontendMessage::PasswordMessage:
                break;
        }
        return proto::Fate::Forward;
    }
    void forward(const uint8_t* data, uint32_t size, bool from_stash) {
        if (from_stash) {
            out.copy(data, size);
            return;
        }
        out.worker.buffers.append(out.server.conn.out, out.buffer, uint32_t(data - out.base), size);
        out.record(data, size);
    }
    uint8_t* assembly(uint32_t size) {
        out.client.assembly = std::make_unique<uint8_t[]>(size);
        return out.client.assembly.get();
    }
    proto::Fate on_head(uint8_t type, const uint8_t* head, uint32_t head_size, uint32_t size) {
        proto::Fate rest = type == uint8_t(FrontendMessage::Bind)
                               ? on_bind_head(out, head, head_size, size)
                               : on_parse_head(out, head, head_size, size);
        out.client.assembly.reset();
        return rest;
    }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        if (type == uint8_t(FrontendMessage::Terminate)) {
            terminate = true;
            return proto::Verdict::Pause;
        }
        std::string_view text(reinterpret_cast<const char*>(body), size);
        if (track_sets && refuses_session_state(type, text)) {
            out.client.assembly.reset();
            return proto::Verdict::Continue;
        }
        switch (type) {
            case uint8_t(FrontendMessage::Query):
                if (track_sets || rewrites)
                    on_query(body, size);
                else
                    follow_resets(text.substr(0, text.find('\0')));  // forwarded already
                break;
            case uint8_t(FrontendMessage::Parse): {
                if (renames) on_parse(out, body, size);
                size_t name_end = text.find('\0');  // the statement name, then the query
                // A named statement lives on the server (session pooling renames none).
                if (watch && name_end != 0 && name_end != std::string_view::npos)
                    follow_parse(text);
                text = name_end == std::string_view::npos ? std::string_view{}
                                                          : text.substr(name_end + 1);
                break;
            }
            case uint8_t(FrontendMessage::Describe):
                on_describe(out, body, size);
                break;
            case uint8_t(FrontendMessage::Close):
                if (renames)
                    on_close(out, body, size);
                else if (watch && size > 2 && body[0] == 'S' && body[1] != 0)
                    follow_close(text.substr(1, text.find('\0', 1) - 1));
                break;
            case uint8_t(FrontendMessage::Execute):
                on_execute(out, body, size);
                break;
            case uint8_t(FrontendMessage::Sync): {
                std::unique_ptr<SessionKept>& kept = out.client.session->kept;
                std::string sql = kept ? std::move(kept->parse_follow_up) : std::string();
                if (kept) kept->parse_follow_up.clear();
                if (!sql.empty()) send_follow_up(sql);
                break;
            }
            default:
                break;
        }
        if (type == uint8_t(FrontendMessage::Parse))
            follow_parsed_resets(text.substr(0, text.find('\0')));
        if (track_sets &&
            (type == uint8_t(FrontendMessage::Query) || type == uint8_t(FrontendMessage::Parse)))
            note_sets(text.substr(0, text.find('\0')));
        if (watch &&
            (type == uint8_t(FrontendMessage::Query) || type == uint8_t(FrontendMessage::Parse)))
            watch_statement(text.substr(0, text.find('\0')));
        out.client.assembly.reset();  // an idle client holds no buffer
        return proto::Verdict::Continue;
    }
    void on_query(const uint8_t* body, uint32_t size) {
        std::string_view query(reinterpret_cast<const char*>(body), size);
        query = query.substr(0, query.find('\0'));
        if (track_sets && takes_listen_query(out, query)) return;
        if (renames && on_deallocate(out, query)) return;
        if (!rewrites || !rewrite(query)) out.pass(uint8_t(FrontendMessage::Query), body, size);
        expect(server::Expect::Query);
        follow_resets(query);
    }
    // A Query that may RESET a startup parameter of the client's is followed by pgplex's
    // own, which gives it the client's startup value back (session_state.h); its replies are
    // dropped (server_expect.cc).
    void follow_resets(std::string_view query) {
        std::string sql = reset_follow_up(query);
        if (!sql.empty()) send_follow_up(sql);
    }
    std::string reset_follow_up(std::string_view query) const {
        const std::vector<pool::Setting>& startup = pool::settings_of(out.client.session->startup);
        if (startup.empty() || !pool::may_set(query)) return {};
        return pool::reset_follow_up_sql(startup, pool::parse_set_statements(query));
    }
    // Session pooling: a statement Parsed now runs at its Execute, and pgplex's Query may
    // only follow the batch's Sync (on_sync_sent).
    void follow_parsed_resets(std::string_view query) {
        Session& session = *out.client.session;
        if (session.mode != config::PoolMode::Session) return;
        std::string sql = reset_follow_up(query);
        if (sql.empty()) return;
        std::string& follow_up = kept_of(session).parse_follow_up;
        if (!follow_up.empty()) follow_up += "; ";
        follow_up += sql;
    }
    void send_follow_up(const std::string& sql) {
        std::vector<uint8_t> message(sql.size() + 6);
        proto::Writer writer(message.data(), uint32_t(message.size()));
        writer.begin(FrontendMessage::Query);
        writer.cstring(sql);
        writer.end();
        PGPLEX_ASSERT(writer.ok());
        out.copy(writer.data(), writer.size());
        server::Pending pending;
        pending.expect = server::Expect::Query;
        pending.reply = server::Reply::Swallow;
        server::expect(out.worker, out.server, std::move(pending));
    }
    // [[rewrites]]: the Query goes out with its text rewritten. False: none applies.
    bool rewrite(std::string_view query) {
        const Session& session = *out.client.session;
        std::string_view application;
        const std::string* set =
            pool::value_of(pool::settings_of(session.settings), "application_name");
        if (set == nullptr)
            set = pool::value_of(pool::settings_of(session.startup), "application_name");
        if (set != nullptr) application = *set;
        std::string changed;
        route::Who who{session.user, session.database, application};
        if (!out.worker.router->rewrite(query, who, changed)) return false;
        std::vector<uint8_t> message(changed.size() + 6);
        proto::Writer writer(message.data(), uint32_t(message.size()));
        writer.begin(FrontendMessage::Query);
        writer.cstring(changed);
        writer.end();
        out.copy(writer.data(), writer.size());
        return true;
    }
    // Session pooling: a statement that may change what the session holds on its server
    // has it read when its transaction ends (server_lease.cc): settings, SQL-level prepared
    // statements as for transaction pooling (note_sets), LISTENs, and the count of what
    // cannot move (a temporary table, a lock, a cursor). Erring towards yes costs a check.
    void watch_statement(std::string_view text) {
        Session& session = *out.client.session;
        note_sets(text);
        // A PREPARE, DEALLOCATE or DISCARD ALL: the check says which statements stand.
        if (mentions_listen(text) || !session.pending.empty()) session.check_settings = true;
        if (pool::detect_session_state(text) != pool::no_session_state) {
            session.check_settings = true;
            // Until the check counts none: a session advisory lock outlives a lost block.
            session.pin_suspect = true;
        }
    }
    // Session pooling: a named Parse is kept once the server answers ParseComplete
    // (server_expect.cc), to be prepared again on the next server should this one fail.
    void follow_parse(std::string_view body) {
        Session& session = *out.client.session;
        size_t kept_bytes = session.kept ? session.kept->parse_bytes : 0;
        if (kept_bytes + body.size() > limits::session_parse_bytes_max) {
            session.state_on_server = true;
            return;
        }
        server::Pending& pending = out.server.expected.back();
        PGPLEX_ASSERT(pending.expect == server::Expect::Parse);
        pending.text.assign(body);
        pending.session_record = true;
    }
    void follow_close(std::string_view name) {
        server::Pending& pending = out.server.expected.back();
        PGPLEX_ASSERT(pending.expect == server::Expect::Close);
        pending.text.assign(name);
        pending.session_record = true;
    }
    static bool mentions_listen(std::string_view text) {
        static constexpr std::string_view word = "listen";
        auto same = [](char a, char b) { return (a | 0x20) == b; };
        return std::search(text.begin(), text.end(), word.begin(), word.end(), same) != text.end();
    }
    // Transaction pooling: a Query or Parse that may create session state a server cannot
    // be lent on with pins the client to its server (checked when its transaction ends), or
    // with pin_on_session_state = false is refused with 0A000, unsent. True: refused.
    bool refuses_session_state(uint8_t type, std::string_view text) {
        if (type != uint8_t(FrontendMessage::Query) && type != uint8_t(FrontendMessage::Parse))
            return false;
        Session& session = *out.client.session;
        if (type == uint8_t(FrontendMessage::Parse)) text = text.substr(text.find('\0') + 1);
        text = text.substr(0, text.find('\0'));
        uint8_t kinds = pool::detect_session_state(text);
        if (kinds == pool::no_session_state) {
            session.pin_suspect = session.pin_suspect || session.pinned;
            return false;
        }
        if (session.pin_allowed) {
            session.pin_suspect = true;
            return false;
        }
        refuse_session_state(out, type == uint8_t(FrontendMessage::Query), kinds);
        return true;
    }
    // A Query or a Parse: whether it may change the session's settings (then the server is
    // asked when the transaction ends), and its PREPAREs, which count once it commits.
    void note_sets(std::string_view text) {
        Session& session = *out.client.session;
        if (!session.check_settings && out.worker.router->classifier().facts(text).touches_session)
            session.check_settings = true;
        if (!pool::may_set(text)) return;
        for (pool::SetChange& change : pool::parse_set_statements(text))
            if (change.kind == pool::SetKind::Prepare || change.kind == pool::SetKind::Deallocate ||
                change.kind == pool::SetKind::DeallocateAll)
                session.pending.push_back(std::move(change));
    }
};

uint32_t consume_active(worker::Worker& worker, Client& client, uint32_t buffer,
                        const uint8_t* data, uint32_t size) {
    server::Server& server = worker.server(client.server);
    bool track = client.session && client.session->mode != config::PoolMode::Session;
    bool watch = client.session && !track && !client.session->state_on_server;
    ForwardHandler handler{{worker, client, server, buffer, worker.buffers.data(buffer)},
                           track,
                           renames_statements(worker, client),
                           worker.router->has_rewrites(),
                           watch};
    proto::FeedResult result =
        proto::feed(client.conn.frame, proto::Direction::Frontend, data, size, handler);
    // What the client sent while its server was lent (PgBouncer's total_received), forwarded
    // as is, read and passed on, or answered by pgplex.
    if (server.pool != nullptr) server.pool->count(pool::Stat::ReceivedBytes, result.consumed);
    if (server.conn.out.bytes > 0) server::on_client_output(worker, server);
    if (client.session->rerun_recording) record_rerun(client, data, result.consumed);
    if (result.status == proto::FeedStatus::Violation) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation, result.reason);
        return size;
    }
    if (handler.terminate) {
        close(worker, client, CloseReason::ClientTerminated);
        return size;
    }
    if (server.conn.out.bytes > queued_bytes_max(worker))
        worker.pause_recv(client.conn, io::Op::ClientRecv, worker.client_slot(client));
    return result.consumed;
}

// What pgplex answers between transactions without a server: a LISTEN, Parses of
// statements it knows. Returns the bytes used; 0: none of these.
uint32_t answer_idle(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    uint32_t step = answer_listen(worker, client, data, size);
    if (step > 0) return step;
    return answer_between_transactions(worker, client, data, size);
}

// Feeds bytes at data (inside `buffer`) to whatever the client's state expects.
uint32_t consume(worker::Worker& worker, Client& client, uint32_t buffer, const uint8_t* data,
                 uint32_t size) {
    uint32_t used = 0;
    while (used < size) {
        uint32_t step = 0;
        switch (client.state) {
            case ClientState::Startup:
            case ClientState::Auth:
                step = login_consume(worker, client, buffer, data + used, size - used);
                break;
            case ClientState::Active:
                if (waits_for_cancel(worker, client)) return used;
                step = consume_active(worker, client, buffer, data + used, size - used);
                break;
            case ClientState::Idle:
                if (client.session->admin) {
                    step = admin_consume(worker, client, data + used, size - used);
                    if (client.state == ClientState::Closing) return size;
                    break;
                }
                // A transaction begins: a Terminate needs no server, anything else does.
                if (data[used] == uint8_t(FrontendMessage::Terminate)) {
                    close(worker, client, CloseReason::ClientTerminated);
                    return size;
                }
                // What pgplex answers without a server: the news that its transaction block
                // was lost, and what PostgreSQL would skip after an error, up to the Sync.
                step = answer_unsent(worker, client, data + used, size - used);
                if (client.state == ClientState::Closing) return size;
                if (step > 0) break;
                if (listen_holds(client)) return used;  // its LISTEN's reply comes first
                // In a block lost with its server, PostgreSQL answers everything (25P02).
                step = client.session->lost == TransactionLost::Aborted
                           ? 0
                           : answer_idle(worker, client, data + used, size - used);
                if (step > 0) break;
                if (client.session->routing) {
                    step = route_transaction(worker, client, data + used, size - used);
                    if (step > 0) break;
                    if (client.state != ClientState::Idle) return used;  // waits for a node
                }
                request_server(worker, client);
                continue;
            case ClientState::Waiting:
                // A request cancelled before it got a server is answered at once.
                step = answer_unsent(worker, client, data + used, size - used);
                if (client.state == ClientState::Closing) return size;
                break;
            case ClientState::Syncing:
            case ClientState::Asking:
                return used;  // held until the server (or the other workers) is ready
            case ClientState::Closing:
            case ClientState::Free:
                return size;
        }
        used += step;
        if (step == 0) break;
    }
    return used;
}

// A waiting client with nothing left to wait for (its requests were cancelled).
void stop_waiting(worker::Worker& worker, Client& client) {
    if (client.pool != nullptr) server::waiter_remove(worker, worker.client_slot(client));
    lease_ended(worker, client);
    set_state(worker, client, ClientState::Idle);
}

// Processes bytes held from earlier receives, oldest first, as far as the state allows.
void consume_held(worker::Worker& worker, Client& client) {
    // A server found while consuming (request_server → link → on_server_ready) would come
    // back here: the loop below carries on with the new state instead.
    if (client.consuming) return;
    client.consuming = true;
    io::ChunkQueue& held = client.conn.held_in;
    while (!held.empty() && client.state != ClientState::Closing) {
        io::Chunk chunk = worker.buffers.chunk(held.head);
        const uint8_t* data = worker.buffers.data(chunk.buffer) + chunk.offset;
        uint32_t used = consume(worker, client, chunk.buffer, data, chunk.size);
        if (client.state == ClientState::Closing) break;
        worker.buffers.consume(held, used);
        if (used < chunk.size) break;
    }
    client.consuming = false;
    if (client.state == ClientState::Closing) return;
    // A waiting client whose every request was cancelled waits for nothing any more.
    if (client.state == ClientState::Waiting && client.cancel_answered && held.empty() &&
        client.conn.frame.between_messages() && !client.session->discarding)
        stop_waiting(worker, client);
    client.cancel_answered = false;
    // Transaction pooling: a login that just got its welcome, or a client whose held bytes
    // are all out and answered, gives its server back.
    if (client.state == ClientState::Active && client.server != io::nil)
        server::release_if_done(worker, worker.server(client.server));
    if (client.state == ClientState::Closing) return;
    if (held.bytes < queued_bytes_max(worker) / 2)
        worker.resume_recv(client.conn, io::Op::ClientRecv, worker.client_slot(client));
}

// A wait worth a log line: half of query_wait_timeout, at most 5 s.
int64_t long_wait_ms(const config::Config& config) {
    int64_t half = config.query_wait_timeout_ms > 0 ? config.query_wait_timeout_ms / 2 : 5000;
    return std::min<int64_t>(half, 5000);
}

// Says once why a client has waited long: its pool is full (servers of pool_size, how many
// wait in all) or its servers do not log in.
void log_long_wait(worker::Worker& worker, Client& client) {
    client.wait_logged = true;
    const pool::Pool& pool = *client.pool;
    int64_t failed = pool.login_failed_ms.load(std::memory_order_relaxed);
    log_warning(
        "%s: has waited %lld ms for a server of %s/%s: "
        "%d of pool_size %d servers open, %d clients waiting on all workers%s",
        log_context(worker, client).c_str(), (long long)(worker.now - client.since),
        pool.target.dbname.c_str(), pool.target.user.c_str(), pool.servers(), pool.size_limit(),
        pool.waiting.load(std::memory_order_relaxed),
        failed > 0 && worker.now - failed < 10000 ? "; the last server login failed" : "");
}

}  // namespace

void release(worker::Worker& worker, Client& client) {
    bool in_line = client.state == ClientState::Waiting ||
                   (client.login && client.login->lookup == LookupStep::InLine);
    if (in_line && client.pool != nullptr)
        server::waiter_remove(worker, worker.client_slot(client));
    lease_ended(worker, client);
    if (client.server != io::nil) {
        server::Server& server = worker.server(client.server);
        client.server = io::nil;
        // Part of a message went to the server and the rest never will: it cannot be reused.
        if (!client.conn.frame.between_messages()) server.unsynced = true;
        // A client that leaves holding session state leaves a server to clean.
        bool session = !client.session || client.session->mode == config::PoolMode::Session ||
                       client.session->pinned || client.session->pin_suspect;
        server::unlink(worker, server, session);
    }
}

uint32_t cancel_pid(const worker::Worker& worker, uint32_t slot) {
    return limits::cancel_pid(worker.config->gossip.index, worker.index, slot);
}

void queue(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (client.session && client.session->rerun_recording) stop_rerun(*client.session);
    worker.buffers.append_copy(client.conn.out, data, size);
    worker.mark_dirty(client.conn, io::Op::ClientSend, worker.client_slot(client));
}

void on_accepted(worker::Worker& worker, uint32_t slot, uint32_t listener) {
    Client& client = worker.client(slot);
    client.listener = uint16_t(listener);
    uint32_t generation = client.conn.generation + 1;
    client.conn = io::Conn{};
    client.conn.generation = generation;
    client.conn.file = slot;
    set_state(worker, client, ClientState::Startup);
    client.connected = client.request = client.sent_at = worker.now;
    client.cancelled = 0;
    client.cancel_wanted = 0;
    client.login = std::make_unique<Login>();
    int count = worker.shared.clients.fetch_add(1, std::memory_order_acq_rel) + 1;
    worker.arm_recv(client.conn, io::Op::ClientRecv, slot);
    client.addresses_asked = true;
    client.addresses_known = false;
    worker.ask_addresses(client.conn, io::Op::ClientPeer, slot);
    if (count > worker.config->max_client_conn) {
        log_warning("%s: refused: max_client_conn (%d) reached",
                    log_context(worker, client).c_str(), worker.config->max_client_conn);
        fail(worker, client, CloseReason::TooManyClients, Severity::Fatal,
             sqlstate::too_many_connections, "no more connections allowed (max_client_conn)");
    }
}

void on_recv(worker::Worker& worker, Client& client, uint32_t buffer, uint32_t size) {
    if (client.state == ClientState::Closing) return;
    client.request = worker.now;
    // Through the held queue, always: consume_held() is the one place that feeds a client's
    // bytes, so a server lent in the middle of them cannot be given back under its feet.
    worker.buffers.append(client.conn.held_in, buffer, 0, size);
    consume_held(worker, client);
    if (client.state == ClientState::Closing) return;
    if (client.conn.held_in.bytes > queued_bytes_max(worker))
        worker.pause_recv(client.conn, io::Op::ClientRecv, worker.client_slot(client));
}

void on_addresses(worker::Worker& worker, Client& client, const sockaddr_storage* peer,
                  const sockaddr_storage* local) {
    client.addresses_asked = false;
    if (peer != nullptr && local != nullptr) {
        client.peer.set(*peer);
        client.local.set(*local);
        client.addresses_known = true;
        if (!admit_address(worker, client)) return;
    }
    if (client.login && client.login->awaiting_addresses) {
        client.login->awaiting_addresses = false;
        resume_login(worker, client);
    }
}

void on_tls_failed(worker::Worker& worker, Client& client, const std::string& reason) {
    ++worker.counters.tls_failures;
    log_warning("%s: %s%s", log_context(worker, client).c_str(),
                client.login ? "TLS handshake failed: " : "TLS failed: ", reason.c_str());
    close(worker, client, CloseReason::TlsFailed);
}

void on_recv_end(worker::Worker& worker, Client& client, int result) {
    client.conn.eof = true;
    if (client.state == ClientState::Closing) {
        // An error was on its way out; the client will never read it now.
        worker.request_close(client.conn, io::Op::ClientClose, worker.client_slot(client));
        return;
    }
    if (result < 0) log_debug("%s: %s", log_context(worker, client).c_str(), strerror(-result));
    close(worker, client, CloseReason::ClientGone);
}

void on_sent(worker::Worker& worker, Client& client) {
    client.sent_at = worker.now;
    // A takeover (client_handover.h): a client between transactions goes as soon as the last
    // answer of its transaction is out, before its next request can come in.
    if (may_hand_over(worker, client)) {
        hand_over(worker, client);
        return;
    }
    // Flow control: the server may send again once the client has taken most of it.
    if (client.server == io::nil) return;
    server::Server& server = worker.server(client.server);
    if (client.conn.out.bytes < queued_bytes_max(worker) / 2)
        worker.resume_recv(server.conn, io::Op::ServerRecv, client.server);
}

void on_server_output(worker::Worker& worker, Client& client) {
    // A byte of the answer is the client's: the request can no longer be run again.
    if (client.session && client.session->rerun_recording) stop_rerun(*client.session);
    uint32_t slot = worker.client_slot(client);
    worker.mark_dirty(client.conn, io::Op::ClientSend, slot);
    if (client.conn.out.bytes > queued_bytes_max(worker))
        worker.pause_recv(worker.server(client.server).conn, io::Op::ServerRecv, client.server);
}

void on_server_ready(worker::Worker& worker, Client& client) {
    PGPLEX_ASSERT(client.server != io::nil);
    if (client.login) send_welcome(worker, client);
    set_state(worker, client, ClientState::Active);
    start_rerun(worker, client, worker.server(client.server));
    consume_held(worker, client);
}

void on_released(worker::Worker& worker, Client& client) {
    lease_ended(worker, client);
    if (client.session) {
        stop_rerun(*client.session);
        client.session->reruns = 0;
    }
    set_state(worker, client, ClientState::Idle);
    flush_notifications(worker, client);
    consume_held(worker, client);
}

void follow_statement(Client& client, bool parse, std::string& text, bool ok) {
    if (!ok || !client.session) return;
    SessionKept& kept = kept_of(*client.session);
    std::string_view name = parse ? std::string_view(text).substr(0, text.find('\0')) : text;
    auto found = std::find_if(kept.parses.begin(), kept.parses.end(),
                              [name](const auto& statement) { return statement.first == name; });
    if (found != kept.parses.end()) {
        kept.parse_bytes -= found->second.size();
        kept.parses.erase(found);
    }
    if (!parse) return;
    kept.parse_bytes += text.size();
    kept.parses.emplace_back(std::string(name), std::move(text));
}

void resume(worker::Worker& worker, Client& client) {
    consume_held(worker, client);
}

void on_server_failed(worker::Worker& worker, Client& client, const uint8_t* error,
                      uint32_t error_size) {
    // Transaction pooling: answered in the dead server's place and kept (client_failure.h).
    if (client.server != io::nil &&
        survive_server_failure(worker, client, worker.server(client.server), error, error_size))
        return;
    client.server = io::nil;
    if (client.login && (client.login->lookup == LookupStep::InLine ||
                         client.login->lookup == LookupStep::Running)) {
        std::string why = "its server failed";
        proto::ErrorFields fields;
        if (error != nullptr && proto::parse_error(error, error_size, fields))
            why = "its server said " + std::string(fields.code) + " " + std::string(fields.message);
        lookup_failed(worker, client, why);
        return;
    }
    if (reroute_after_failure(worker, client, error, error_size)) return;
    // Session pooling: the session held state on that server that pgplex could not give
    // another (client_failure.cc).
    std::string why = client.session && client.session->mode == config::PoolMode::Session &&
                              !session_movable(*client.session) &&
                              client.state == ClientState::Active
                          ? "session pooling: the session held state on that server that "
                            "cannot be moved to another (a temporary table, an advisory "
                            "lock, a WITH HOLD cursor, or a change not yet read back)"
                          : "";
    if (error != nullptr && error_size > 0) {
        // Pass the server's own words on, as a FATAL: the session cannot go on.
        proto::ErrorFields fields;
        if (proto::parse_error(error, error_size, fields)) {
            fail(worker, client, CloseReason::ServerFailed, Severity::Fatal,
                 std::string(fields.code).c_str(), fields.message, why);
            return;
        }
    }
    const char* message = client.state == ClientState::Active
                              ? "server closed the connection unexpectedly"
                              : "pgplex could not connect to the server";
    std::string detail;
    if (client.pool) detail = "server " + client.pool->target.endpoint.to_string();
    if (!why.empty()) detail += (detail.empty() ? "" : "; ") + why;
    fail(worker, client, CloseReason::ServerFailed, Severity::Fatal, sqlstate::connection_failure,
         message, detail);
}

void fail(worker::Worker& worker, Client& client, CloseReason reason, Severity severity,
          const char* sqlstate, std::string_view message, std::string_view detail,
          std::string_view hint) {
    if (client.state == ClientState::Closing) return;
    if (reason == CloseReason::ProtocolViolation) ++worker.counters.protocol_violations;
    uint8_t bytes[2048];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, severity, sqlstate, message.substr(0, 1024), detail.substr(0, 400),
                       hint.substr(0, 400));
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
    if (reason != CloseReason::TooManyClients)
        log_info("%s: %s: %.*s", log_context(worker, client).c_str(), to_string(reason),
                 int(message.size()), message.data());
    release(worker, client);
    set_state(worker, client, ClientState::Closing);
    client.close_reason = reason;
    uint32_t slot = worker.client_slot(client);
    worker.pause_recv(client.conn, io::Op::ClientRecv, slot);
    // A TLS handshake not done has no key to say it with: the client only sees the close.
    if (client.conn.tls && !client.conn.tls->established()) worker.buffers.clear(client.conn.out);
    if (client.conn.all_sent())
        worker.request_close(client.conn, io::Op::ClientClose, slot);
    else
        client.conn.close_when_sent = true;
}

void close(worker::Worker& worker, Client& client, CloseReason reason) {
    if (client.state == ClientState::Closing) return;
    if (client.session && worker.config->log_disconnections && reason != CloseReason::CancelRequest)
        log_info("%s: closing: %s (age=%llds)", log_context(worker, client).c_str(),
                 to_string(reason), (long long)((worker.now - client.connected) / 1000));
    release(worker, client);
    set_state(worker, client, ClientState::Closing);
    client.close_reason = reason;
    worker.request_close(client.conn, io::Op::ClientClose, worker.client_slot(client));
}

void on_closed(worker::Worker& worker, Client& client) {
    PGPLEX_ASSERT(client.state == ClientState::Closing && client.server == io::nil);
    if (client.close_reason == CloseReason::HandedOver) ship_handover(worker, client);
    forget_handed(worker, client);
    uint32_t generation = client.conn.generation;
    client.conn = io::Conn{};
    client.conn.generation = generation;
    set_state(worker, client, ClientState::Free);
    client.login.reset();
    drop_statements(worker, client);
    forget_listens(worker, client);
    client.session.reset();
    client.pool = nullptr;
    client.cancel_key = 0;
    worker.shared.clients.fetch_sub(1, std::memory_order_acq_rel);
}

// client_stall_timeout: a client that has taken none of what pgplex queued for it in that
// long (a flood of pipelined queries whose results it never reads holds its server) is
// closed; nothing can be said to it. True when it was.
bool close_if_stalled(worker::Worker& worker, Client& client) {
    int64_t timeout = worker.config->client_stall_timeout_ms;
    if (client.conn.all_sent()) {
        client.sent_at = worker.now;
        return false;
    }
    if (timeout <= 0 || worker.now - client.sent_at <= timeout) return false;
    if (client.state == ClientState::Closing) {
        // Its last words (a FATAL error) wait to be sent before the close: not for ever.
        if (client.conn.close_when_sent)
            worker.request_close(client.conn, io::Op::ClientClose, worker.client_slot(client));
        return false;
    }
    ++worker.counters.clients_stalled;
    log_warning(
        "%s: read none of the %llu bytes queued for it in %lld ms; closing it "
        "(client_stall_timeout)",
        log_context(worker, client).c_str(),
        (unsigned long long)(client.conn.out.bytes + client.conn.sealed.bytes),
        (long long)(worker.now - client.sent_at));
    close(worker, client, CloseReason::Stalled);
    return true;
}

void on_tick(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    int64_t age = worker.now - client.since;
    if (close_if_stalled(worker, client)) return;
    switch (client.state) {
        case ClientState::Startup:
        case ClientState::Auth:
            if (login_tick(worker, client)) return;
            if (config.client_login_timeout_ms > 0 && age > config.client_login_timeout_ms)
                fail(worker, client, CloseReason::LoginTimeout, Severity::Fatal,
                     sqlstate::protocol_violation,
                     "client_login_timeout: the login did not finish in time");
            return;
        case ClientState::Waiting:
            if (client.pool == nullptr) {  // a routed client waiting for a node
                retry_route(worker, client);
                return;
            }
            // The head of the line asks again each tick: a message to another worker can
            // find it between two states, and nothing else would ask twice.
            if (server::waiter_front(worker, *client.pool) == worker.client_slot(client))
                server::want_server(worker, *client.pool);
            if (!client.wait_logged && age > long_wait_ms(config)) log_long_wait(worker, client);
            if (config.query_wait_timeout_ms > 0 && age > config.query_wait_timeout_ms) {
                std::string message = "query_wait_timeout: no server connection became free in " +
                                      std::to_string(config.query_wait_timeout_ms) + " ms";
                std::string detail = "pool of database \"" + client.pool->target.alias +
                                     "\", user \"" + client.pool->target.user + "\"";
                fail(worker, client, CloseReason::WaitTimeout, Severity::Fatal,
                     sqlstate::protocol_violation, message, detail,
                     "Raise pool_size or query_wait_timeout, or hold connections for less time.");
            }
            return;
        case ClientState::Syncing:
            // pgplex's own statements (the replay of the client's session state, a check
            // after its transaction) can wait on a lock like any other.
            if (!client.wait_logged && age > long_wait_ms(config)) {
                client.wait_logged = true;
                log_warning(
                    "%s: has waited %lld ms for pgplex's own statements for its session on "
                    "server backend %u (a lock?)",
                    log_context(worker, client).c_str(), (long long)age,
                    worker.server(client.server).backend_pid);
            }
            if (config.query_wait_timeout_ms > 0 && age > config.query_wait_timeout_ms) {
                server::send_cancel(worker, worker.server(client.server));
                fail(worker, client, CloseReason::WaitTimeout, Severity::Fatal,
                     sqlstate::protocol_violation,
                     "query_wait_timeout: pgplex's own statements for this session did not "
                     "finish on the server in " +
                         std::to_string(config.query_wait_timeout_ms) + " ms",
                     "They replay the session's settings and prepared statements on the "
                     "server it was given, or read what its last transaction left; one may "
                     "wait for a lock another session holds.",
                     "Look for long-held locks (pg_locks) on what the session's prepared "
                     "statements name.");
            }
            return;
        case ClientState::Asking:
            admin_on_tick(worker, client);
            return;
        case ClientState::Free:
        case ClientState::Idle:
        case ClientState::Active:
        case ClientState::Closing:
            return;
    }
}

void on_shutdown(worker::Worker& worker, Client& client, bool immediate) {
    if (client.state == ClientState::Closing || client.state == ClientState::Free) return;
    bool idle = true;
    if (client.state == ClientState::Active || client.state == ClientState::Syncing) {
        const server::Server& server = worker.server(client.server);
        idle = client.state == ClientState::Active && server.pending_syncs == 0 &&
               !server.unsynced && server.status == proto::TransactionStatus::Idle &&
               client.conn.held_in.empty();
    }
    if (!idle && !immediate) return;
    fail(worker, client, CloseReason::Shutdown, Severity::Fatal, sqlstate::admin_shutdown,
         "terminating connection due to administrator command", "pgplex is shutting down");
}

}  // namespace pgplex::client
