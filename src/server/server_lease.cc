// Lending servers to clients, in one place: a client asks for a server (want_server), an
// idle one on this ring is linked to it or one is handed over from another worker's ring,
// the client's session is replayed onto it (sync_session, then synced), and when the
// client's transaction or session is over the server is checked where needed (its settings,
// its session state, the WAL position for read your writes), given back (make_available)
// and reset when its client left (unlink).
//
// Handing a server between rings: idle servers live on the ring that opened them. When a
// client waits on worker A, the pool is full, and worker B holds an idle server of that
// pool, A keeps an empty server
// slot (Adopting) and asks B for it. B stops the server's recv (Yielding), then sends the
// socket with IORING_OP_MSG_RING / IORING_MSG_SEND_FD straight into A's fixed-file table
// at that slot, with the server's state in a Transfer whose address rides in the CQE that
// A receives. Once the send completed, B drops its own table entry without shutting the
// socket down. No lock, no copy of a socket through the fd table, and the pool's count of
// servers never changes (DESIGN, "Lock-free pool table").
#include <strings.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/base/log.h"
#include "pgplex/client/client_work.h"
#include "pgplex/pool/pool.h"
#include "pgplex/proto/error.h"
#include "pgplex/route/router.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_work.h"
#include "pgplex/worker/worker.h"

