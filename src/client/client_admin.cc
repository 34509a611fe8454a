// See client/client_admin.h. Simple queries only, as PgBouncer's admin console: each Query is
// answered from the config and topology snapshots the worker holds.
#include "pgplex/client/client_admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <vector>

#include "pgplex/admin/console.h"
#include "pgplex/admin/show.h"
#include "pgplex/base/assert.h"
#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/server.h"
#include "pgplex/server/server_work.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

// The client's AdminWait, made on first use.
AdminWait& admin_wait(Client& client) {
    if (!client.session->admin_wait) client.session->admin_wait = std::make_unique<AdminWait>();
    return *client.session->admin_wait;
}

// "10.0.0.1" and its port, from a socket address.
void address_of(const sockaddr_storage& address, std::string& text, int& port) {
    char buffer[INET6_ADDRSTRLEN] = "";
    if (address.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
        inet_ntop(AF_INET, &v4->sin_addr, buffer, sizeof buffer);
        port = ntohs(v4->sin_port);
    } else if (address.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
        inet_ntop(AF_INET6, &v6->sin6_addr, buffer, sizeof buffer);
        port = ntohs(v6->sin6_port);
    } else if (address.ss_family == AF_UNIX) {
        text = "unix";  // as PgBouncer shows a Unix-socket client
        return;
    }
    text = buffer;
}

using proto::FrontendMessage;
using proto::Severity;

bool listed(const std::vector<std::string>& users, const std::string& user) {
    return std::find(users.begin(), users.end(), user) != users.end();
}

void queue_writer(worker::Worker& worker, Client& client, std::vector<uint8_t>& bytes,
                  uint32_t used) {
    queue(worker, client, bytes.data(), used);
}

}  // namespace

void begin_admin(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    const std::string& user = client.session->user;
    if (!listed(config.admin_users, user) && !listed(config.stats_users, user)) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::insufficient_privilege,
             "user \"" + user + "\" may not use the pgplex management database", "",
             "List the user in admin_users (or stats_users, for SHOW only) in [pgplex].");
        return;
    }
    std::vector<uint8_t> bytes(1024);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    proto::write_authentication(writer, proto::AuthRequest::Ok);
    static constexpr std::pair<const char*, const char*> parameters[] = {
        {"server_version", "15.0 (pgplex " PGPLEX_VERSION ")"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"},
        {"application_name", ""},
    };
    for (const auto& [name, value] : parameters) proto::write_parameter_status(writer, name, value);
    client.cancel_key = worker.random_u32();
    proto::write_backend_key_data(writer, cancel_pid(worker, worker.client_slot(client)),
                                  client.cancel_key);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    queue_writer(worker, client, bytes, writer.size());
    client.login.reset();
    set_state(worker, client, ClientState::Idle);
    log_info("%s: admin: on the management database", log_context(worker, client).c_str());
}