namespace pgplex::server {

namespace {

// The first worker other than this one with idle servers of the pool, or nil.
uint32_t worker_with_idle(worker::Worker& worker, pool::Pool& pool) {
    for (uint32_t word = 0; word < pool::waiter_mask_words; ++word) {
        uint64_t mask = pool.idle_workers[word].load(std::memory_order_acquire);
        if (word == worker.index / 64) mask &= ~(uint64_t(1) << (worker.index % 64));
        if (mask == 0) continue;
        uint32_t target = word * 64 + uint32_t(__builtin_ctzll(mask));
        return target < worker.shared.ring_fds.size() ? target : io::nil;
    }
    return io::nil;
}

void ask_for_handoff(worker::Worker& worker, pool::Pool& pool, uint32_t target) {
    uint32_t slot = worker.server_acquire();
    if (slot == io::nil) return;
    claim(worker, slot, ServerState::Adopting, pool);
    worker.pools[pool.id].connecting++;
    worker.message(target, io::MessageKind::PoolYield, pool.id,
                   worker.index << 24 | worker.server_file(slot));
}

// Whether a server a client left can be brought back to a clean state: nothing of the
// client's is still running or half sent. An open transaction is fine: it is rolled back,
// as PostgreSQL does when a client disconnects.
// `own_query`: pgplex's own check of the session is the one reply still to come.
bool reusable(const Server& server, bool own_query = false) {
    return server.pending_syncs == (own_query ? 1 : 0) && !server.unsynced &&
           server.expected.empty() && server.cancels_in_flight == 0 && !server.cancel_unsure &&
           !server.skipping && !server.conn.eof && !server.conn.closing &&
           server.conn.held_in.empty() && server.conn.frame.between_messages();
}

// The server's SQL-level prepared statements to drop or prepare for the client's.
std::vector<pool::Setting> prepared_replay(Server& server, const client::Session& session) {
    if (!server.sql_prepared_unknown)
        return pool::prepared_sync(session.sql_prepared, server.sql_prepared);
    std::vector<pool::Setting> steps = pool::prepared_sync(session.sql_prepared, {});
    steps.insert(steps.begin(), {{}, "DEALLOCATE ALL", {}, {}});
    server.prepared.clear();  // DEALLOCATE ALL drops pgplex's renamed statements too
    server.sql_prepared_unknown = false;
    return steps;
}

// Sends what brings the server to the client's session (session_state.h): one Query with
// its settings, then its SQL-level statements to drop or prepare, one Query each so that one
// that fails harms nothing else; a PREPARE made under other settings than the client's of
// now runs in a transaction block of its own under those (prepare_in_context). False: the
// server is the client's already.
bool sync_session(worker::Worker& worker, Server& server, const client::Session& session) {
    const std::vector<pool::Setting>& startup = pool::settings_of(session.startup);
    const std::vector<pool::Setting>& settings = pool::settings_of(session.settings);
    auto reported = [&](const std::string& name) -> const std::string* {
        if (!pool::default_may_stand(startup, settings, name)) return nullptr;
        for (const auto& [key, value] : server.parameters)
            if (strcasecmp(key.c_str(), name.c_str()) == 0) return &value;
        return nullptr;
    };
    const std::vector<pool::Setting>& applied = pool::settings_of(server.applied);
    bool prepared_differ = server.sql_prepared_unknown ||
                           session.sql_prepared.size() != server.sql_prepared.size() ||
                           !pool::prepared_sync(session.sql_prepared, server.sql_prepared).empty();
    // Session pooling: a server linked to the session holds none of its protocol-level
    // statements and channels (a new session's, or the next after its server failed).
    bool follows = session.mode == config::PoolMode::Session && session.kept &&
                   (!session.kept->parses.empty() || !session.kept->channels.empty());
    if (pool::in_sync(startup, settings, applied, reported) && !prepared_differ && !follows)
        return false;
    std::vector<pool::Setting> wanted = pool::effective(startup, settings);
    pool::SettingsSync sync = pool::settings_sync(wanted, applied, reported);
    server.sync_settings = !sync.sql.empty();
    server.sync_settings_failed = false;
    server.sync_replies = 0;
    server.pending_error.clear();
    if (server.sync_settings) send_query(worker, server, sync.sql);
    for (const pool::Setting& step : prepared_replay(server, session)) {
        if (!step.context || pool::same_settings(*step.context, wanted)) {
            send_query(worker, server, step.sql);
            continue;
        }
        for (const std::string& query : pool::prepare_in_context(step, sync.applied))
            send_query(worker, server, query);
    }
    server.applied = std::make_shared<const std::vector<pool::Setting>>(std::move(sync.applied));
    server.sql_prepared = session.sql_prepared;
    if (follows) {
        for (const auto& [name, body] : session.kept->parses) send_parse(worker, server, body);
        for (const std::string& channel : session.kept->channels)
            send_query(worker, server, "LISTEN " + pool::quote_identifier(channel));
    }
    return true;
}

// Tells every other worker with clients waiting for the pool to look again.
void wake_waiters(worker::Worker& worker, pool::Pool& pool) {
    for (uint32_t word = 0; word < pool::waiter_mask_words; ++word) {
        uint64_t mask = pool.waiter_workers[word].load(std::memory_order_acquire);
        while (mask != 0) {
            uint32_t target = word * 64 + uint32_t(__builtin_ctzll(mask));
            mask &= mask - 1;
            if (target != worker.index && target < worker.shared.ring_fds.size())
                worker.message(target, io::MessageKind::PoolWake, pool.id, 0);
        }
    }
}

// Gives the client's SQL-level PREPAREs that have none the settings it has now, as what
// they were prepared under (a transaction that set search_path and prepared sees its own).
void stamp_prepared(client::Session& session) {
    std::shared_ptr<const std::vector<pool::Setting>> now;
    for (pool::Setting& prepare : session.sql_prepared) {
        if (prepare.context) continue;
        if (!now)
            now = std::make_shared<const std::vector<pool::Setting>>(pool::effective(
                pool::settings_of(session.startup), pool::settings_of(session.settings)));
        prepare.context = now;
    }
}

// The SQL-level statements a settings check found (`rows`): each with its PREPARE text,
// from what the client had or sent in the transaction, the one whose text the server's
// holds (a PREPARE of a name in use fails and the first stays; after a DEALLOCATE the new
// one stands). When the text tells nothing (cut short), the newest of the name is taken
// and the server's list is unknown, so the next lending replays the client's view whole
// (DEALLOCATE ALL first); a name pgplex has no text for is dropped the same way.
void reconcile_prepared(Server& server, client::Session& session,
                        const std::vector<std::string>& rows) {
    // Candidates, the later preferred: what the client had, what the transaction prepared,
    // then what would stand had all of it run (a PREPARE of a name in use leaves the old
    // statement, and its settings, in place).
    std::vector<pool::Setting> known = session.sql_prepared;
    std::vector<pool::Setting> all_ran = session.sql_prepared;
    for (const pool::SetChange& change : session.pending) {
        if (change.kind == pool::SetKind::Prepare)
            known.push_back({change.name, change.sql, {}, {}});
        pool::apply_prepare_change(all_ran, change);
    }
    known.insert(known.end(), all_ran.begin(), all_ran.end());
    session.pending.clear();
    session.pending_unsure = false;
    std::vector<pool::Setting> held;
    for (const std::string& row : rows) {
        // length ':' name, then the start of the text the statement was prepared from
        size_t colon = row.find(':');
        size_t length = colon == std::string::npos ? 0 : strtoul(row.c_str(), nullptr, 10);
        if (colon == std::string::npos || colon + 1 + length > row.size()) {
            server.sql_prepared_unknown = true;
            continue;
        }
        std::string_view name(row.data() + colon + 1, length);
        std::string_view text = std::string_view(row).substr(colon + 1 + length);
        const pool::Setting* found = nullptr;  // the last of that name its text holds
        const pool::Setting* newest = nullptr;
        for (const pool::Setting& candidate : known) {
            if (candidate.name != name) continue;
            newest = &candidate;
            if (text.find(candidate.sql) != std::string_view::npos) found = &candidate;
        }
        if (found == nullptr) {
            server.sql_prepared_unknown = true;
            found = newest;
        }
        if (found != nullptr) held.push_back(*found);
    }
    session.sql_prepared = held;
    server.sql_prepared = std::move(held);
}

// The message of an ErrorResponse body, for logs.
std::string error_message(const std::vector<uint8_t>& error) {
    proto::ErrorFields fields;
    if (!proto::parse_error(error.data(), uint32_t(error.size()), fields)) return "(unreadable)";
    return std::string(fields.code) + " " + std::string(fields.message);
}

// A client whose transaction block was lost with its last server (client_failure.h) gets
// this one in an aborted block: pgplex's BEGIN, then a statement that fails, their replies
// read by pgplex. PostgreSQL then answers the client's statements 25P02 and its ROLLBACK
// (or COMMIT) as it would have on the dead server. True: under way (Syncing).
// Session pooling: the rows only its check has (session_check_sql) are taken out of
// `checked`: the protocol-level statements it no longer holds are dropped from the record,
// its channels are the ones read, and a session holding what no other server can be given
// (or whose check failed: a statement_timeout of 1 ms, say) is no longer moved should its
// server fail. The server stays the client's either way.
void session_checked(const Server& server, client::Client& client,
                     std::vector<pool::Setting>& checked, bool error) {
    client::Session& session = *client.session;
    session.state_unread = false;
    session.pin_suspect = false;
    std::vector<std::string> names;
    std::vector<std::string> channels;
    bool holds = error;
    std::erase_if(checked, [&](const pool::Setting& row) {
        if (row.name == pool::protocol_statement_row)
            names.push_back(row.value);
        else if (row.name == pool::listen_row)
            channels.push_back(row.value);
        else if (row.name == pool::session_state_row)
            holds |= row.value != "0";
        else
            return false;
        return true;
    });
    if (session.kept || !channels.empty()) {
        client::SessionKept& kept = client::kept_of(session);
        std::erase_if(kept.parses, [&](const std::pair<std::string, std::string>& parse) {
            bool gone = std::find(names.begin(), names.end(), parse.first) == names.end();
            if (gone) kept.parse_bytes -= parse.second.size();
            return gone;
        });
        kept.channels = std::move(channels);
    }
    bool was = session.unmovable || session.state_on_server;
    session.unmovable = holds;
    if (error) session.state_on_server = true;
    if (holds && !was) {
        log_info(
            "%s client_slot=%u: holds session state no other server can be given (%s); "
            "it is closed should this server fail while it does",
            log_context(server).c_str(), server.client,
            error ? "the check of its session failed"
                  : "a temporary table, an advisory lock or a WITH HOLD cursor");
    }
}

// Reads what the client's transaction left of its session (session_state.h) before the
// client goes on: its next messages wait meanwhile (settings_checked).
void start_settings_check(worker::Worker& worker, Server& server, client::Client& client,
                          std::string_view sql) {
    set_state(worker, server, ServerState::Syncing);
    server.reading_settings = true;
    server.checked.clear();
    server.pending_error.clear();
    client::set_state(worker, client, client::ClientState::Syncing);
    send_query(worker, server, sql);
}

bool abort_for_lost_block(worker::Worker& worker, Server& server, client::Client& client) {
    if (!client.session || client.session->lost != client::TransactionLost::Aborted) return false;
    if (server.state != ServerState::Syncing) set_state(worker, server, ServerState::Syncing);
    if (client.state != client::ClientState::Syncing)
        client::set_state(worker, client, client::ClientState::Syncing);
    server.aborting = true;
    send_query(worker, server, "BEGIN");
    send_query(worker, server,
               "SELECT 1/0 -- pgplex: this client's transaction was lost with its server; "
               "it is aborted here until the client rolls back");
    return true;
}

}  // namespace

bool paused(const worker::Worker& worker, const pool::Pool& pool) {
    return worker.shared.console.paused_all.load(std::memory_order_relaxed) ||
           pool.paused.load(std::memory_order_relaxed);
}

void serve_waiters(worker::Worker& worker, pool::Pool& pool) {
    if (paused(worker, pool)) return;
    while (true) {
        uint32_t waiter = waiter_front(worker, pool);
        if (waiter == io::nil) return;
        uint32_t idle = idle_pop(worker, pool);
        if (idle == io::nil) break;
        waiter_remove(worker, waiter);
        link(worker, worker.server(idle), worker.client(waiter));
    }
    want_server(worker, pool);
}

void want_server(worker::Worker& worker, pool::Pool& pool) {
    if (paused(worker, pool)) return;  // RESUME serves the waiters (serve_waiters)
    pool::PoolLocal& local = worker.pools[pool.id];
    if (local.connecting >= local.waiter_count) return;
    // An idle server on another ring costs a message to borrow; a new one costs a TCP
    // handshake, an authentication and a backend fork.
    uint32_t target = worker_with_idle(worker, pool);
    if (target != io::nil) {
        ask_for_handoff(worker, pool, target);
        return;
    }
    if (pool.try_reserve_server() || take_from_reserve(worker, pool)) connect(worker, pool);
}

void yield_idle(worker::Worker& worker, pool::Pool& pool, uint32_t request) {
    uint32_t requester = request >> 24;
    uint32_t file = request & 0xffffffu;
    uint32_t slot = idle_pop(worker, pool);
    if (slot == io::nil) {
        worker.message(requester, io::MessageKind::HandoffFailed, pool.id, file);
        return;
    }
    Server& server = worker.server(slot);
    set_state(worker, server, ServerState::Yielding);
    server.yield_worker = requester;
    server.yield_file = file;
    // Its multishot recv must end first, or bytes meant for the new owner could land here.
    worker.pause_recv(server.conn, io::Op::ServerRecv, slot);
    if (!server.conn.recv_armed) continue_yield(worker, server);
}

void continue_yield(worker::Worker& worker, Server& server) {
    PGPLEX_ASSERT(server.state == ServerState::Yielding && !server.conn.recv_armed);
    if (!server.conn.held_in.empty() || !server.conn.all_sent() ||
        !server.conn.frame.between_messages() || server.conn.eof) {
        close(worker, server, CloseReason::PoolWanted);
        return;
    }
    auto* transfer = new Transfer{};
    transfer->file_index = server.yield_file;
    transfer->backend_pid = server.backend_pid;
    transfer->backend_key = server.backend_key;
    transfer->created = server.created;
    transfer->parameters = std::move(server.parameters);
    transfer->applied = std::move(server.applied);
    transfer->prepared = std::move(server.prepared);
    transfer->sql_prepared = std::move(server.sql_prepared);
    transfer->sql_prepared_unknown = server.sql_prepared_unknown;
    transfer->tls = std::move(server.conn.tls);
    server.transfer = transfer;
    io_uring_sqe* sqe = worker.ring.sqe();
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, worker.shared.ring_fds[server.yield_worker],
                     reinterpret_cast<void*>(uintptr_t(IORING_MSG_SEND_FD)), 0,
                     io::pack_pointer(io::Op::Adopt, transfer));
    sqe->addr3 = server.conn.file;
    sqe->file_index = server.yield_file + 1;  // 1-based: 0 would mean "no slot"
    uint32_t slot = worker.server_slot(server);
    io_uring_sqe_set_data64(sqe, io::pack(io::Op::ServerYieldSent, slot, server.conn.generation));
    ++server.conn.inflight;
}