namespace {

// What every worker last published (worker.h WorkerStats), for SHOW WORKERS and SHOW MEM.
std::vector<admin::WorkerState> worker_states(const worker::Worker& worker) {
    std::vector<admin::WorkerState> out;
    constexpr auto relaxed = std::memory_order_relaxed;
    for (uint32_t i = 0; worker.shared.stats && i < worker.shared.ring_fds.size(); ++i) {
        const worker::WorkerStats& stats = worker.shared.stats[i];
        if (!stats.published.load(std::memory_order_acquire)) continue;
        admin::WorkerState state;
        state.worker = i;
        for (size_t s = 1; s < stats.clients_in.size(); ++s)  // 0 is Free
            state.clients.emplace_back(to_string(ClientState(s)),
                                       stats.clients_in[s].load(relaxed));
        for (size_t s = 1; s < stats.servers_in.size(); ++s)
            state.servers.emplace_back(server::to_string(server::ServerState(s)),
                                       stats.servers_in[s].load(relaxed));
        state.pinned = stats.pinned.load(relaxed);
        state.ring_in_use = stats.ring_in_use.load(relaxed);
        state.ring_count = stats.ring_count.load(relaxed);
        state.buffer_size = stats.buffer_size.load(relaxed);
        state.out_in_use = stats.out_in_use.load(relaxed);
        state.out_count = stats.out_count.load(relaxed);
        state.chunks_in_use = stats.chunks_in_use.load(relaxed);
        state.chunk_count = stats.chunk_count.load(relaxed);
        state.bytes_queued = stats.bytes_queued.load(relaxed);
        state.tls_failures = stats.tls_failures.load(relaxed);
        state.auth_failures = stats.auth_failures.load(relaxed);
        state.logins_refused = stats.logins_refused.load(relaxed);
        state.protocol_violations = stats.protocol_violations.load(relaxed);
        state.auth_queries = stats.auth_queries.load(relaxed);
        state.auth_query_failures = stats.auth_query_failures.load(relaxed);
        state.clients_stalled = stats.clients_stalled.load(relaxed);
        state.clients_kept = stats.clients_kept.load(relaxed);
        state.primary_waiting = stats.primary_waiting.load(relaxed);
        state.primary_wait_timeouts = stats.primary_wait_timeouts.load(relaxed);
        state.requests_rerun = stats.requests_rerun.load(relaxed);
        out.push_back(std::move(state));
    }
    return out;
}

// Every pool made so far, with what its atomics say now.
std::vector<admin::PoolRow> pool_rows(const worker::Worker& worker) {
    std::vector<admin::PoolRow> rows;
    const pool::PoolTable& table = worker.shared.pools;
    for (uint32_t id = 0; id < table.capacity(); ++id) {
        const pool::Pool* pool = table.by_id(id);
        if (pool == nullptr) continue;
        admin::PoolRow row;
        row.id = id;
        // A routed pool is "alias@node" (client_route.cc): PgBouncer's database is the alias.
        row.database = pool->target.alias.substr(0, pool->target.alias.rfind('@'));
        row.user = pool->target.user;
        row.servers = pool->servers();
        row.waiting = pool->waiting.load(std::memory_order_relaxed);
        row.totals = pool->read(pool->stats);
        row.older = pool->read(pool->stats_older);
        rows.push_back(std::move(row));
    }
    return rows;
}

// The answer to sql (every ';'-separated command of one Query) and its ReadyForQuery.
std::vector<uint8_t> answer_of(worker::Worker& worker, Client& client, std::string_view sql,
                               const std::vector<admin::ClientRow>* clients) {
    std::vector<admin::WorkerState> workers = worker_states(worker);
    std::vector<admin::PoolRow> pools = pool_rows(worker);
    worker.refresh_topology();
    admin::Context context{*worker.config,  worker.topology.get(),  worker.now, &workers, clients,
                           base::wall_ms(), &worker.shared.requests};
    // Checked at each command against the newest snapshot: a user taken out of admin_users
    // by a reload loses the control commands at once.
    context.may_control = listed(worker.config->admin_users, client.session->user);
    context.pools = &pools;
    context.stats_since_ms = worker.shared.pools.older_stamp_ms.load(std::memory_order_relaxed);
    context.console = &worker.shared.console;
    context.pool_table = &worker.shared.pools;
    std::vector<uint8_t> out;
    admin::answer(sql, context, out);
    size_t at = out.size();
    out.resize(at + 6);
    proto::Writer writer(out.data() + at, 6);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    return out;
}

void answer_query(worker::Worker& worker, Client& client, std::string_view sql,
                  const std::vector<admin::ClientRow>* clients) {
    std::vector<uint8_t> out = answer_of(worker, client, sql, clients);
    queue(worker, client, out.data(), uint32_t(out.size()));
}

// PAUSE, as PgBouncer's, answers once the transactions in flight are done: its answer waits
// (Asking) until no worker has published a lent server (admin_on_tick). A refused PAUSE
// answers at once.
// WAIT_CLOSE likewise, until no worker has published a server a RECONNECT marked; SUSPEND
// until every worker has stopped accepting and reading and has nothing left to send.
void answer_waiting(worker::Worker& worker, Client& client, std::string_view sql) {
    std::vector<uint8_t> out = answer_of(worker, client, sql, nullptr);
    if (out.empty() || out[0] != uint8_t(proto::BackendMessage::CommandComplete)) {
        queue(worker, client, out.data(), uint32_t(out.size()));
        return;
    }
    AdminWait& wait = admin_wait(client);
    wait.reply = std::move(out);
    wait.pausing = admin::is_pause(sql);
    wait.waiting_close = admin::is_wait_close(sql);
    wait.suspending = admin::is_suspend(sql);
    client.asking = 0;
    client.asking_left = 0;
    set_state(worker, client, ClientState::Asking);
}

// Workers not yet suspended, or with bytes still to send, as they last published.
uint32_t workers_unflushed(const worker::Worker& worker) {
    uint32_t left = 0;
    for (uint32_t i = 0; worker.shared.stats && i < worker.shared.ring_fds.size(); ++i) {
        const worker::WorkerStats& stats = worker.shared.stats[i];
        if (!stats.suspended.load(std::memory_order_acquire) ||
            stats.bytes_unsent.load(std::memory_order_relaxed) > 0)
            ++left;
    }
    return left;
}

// Servers a RECONNECT marked still open, over the workers, as they last published.
uint32_t servers_to_close(const worker::Worker& worker) {
    uint32_t open = 0;
    for (uint32_t i = 0; worker.shared.stats && i < worker.shared.ring_fds.size(); ++i)
        open += worker.shared.stats[i].close_needed.load(std::memory_order_relaxed);
    return open;
}

// Servers lent now, over the workers, as they last published (each tick).
uint32_t servers_lent(const worker::Worker& worker) {
    uint32_t lent = 0;
    for (uint32_t i = 0; worker.shared.stats && i < worker.shared.ring_fds.size(); ++i) {
        const worker::WorkerStats& stats = worker.shared.stats[i];
        for (server::ServerState state :
             {server::ServerState::Syncing, server::ServerState::Active})
            lent += stats.servers_in[size_t(state)].load(std::memory_order_relaxed);
    }
    return lent;
}

admin::ClientRow describe(const worker::Worker& worker, const Client& client) {
    admin::ClientRow row;
    row.worker = worker.index;
    row.id = cancel_pid(worker, worker.client_slot(client));
    row.state = to_string(client.state);
    row.wait_reason = wait_reason(worker, client, row.wait_since_ms);
    row.connected_ms = client.connected;
    row.request_ms = client.request;
    row.bytes_queued = client.conn.out.bytes + client.conn.sealed.bytes + client.conn.held_in.bytes;
    if (client.addresses_known) {
        address_of(client.peer.full(), row.addr, row.port);
        address_of(client.local.full(), row.local_addr, row.local_port);
    }
    if (client.conn.tls && client.conn.tls->established())
        row.tls = client.conn.tls->version() + "/" + client.conn.tls->cipher();
    if (client.server != io::nil) row.server_pid = worker.server(client.server).backend_pid;
    const pool::Pool* pool = client.pool;
    if (pool == nullptr && client.server != io::nil) pool = worker.server(client.server).pool;
    if (pool != nullptr) row.pool = pool->id;
    if (!client.session) return row;
    const Session& session = *client.session;
    row.user = session.user;
    row.database = session.database;
    const std::string* application =
        pool::value_of(pool::settings_of(session.settings), "application_name");
    if (application == nullptr)
        application = pool::value_of(pool::settings_of(session.startup), "application_name");
    if (application != nullptr) row.application_name = *application;
    row.pinned = session.pinned;
    row.prepared_statements = uint32_t(session.sql_prepared.size());
    if (session.statements) row.prepared_statements += uint32_t(session.statements->names.size());
    return row;
}

// A server's state as PgBouncer names it (SHOW SERVERS, and the sv_* columns of SHOW POOLS);
// null for a state it would not list (a slot free or closing, a cancel's connection).
const char* pgbouncer_server_state(server::ServerState state) {
    switch (state) {
        case server::ServerState::Connecting:
        case server::ServerState::Login:
        case server::ServerState::Adopting:
            return "login";
        case server::ServerState::Idle:
        case server::ServerState::Yielding:
            return "idle";
        case server::ServerState::Syncing:
        case server::ServerState::Active:
        case server::ServerState::Listening:
            return "active";
        case server::ServerState::Resetting:
            return "tested";
        case server::ServerState::Free:
        case server::ServerState::Cancelling:
        case server::ServerState::Closing:
            return nullptr;
    }
    return nullptr;
}

admin::ClientRow describe(const worker::Worker& worker, const server::Server& server,
                          const char* state) {
    admin::ClientRow row;
    row.type = 'S';
    row.worker = worker.index;
    row.id = worker.server_slot(server);
    row.pool = server.pool->id;
    const pool::Target& target = server.pool->target;
    row.user = target.user;
    row.database = target.alias.substr(0, target.alias.rfind('@'));
    row.pgbouncer_state = state;
    row.state = server::to_string(server.state);
    row.connected_ms = server.created;
    row.request_ms = server.since;
    row.server_pid = server.backend_pid;
    row.addr = target.endpoint.host;
    row.port = target.endpoint.port;
    row.bytes_queued = server.conn.out.bytes + server.conn.held_in.bytes;
    if (server.conn.tls && server.conn.tls->established())
        row.tls = server.conn.tls->version() + "/" + server.conn.tls->cipher();
    return row;
}

// Serials wrap: a is b or later when it is less than half the range ahead of b.
bool not_older(uint32_t a, uint32_t b) {
    return a - b < (1u << 31);
}

worker::ClientListSlot& list_slot(worker::Worker& worker, uint32_t asker, uint32_t lister) {
    return worker.shared.client_lists[asker * worker.shared.ring_fds.size() + lister];
}

// Every worker's list that answers request `asking` (or a later one), then the asking
// client's answer; its held input goes on.
void finish_asking(worker::Worker& worker, Client& client) {
    std::vector<admin::ClientRow> rows;
    for (uint32_t lister = 0; lister < worker.shared.ring_fds.size(); ++lister) {
        worker::ClientListSlot& slot = list_slot(worker, worker.index, lister);
        worker::ClientList* list = slot.list.exchange(nullptr, std::memory_order_acq_rel);
        if (list == nullptr) continue;
        if (!not_older(list->serial, client.asking)) {  // an answer nobody waits for now
            delete list;
            continue;
        }
        rows.insert(rows.end(), list->rows.begin(), list->rows.end());
        // Give it back for a later request of another client; keep the newer of two.
        while (list != nullptr) {
            worker::ClientList* other = slot.list.exchange(list, std::memory_order_acq_rel);
            if (other != nullptr && not_older(other->serial, list->serial)) {
                list = other;  // newer: it goes back in, ours comes out next turn
                continue;
            }
            delete other;
            list = nullptr;
        }
    }
    std::string sql = std::move(admin_wait(client).query);
    admin_wait(client).query.clear();
    set_state(worker, client, ClientState::Idle);
    answer_query(worker, client, sql, &rows);
    resume(worker, client);
}

// SHOW CLIENTS: this worker's list now, the others' asked for.
void begin_asking(worker::Worker& worker, Client& client, std::string_view sql) {
    uint32_t serial = worker.shared.client_list_serial.fetch_add(1) + 1;
    client.asking = serial;
    client.asking_left = uint32_t(worker.shared.ring_fds.size()) - 1;
    admin_wait(client).query = std::string(sql);
    set_state(worker, client, ClientState::Asking);
    uint32_t pid = cancel_pid(worker, worker.client_slot(client));
    for (uint32_t other = 0; other < worker.shared.ring_fds.size(); ++other)
        if (other != worker.index)
            worker.message(other, io::MessageKind::ClientsWanted, serial, pid);
    list_clients(worker, serial, pid);
}

}  // namespace

void list_clients(worker::Worker& worker, uint32_t serial, uint32_t asker_pid) {
    std::vector<admin::ClientRow> rows;
    for (uint32_t i = 0; i < worker.client_capacity; ++i) {
        const Client& client = worker.client(i);
        if (client.state != ClientState::Free) rows.push_back(describe(worker, client));
    }
    for (uint32_t i = 0; i < worker.server_capacity; ++i) {
        const server::Server& server = worker.server(i);
        const char* state = pgbouncer_server_state(server.state);
        if (state != nullptr && server.pool != nullptr)
            rows.push_back(describe(worker, server, state));
    }
    uint32_t asker = limits::pid_worker(asker_pid);
    uint32_t slot = limits::pid_slot(asker_pid);
    if (asker >= worker.shared.ring_fds.size()) return;
    auto* list = new worker::ClientList{serial, std::move(rows)};
    // What it replaces is an answer nobody took (its asker left or gave up).
    delete list_slot(worker, asker, worker.index).list.exchange(list, std::memory_order_acq_rel);
    if (asker == worker.index) {
        Client& client = worker.client(slot);
        if (client.asking_left == 0) finish_asking(worker, client);
        return;
    }
    worker.message(asker, io::MessageKind::ClientsListed, serial, slot);
}

void kill(worker::Worker& worker, uint32_t id) {
    uint32_t slot = limits::pid_slot(id);
    if (limits::pid_worker(id) != worker.index || slot >= worker.client_capacity) return;
    Client& client = worker.client(slot);
    if (client.state == ClientState::Free || client.state == ClientState::Closing) return;
    if (cancel_pid(worker, slot) != id) return;  // the slot holds another client now
    log_info("%s: admin: KILL_CLIENT %u", log_context(worker, client).c_str(), id);
    fail(worker, client, CloseReason::Killed, Severity::Fatal, sqlstate::protocol_violation,
         "admin forced disconnect");
}