void on_yield_sent(worker::Worker& worker, Server& server, int result) {
    Transfer* transfer = server.transfer;
    server.transfer = nullptr;
    if (result < 0) {
        log_warning("handing a server to worker %u failed: %s", server.yield_worker,
                    strerror(-result));
        server.parameters = std::move(transfer->parameters);
        delete transfer;
        close(worker, server, CloseReason::PoolWanted);
        return;
    }
    // The other worker owns the socket now: drop our table entry, without a shutdown.
    uint32_t slot = worker.server_slot(server);
    set_state(worker, server, ServerState::Closing);
    server.close_reason = CloseReason::HandedOver;
    server.conn.closing = true;
    worker.continue_close(server.conn, io::Op::ServerClose, slot);
}

void adopt(worker::Worker& worker, Transfer* transfer) {
    uint32_t slot = transfer->file_index - worker.client_capacity;
    PGPLEX_ASSERT(slot < worker.server_capacity);
    Server& server = worker.server(slot);
    if (server.state != ServerState::Adopting) {
        // We stopped waiting for it (timeout or shutdown): its place goes back to the pool.
        io_uring_sqe* sqe = worker.ring.sqe();
        io_uring_prep_close_direct(sqe, transfer->file_index);
        io_uring_sqe_set_data64(sqe, io::pack(io::Op::Ignored, 0, 0));
        log_warning("a server handed over too late was closed");
        delete transfer;
        return;
    }
    pool::Pool& pool = *server.pool;
    worker.pools[pool.id].connecting--;
    server.conn.file = transfer->file_index;
    server.backend_pid = transfer->backend_pid;
    server.backend_key = transfer->backend_key;
    server.created = transfer->created;
    server.parameters = std::move(transfer->parameters);
    server.applied = std::move(transfer->applied);
    server.prepared = std::move(transfer->prepared);
    server.sql_prepared = std::move(transfer->sql_prepared);
    server.sql_prepared_unknown = transfer->sql_prepared_unknown;
    server.conn.tls = std::move(transfer->tls);
    server.status = proto::TransactionStatus::Idle;
    server.pending_syncs = 0;
    server.unsynced = false;
    delete transfer;
    worker.arm_recv(server.conn, io::Op::ServerRecv, slot);
    make_available(worker, server);
}