void kill_database(worker::Worker& worker, const std::string& database, int64_t at_ms) {
    log_info("admin: KILL %s (worker %u)", database.empty() ? "(all)" : database.c_str(),
             worker.index);
    for (uint32_t i = 0; i < worker.client_capacity; ++i) {
        Client& client = worker.client(i);
        // A client accepted after the KILL waits for RESUME, as with PgBouncer's.
        if (client.state == ClientState::Free || client.state == ClientState::Closing ||
            !client.session || client.session->admin || client.connected > at_ms)
            continue;
        const std::string& name = client.session->database;
        if (!database.empty() && name.substr(0, name.rfind('@')) != database) continue;
        fail(worker, client, CloseReason::Killed, Severity::Fatal, sqlstate::protocol_violation,
             "database removed");
    }
    for (uint32_t i = 0; i < worker.server_capacity; ++i) {
        server::Server& server = worker.server(i);
        if (server.state == server::ServerState::Idle && server.pool != nullptr &&
            (database.empty() || admin::pool_of(*server.pool, database)))
            server::close(worker, server, server::CloseReason::Killed);
    }
}

void clients_listed(worker::Worker& worker, uint32_t serial, uint32_t slot) {
    if (slot >= worker.client_capacity) return;
    Client& client = worker.client(slot);
    // Not for it: the client left meanwhile, or gave up waiting (admin_on_tick).
    if (client.state != ClientState::Asking || client.asking != serial) return;
    if (--client.asking_left == 0) finish_asking(worker, client);
}