void handoff_failed(worker::Worker& worker, uint32_t file_index) {
    uint32_t slot = file_index - worker.client_capacity;
    if (slot >= worker.server_capacity) return;
    Server& server = worker.server(slot);
    if (server.state != ServerState::Adopting) return;
    pool::Pool& pool = *server.pool;
    worker.pools[pool.id].connecting--;
    set_state(worker, server, ServerState::Free);
    server.pool = nullptr;
    worker.server_release_slot(slot);
    // The idle server it hoped for went to someone else: try again now (the other worker's
    // idle mark is gone, so this opens a server or waits for a release).
    if (waiter_front(worker, pool) != io::nil) want_server(worker, pool);
}

namespace {

// SHOW STATS: a server lent, and how long its client waited for one (since it began to wait).
// /metrics' wait histogram counts every lending, a client that did not wait as 0, so its
// quantiles are over all of them as SHOW STATS' avg_wait_time is.
void count_assignment(const worker::Worker& worker, pool::Pool& pool,
                      const client::Client& client) {
    uint64_t wait_us = 0;
    if (client.state == client::ClientState::Waiting)
        wait_us = uint64_t(std::max<int64_t>(0, worker.now - client.since)) * 1000;
    pool.count(pool::Stat::ServerAssignments, 1);
    if (wait_us > 0) pool.count(pool::Stat::WaitUs, wait_us);
    pool.wait_time.observe(wait_us);
}

}  // namespace