void admin_on_tick(worker::Worker& worker, Client& client) {
    AdminWait* waiting = client.session->admin_wait.get();
    if (waiting != nullptr && (waiting->pausing || waiting->waiting_close || waiting->suspending)) {
        AdminWait& wait = *waiting;
        // Two ticks: every worker has published since the command.
        uint32_t left = wait.pausing         ? servers_lent(worker)
                        : wait.waiting_close ? servers_to_close(worker)
                                             : workers_unflushed(worker);
        bool overdue = wait.suspending && worker.now - client.since > limits::suspend_flush_ms;
        if (worker.now - client.since < 2 * limits::tick_ms || (left > 0 && !overdue)) return;
        if (left > 0)
            log_warning("admin: SUSPEND: %u worker(s) still had bytes to send after %lld ms", left,
                        (long long)limits::suspend_flush_ms);
        wait.pausing = false;
        wait.waiting_close = false;
        wait.suspending = false;
        std::vector<uint8_t> reply = std::move(wait.reply);
        wait.reply.clear();
        set_state(worker, client, ClientState::Idle);
        queue(worker, client, reply.data(), uint32_t(reply.size()));
        resume(worker, client);
        return;
    }
    if (worker.now - client.since <= limits::admin_gather_ms) return;
    log_warning(
        "admin: %u worker(s) did not list their clients within %lld ms; SHOW CLIENTS "
        "leaves them out",
        client.asking_left, (long long)limits::admin_gather_ms);
    finish_asking(worker, client);
}

const char* wait_reason(const worker::Worker& worker, const Client& client,
                        base::Milliseconds& since) {
    since = client.since;
    switch (client.state) {
        case ClientState::Startup:
        case ClientState::Auth:
            return "login";
        case ClientState::Waiting:
            return client.pool != nullptr ? "pool" : "node";
        case ClientState::Syncing:
            return "replay";
        case ClientState::Asking:
            return "workers";
        case ClientState::Active:
            break;
        case ClientState::Free:
        case ClientState::Idle:
        case ClientState::Closing:
            return "";
    }
    // Active: whatever holds up the statement it sent last.
    since = client.request;
    const server::Server& server = worker.server(client.server);
    if (client.conn.recv_starved || server.conn.recv_starved) return "buffers";
    if (server.conn.recv_paused) return "client_read";
    if (client.conn.recv_paused) return "server_read";
    bool running = !server.expected.empty() || server.pending_syncs > 0;
    if (server.cancels_in_flight > 0 || (running && client.cancelled >= client.request)) {
        since = client.cancelled;
        return "cancel";
    }
    return running ? "query" : "";
}