void link(worker::Worker& worker, Server& server, client::Client& client) {
    PGPLEX_ASSERT(server.state == ServerState::Idle && server.client == io::nil);
    server.client = worker.client_slot(client);
    client.server = worker.server_slot(server);
    if (client.login && client.login->lookup == client::LookupStep::InLine) {
        start_lookup(worker, server, client);
        return;
    }
    ++server.epoch;
    count_assignment(worker, *server.pool, client);
    if (!sync_session(worker, server, *client.session)) {
        if (abort_for_lost_block(worker, server, client)) return;
        set_state(worker, server, ServerState::Active);
        client::on_server_ready(worker, client);
        return;
    }
    set_state(worker, server, ServerState::Syncing);
    client::set_state(worker, client, client::ClientState::Syncing);
}

// The replay of a client's session (sync_session) is done. When its settings were refused
// (a role since dropped, a value no longer valid) the server is closed, and the client,
// which has not seen a thing, asks for a server once more; at login, or when that fails
// too, it hears the server's own words, as it would on its own connection. A PREPARE that
// fails (its table is gone) fails alone: the client's EXECUTE of it will say so.
void synced(worker::Worker& worker, Server& server, const std::vector<uint8_t>& error) {
    client::Client& client = worker.client(server.client);
    client::Session& session = *client.session;
    if (server.sync_settings_failed) {
        log_warning("%s: restoring a client's session settings failed (%s); closing it",
                    log_context(server).c_str(), error_message(error).c_str());
        server.client = io::nil;
        client.server = io::nil;
        close(worker, server, CloseReason::Unusable);
        if (client.login || ++session.replay_failures > 1) {
            client::on_server_failed(worker, client, error.data(), uint32_t(error.size()));
            return;
        }
        client::on_released(worker, client);
        return;
    }
    if (!error.empty()) {
        log_info("%s: a client's prepared statement or LISTEN could not be replayed: %s",
                 log_context(server).c_str(), error_message(error).c_str());
        server.sql_prepared_unknown = true;  // which one failed is not known
    }
    session.replay_failures = 0;
    if (abort_for_lost_block(worker, server, client)) return;
    set_state(worker, server, ServerState::Active);
    client::on_server_ready(worker, client);
}

void lost_block_entered(worker::Worker& worker, Server& server) {
    server.aborting = false;
    PGPLEX_ASSERT(server.client != io::nil);
    client::Client& client = worker.client(server.client);
    if (server.status != proto::TransactionStatus::Failed) {
        // Never expected: the client cannot be given a block it would not see as failed.
        log_warning("%s: pgplex's aborted transaction block did not abort; closing it",
                    log_context(server).c_str());
        client.server = io::nil;
        server.client = io::nil;
        close(worker, server, CloseReason::Unusable);
        client::on_server_failed(worker, client, nullptr, 0);
        return;
    }
    set_state(worker, server, ServerState::Active);
    client::on_server_ready(worker, client);
}

void release_if_done(worker::Worker& worker, Server& server) {
    if (server.state != ServerState::Active || server.client == io::nil) return;
    client::Client& client = worker.client(server.client);
    if (!client.session) return;
    bool done = server.pending_syncs == 0 && !server.unsynced && server.expected.empty() &&
                server.status == proto::TransactionStatus::Idle &&
                server.conn.frame.between_messages() && client.conn.frame.between_messages();
    if (client.session->mode == config::PoolMode::Session) {
        // The server stays the client's; what the transaction may have left is read now,
        // so that another server can be given it should this one fail.
        if (done && client.session->check_settings && !client.session->state_on_server &&
            server.cancels_in_flight == 0)
            start_settings_check(worker, server, client, pool::session_check_sql());
        return;
    }
    if (!done) return;
    // A cancel of the client's on its way would hit whatever the server runs when it lands:
    // the server stays the client's until it has (cancel_done).
    if (server.cancels_in_flight > 0) return;
    // The client has its whole reply: what the server says next is pgplex's to read (a
    // check below, or an idle server's notice or EOF). A reply larger than the client's send
    // queue bound paused the server's receives until the client drained it (on_server_output),
    // and only this client's sends would resume them: a server left paused here would never
    // read its next client's replies, nor the check's.
    worker.resume_recv(server.conn, io::Op::ServerRecv, worker.server_slot(server));
    if (client.session->routing && client.session->routing->needs_lsn) {
        set_state(worker, server, ServerState::Syncing);
        server.reading_lsn = true;
        server.session_state_count = -1;
        client::set_state(worker, client, client::ClientState::Syncing);
        send_query(worker, server, "SELECT pg_current_wal_insert_lsn() - '0/0'");
        return;
    }
    if (client.session->check_settings) {
        // Read what the transaction left of the session's settings before anyone else, or
        // this client's next transaction elsewhere, relies on them.
        start_settings_check(worker, server, client, pool::settings_check_sql);
        return;
    }
    if (client.session->pin_suspect) {
        // Count what the transaction left behind before lending the server to anyone else;
        // the client's next messages wait meanwhile.
        set_state(worker, server, ServerState::Syncing);
        server.checking = true;
        server.session_state_count = -1;
        client::set_state(worker, client, client::ClientState::Syncing);
        send_query(worker, server, pool::session_state_check_sql);
        return;
    }
    if (client.session->pinned) return;  // nothing sent that could let go of it
    if (server.cancel_unsure) {          // a cancel of it may still land: lent to nobody
        client.server = io::nil;
        server.client = io::nil;
        close(worker, server, CloseReason::Unusable);
        client::on_released(worker, client);
        return;
    }
    give_back(worker, server, client);
}

// The count of the client's session state is in: keep the server with the client (pinned)
// while there is any, else give it back.
void checked_session_state(worker::Worker& worker, Server& server, bool error) {
    server.checking = false;
    client::Client& client = worker.client(server.client);
    client::Session& session = *client.session;
    int64_t count = error ? -1 : server.session_state_count;
    session.pin_suspect = false;
    if (count == 0) {
        if (session.pinned)
            log_info("%s: holds no more session state; unpinned from its server",
                     client::log_context(worker, client).c_str());
        session.pinned = false;
        give_back(worker, server, client);
        return;
    }
    if (!session.pinned) {
        ++worker.counters.pinned_clients;
        log_info(
            "%s: pinned to its server: it holds %s session state "
            "(advisory locks, WITH HOLD cursors, temporary tables); %llu pins so far "
            "on worker %u",
            client::log_context(worker, client).c_str(),
            count < 0 ? "possibly" : std::to_string(count).c_str(),
            (unsigned long long)worker.counters.pinned_clients, worker.index);
    }
    session.pinned = true;
    set_state(worker, server, ServerState::Active);
    client::on_server_ready(worker, client);
}

// The settings check is in (session_state.h): what the server holds is now the client's
// session settings, and the server's; then the server goes on as release_if_done decides.
// A check that failed leaves nothing known: the server is closed, the client keeps what it
// had and goes on without it.
void settings_checked(worker::Worker& worker, Server& server, bool error) {
    server.reading_settings = false;
    PGPLEX_ASSERT(server.client != io::nil);
    client::Client& client = worker.client(server.client);
    client::Session& session = *client.session;
    std::vector<pool::Setting> checked = std::move(server.checked);
    server.checked.clear();
    if (session.mode == config::PoolMode::Session) {
        session_checked(server, client, checked, error);
        if (error) {
            session.check_settings = false;
            session.pending.clear();
            set_state(worker, server, ServerState::Active);
            client::set_state(worker, client, client::ClientState::Active);
            client::on_server_ready(worker, client);
            return;
        }
    }
    if (error) {
        log_warning("%s: reading the session's settings failed; closing it",
                    log_context(server).c_str());
        session.pending.clear();
        session.pending_unsure = false;
        client.server = io::nil;
        server.client = io::nil;
        close(worker, server, CloseReason::Unusable);
        client::on_released(worker, client);
        return;
    }
    session.check_settings = false;
    std::vector<std::string> prepared;
    std::erase_if(checked, [&prepared](const pool::Setting& row) {
        if (row.name != prepared_row) return false;
        prepared.push_back(row.value);
        return true;
    });
    reconcile_prepared(server, session, prepared);
    session.settings = std::make_shared<const std::vector<pool::Setting>>(std::move(checked));
    server.applied = session.settings;
    stamp_prepared(session);
    server.sql_prepared = session.sql_prepared;
    set_state(worker, server, ServerState::Active);
    client::set_state(worker, client, client::ClientState::Active);
    release_if_done(worker, server);
    if (server.client != io::nil && client.state == client::ClientState::Active)
        client::on_server_ready(worker, client);
}