namespace {

// One Query of console commands: SHOW CLIENTS and the like gather every worker's first,
// PAUSE, WAIT_CLOSE and SUSPEND answer once done, the rest at once.
void answer_console_query(worker::Worker& worker, Client& client, std::string_view sql) {
    bool may_control = listed(worker.config->admin_users, client.session->user);
    if (admin::needs_clients(sql))
        begin_asking(worker, client, sql);
    else if (may_control &&
             (admin::is_pause(sql) || admin::is_wait_close(sql) || admin::is_suspend(sql)))
        answer_waiting(worker, client, sql);
    else
        answer_query(worker, client, sql, nullptr);
}

void queue_error(worker::Worker& worker, Client& client, const char* sqlstate,
                 const std::string& message, const std::string& hint) {
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, Severity::Error, sqlstate, message, "", hint);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    PGPLEX_ASSERT(writer.ok());
    queue(worker, client, writer.data(), writer.size());
}

}  // namespace

uint32_t answer_comment_command(worker::Worker& worker, Client& client, const uint8_t* data,
                                uint32_t size) {
    PGPLEX_ASSERT(client.state == ClientState::Idle && client.session && !client.session->admin);
    if (size < 5 || data[0] != uint8_t(FrontendMessage::Query)) return 0;
    uint32_t length = proto::read_be32(data + 1);
    if (length < 4 || size < 1 + uint64_t(length)) return 0;  // not whole: the server's
    std::string_view sql(reinterpret_cast<const char*>(data + 5), length - 4);
    std::string_view command;
    bool alone = false;
    if (!admin::comment_command(sql.substr(0, sql.find('\0')), command, alone)) return 0;
    const config::Config& config = *worker.config;
    const std::string& user = client.session->user;
    log_info("%s: console command in a comment: %.*s", log_context(worker, client).c_str(),
             int(std::min<size_t>(command.size(), 200)), command.data());
    if (!listed(config.admin_users, user) && !listed(config.stats_users, user))
        queue_error(worker, client, sqlstate::insufficient_privilege,
                    "user \"" + user + "\" may not run pgplex console commands",
                    "List the user in admin_users (or stats_users, for SHOW only) in [pgplex].");
    else if (!alone)
        queue_error(worker, client, sqlstate::syntax_error,
                    "a --!pgplex console command stands alone in its query",
                    "Send the SQL in a query of its own.");
    else if (admin::is_suspend(command))
        queue_error(worker, client, sqlstate::feature_not_supported,
                    "SUSPEND would stop reading this very connection",
                    "Send SUSPEND from the management database (psql pgplex), so RESUME can "
                    "follow.");
    else
        answer_console_query(worker, client, command);
    return 1 + length;
}

uint32_t admin_consume(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (size < 5) return 0;
    uint32_t length = proto::read_be32(data + 1);
    if (length < 4 || length > (1u << 20)) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation, "invalid message length");
        return size;
    }
    if (size < 1 + length) return 0;
    std::vector<uint8_t> out;
    switch (data[0]) {
        case uint8_t(FrontendMessage::Terminate):
            close(worker, client, CloseReason::ClientTerminated);
            return size;
        case uint8_t(FrontendMessage::Query): {
            std::string_view sql(reinterpret_cast<const char*>(data + 5), length - 4);
            answer_console_query(worker, client, sql.substr(0, sql.find('\0')));
            return 1 + length;
        }
        case uint8_t(FrontendMessage::Sync): {
            out.resize(512);
            proto::Writer writer(out.data(), uint32_t(out.size()));
            proto::write_error(writer, Severity::Error, sqlstate::feature_not_supported,
                               "the pgplex database takes simple queries only");
            out.resize(writer.size());
            break;
        }
        default:
            return 1 + length;  // the extended protocol's other messages: answered at Sync
    }
    size_t at = out.size();
    out.resize(at + 6);
    proto::Writer writer(out.data() + at, 6);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    queue(worker, client, out.data(), uint32_t(out.size()));
    return 1 + length;
}

}  // namespace pgplex::client