// Read your writes: the primary's WAL insert position after the client's transaction is in;
// its reads now go only where that is replayed. Then the server goes back as usual.
void read_lsn_done(worker::Worker& worker, Server& server, bool error) {
    server.reading_lsn = false;
    PGPLEX_ASSERT(server.client != io::nil);
    client::Client& client = worker.client(server.client);
    PGPLEX_ASSERT(client.session && client.session->routing);
    route::Routing& routing = *client.session->routing;
    routing.needs_lsn = false;
    if (!error && server.session_state_count > 0)
        routing.ryw_lsn = std::max(routing.ryw_lsn, uint64_t(server.session_state_count));
    set_state(worker, server, ServerState::Active);
    client::set_state(worker, client, client::ClientState::Active);
    release_if_done(worker, server);
    if (server.client != io::nil && client.state == client::ClientState::Active)
        client::on_server_ready(worker, client);
}

namespace {

// A transaction ended (ReadyForQuery idle). Its SETs need nothing here: the settings check
// reads what they left (release_if_done). Its PREPAREs and DEALLOCATEs stand when it
// committed; when it failed, some may have run all the same (they are not transactional),
// so the check also asks which statements the server holds, and they wait for its answer.
void settle_changes(Server& server, client::Session& session) {
    bool kept = !session.transaction_failed && !session.transaction_rolled_back;
    session.transaction_failed = false;
    session.transaction_rolled_back = false;
    if (session.pending.empty()) return;
    if (!kept) {
        session.check_settings = true;
        session.pending_unsure = session.mode != config::PoolMode::Session;
        return;
    }
    // Once a transaction that touched them failed, only the check tells (reconcile_prepared).
    // The check waits for the lease to end, and a lease can outlast the failed transaction:
    // when pgplex follows the client's Query with its own (a reset of a startup parameter),
    // the client has its ReadyForQuery before that reply is in, and a Query it sends at once
    // runs on the same lease. Its commit says nothing of the failed one's statements.
    if (session.pending_unsure) return;
    for (const pool::SetChange& change : session.pending)
        pool::apply_prepare_change(session.sql_prepared, change);
    // What they were prepared under: the settings of now, unless a check is to tell.
    if (!session.check_settings) stamp_prepared(session);
    server.sql_prepared = session.sql_prepared;
    session.pending.clear();
}

}  // namespace

void settle_settings(Server& server, client::Session& session) {
    settle_changes(server, session);
    // Session pooling: the transaction's changes stand unread until the check runs.
    if (session.mode == config::PoolMode::Session && session.check_settings)
        session.state_unread = true;
}

void give_back(worker::Worker& worker, Server& server, client::Client& client) {
    client.server = io::nil;
    server.client = io::nil;
    make_available(worker, server);
    client::on_released(worker, client);
}

void make_available(worker::Worker& worker, Server& server) {
    pool::Pool& pool = *server.pool;
    server.client = io::nil;
    const config::Config& config = *worker.config;
    if (config.server_lifetime_ms > 0 && worker.now - server.created > config.server_lifetime_ms) {
        close(worker, server, CloseReason::Lifetime);
        return;
    }
    if (server.created < pool.reconnect_before_ms.load(std::memory_order_relaxed)) {
        close(worker, server, CloseReason::Reconnect);
        return;
    }
    if (pool.over_budget()) {  // a lowered limit or share (pool/budget.h): its place goes back
        close(worker, server, CloseReason::PoolWanted);
        return;
    }
    // Whoever gets it next must hear it: no flow control of its last client stays on.
    worker.resume_recv(server.conn, io::Op::ServerRecv, worker.server_slot(server));
    uint32_t waiter = paused(worker, pool) ? io::nil : waiter_front(worker, pool);
    if (waiter != io::nil) {
        waiter_remove(worker, waiter);
        set_state(worker, server, ServerState::Idle);
        link(worker, server, worker.client(waiter));
        return;
    }
    set_state(worker, server, ServerState::Idle);
    idle_push(worker, worker.server_slot(server));
    // Clients wait on other workers: they borrow this server through the hand-off
    // (above) rather than open one of their own.
    if (pool.waiting.load(std::memory_order_acquire) > 0) wake_waiters(worker, pool);
}

// A place in the pool was given up: a waiter here gets a new server; waiters on other
// workers are woken to open one on their own rings.
void place_freed(worker::Worker& worker, pool::Pool& pool) {
    pool::PoolLocal& local = worker.pools[pool.id];
    if (local.waiter_count > local.connecting) {
        if (pool.try_reserve_server()) connect(worker, pool);
        return;
    }
    if (pool.waiting.load(std::memory_order_acquire) > 0) wake_waiters(worker, pool);
}

namespace {

// Sends a reset query (Resetting): the server's settings and prepared statements are then
// none that pgplex knows of.
void send_reset(worker::Worker& worker, Server& server, const std::string& reset) {
    server.applied.reset();
    send_query(worker, server, reset);
    // Statements transaction-pooled clients prepared (a pool may serve both modes).
    bool holds =
        server.prepared.size() > 0 || !server.sql_prepared.empty() || server.sql_prepared_unknown;
    if (holds && !pool::drops_prepared(reset)) send_query(worker, server, "DEALLOCATE ALL");
    server.prepared.clear();
    server.sql_prepared.clear();
    server.sql_prepared_unknown = false;
}

}  // namespace

void unlink(worker::Worker& worker, Server& server, bool reset_session) {
    server.client = io::nil;
    bool answered = server.expected.empty();
    forget_expected(worker, server);
    if (!answered) server.unsynced = true;  // replies are still to come: not reusable
    if (server.state == ServerState::Closing) return;
    if (server.pool->target.direct) {  // a direct service: the server was the client's own
        close(worker, server, CloseReason::Direct);
        return;
    }
    // A client that leaves while the check of its session runs (it sent Terminate right
    // after a DO block or a SET) leaves a server that is reset once the check's answer is
    // in (its rows are dropped), in either pool mode.
    bool own_query = server.state == ServerState::Syncing && server.reading_settings;
    if (own_query) {
        server.reading_settings = false;
        server.checked.clear();
    }
    if (!reusable(server, own_query)) {
        close(worker, server, CloseReason::Unusable);
        return;
    }
    worker.resume_recv(server.conn, io::Op::ServerRecv, worker.server_slot(server));
    static const std::string no_reset;
    const std::string& reset = reset_session ? worker.config->server_reset_query : no_reset;
    bool in_transaction = server.status != proto::TransactionStatus::Idle;
    if (reset.empty() && !in_transaction && !own_query) {
        make_available(worker, server);
        return;
    }
    set_state(worker, server, ServerState::Resetting);
    // Two messages: DISCARD ALL may not run inside a transaction block, nor in the implicit
    // one a multi-statement Query makes.
    if (in_transaction) send_query(worker, server, "ROLLBACK");
    if (!reset.empty()) send_reset(worker, server, reset);
    // The check's answer is dropped, so what the client's last transaction left on the server
    // is unknown (server.applied is what pgplex knew before it): it is discarded in full,
    // whatever server_reset_query says (transaction pooling runs none).
    if (own_query && !pool::discards_all(reset)) send_reset(worker, server, "DISCARD ALL");
}

// --- a pool's idle servers and waiting clients on this worker ---------------------------

void idle_push(worker::Worker& worker, uint32_t slot) {
    Server& s = worker.server(slot);
    pool::PoolLocal& local = worker.pools[s.pool->id];
    s.idle_prev = io::nil;
    s.idle_next = local.idle_head;
    if (local.idle_head != io::nil) worker.server(local.idle_head).idle_prev = slot;
    local.idle_head = slot;
    if (local.idle_count++ == 0) s.pool->mark_idle_worker(worker.index);
}

void idle_remove(worker::Worker& worker, uint32_t slot) {
    Server& s = worker.server(slot);
    pool::PoolLocal& local = worker.pools[s.pool->id];
    PGPLEX_ASSERT(local.idle_count > 0);
    if (s.idle_prev != io::nil)
        worker.server(s.idle_prev).idle_next = s.idle_next;
    else
        local.idle_head = s.idle_next;
    if (s.idle_next != io::nil) worker.server(s.idle_next).idle_prev = s.idle_prev;
    s.idle_prev = s.idle_next = io::nil;
    if (--local.idle_count == 0) s.pool->clear_idle_worker(worker.index);
}

uint32_t idle_pop(worker::Worker& worker, pool::Pool& pool) {
    uint32_t slot = worker.pools[pool.id].idle_head;
    if (slot != io::nil) idle_remove(worker, slot);
    return slot;
}

void waiter_push(worker::Worker& worker, uint32_t slot) {
    client::Client& c = worker.client(slot);
    pool::PoolLocal& local = worker.pools[c.pool->id];
    c.wait_next = io::nil;
    c.wait_prev = local.waiter_tail;
    if (local.waiter_tail != io::nil)
        worker.client(local.waiter_tail).wait_next = slot;
    else
        local.waiter_head = slot;
    local.waiter_tail = slot;
    if (local.waiter_count++ == 0) c.pool->mark_waiter_worker(worker.index);
    c.pool->waiting.fetch_add(1, std::memory_order_acq_rel);
}

void waiter_remove(worker::Worker& worker, uint32_t slot) {
    client::Client& c = worker.client(slot);
    pool::PoolLocal& local = worker.pools[c.pool->id];
    PGPLEX_ASSERT(local.waiter_count > 0);
    if (c.wait_prev != io::nil)
        worker.client(c.wait_prev).wait_next = c.wait_next;
    else
        local.waiter_head = c.wait_next;
    if (c.wait_next != io::nil)
        worker.client(c.wait_next).wait_prev = c.wait_prev;
    else
        local.waiter_tail = c.wait_prev;
    c.wait_prev = c.wait_next = io::nil;
    if (--local.waiter_count == 0) c.pool->clear_waiter_worker(worker.index);
    c.pool->waiting.fetch_sub(1, std::memory_order_acq_rel);
}

uint32_t waiter_front(worker::Worker& worker, const pool::Pool& pool) {
    return worker.pools[pool.id].waiter_head;
}

}  // namespace pgplex::server
