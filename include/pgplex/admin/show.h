// The management database "pgplex": what an admin user's simple-protocol Query is answered
// with. Pure: the caller hands in the config and topology snapshots it holds and a clock
// reading, and sends the bytes; nothing here does I/O, locks or reads a clock, so every
// answer is a function of its inputs and is tested as one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgplex/cluster/requests.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"
#include "pgplex/pool/pool_table.h"

namespace pgplex::admin {

// pgplex's own leases per node (reserved for a later "in_flight" column; optional).
struct NodeLoad {
    std::string cluster, node;
    int in_flight = 0;
};

// What one worker last published of its resources (each tick).
struct WorkerState {
    uint32_t worker = 0;
    // Clients and servers per state (the state's name, its count), Free left out.
    std::vector<std::pair<std::string, uint32_t>> clients, servers;
    uint32_t pinned = 0;  // transaction-pooled clients pinned to their server now
    uint32_t ring_in_use = 0, ring_count = 0, buffer_size = 0;
    uint32_t out_in_use = 0, out_count = 0, chunks_in_use = 0, chunk_count = 0;
    uint64_t bytes_queued = 0;  // send queues and held input of every connection
    // Since start: TLS failures, failed and refused logins, protocol violations.
    uint64_t tls_failures = 0, auth_failures = 0, logins_refused = 0, protocol_violations = 0;
    uint64_t auth_queries = 0, auth_query_failures = 0;  // auth_query lookups, and failed ones
    uint64_t clients_stalled = 0;                        // closed by client_stall_timeout
    uint64_t clients_kept = 0;           // answered in place of a server that failed, not closed
    uint32_t primary_waiting = 0;        // routed clients waiting for a primary now
    uint64_t primary_wait_timeouts = 0;  // requests answered 57P03 after failover_wait_timeout
    uint64_t requests_rerun = 0;         // re-sent to another replica after one died
};

// One client connection as SHOW CLIENTS lists it, taken by its own worker (client_admin.cc).
// Times are monotonic milliseconds, as Context::now_ms.
struct ClientRow {
    char type = 'C';    // 'C' a client, 'S' a server (SHOW SERVERS and SOCKETS list both kinds)
    int64_t pool = -1;  // PoolRow::id of the pool it uses now; -1: none
    // A server's state in PgBouncer's words (active, idle, tested, login); for a client it
    // is derived from state.
    std::string pgbouncer_state;
    uint32_t worker = 0;
    uint32_t id = 0;  // the process id pgplex gave it in BackendKeyData
    std::string user, database, application_name;
    std::string state;        // pgplex's own client state (client.h)
    std::string wait_reason;  // what it waits for now, "" when nothing (pgplex.8)
    int64_t connected_ms = 0, request_ms = 0, wait_since_ms = 0;
    bool pinned = false;
    uint32_t server_pid = 0;  // backend pid of the server it holds, 0 when none
    uint32_t prepared_statements = 0;
    uint64_t bytes_queued = 0;     // its send queue and held input
    std::string tls;               // "TLSv1.3/TLS_AES_256_GCM_SHA384", "" in clear
    std::string addr, local_addr;  // "" when not known
    int port = -1, local_port = -1;
};

// SHOW VERSION's one row. PgBouncer's exporters and monitoring agents read a version from it
// (Datadog's check takes the first "N.N.N", pgwatch the first "N.N") to decide which columns
// to expect; pgplex answers the columns of PgBouncer 1.25, so it says so first, then its own.
inline constexpr const char* version_text = "PgBouncer 1.25.0 (pgplex " PGPLEX_VERSION ")";

// PgBouncer's stats_period: the avg_* columns of SHOW STATS are over the last whole period.
inline constexpr int stats_period_seconds = 60;

// One pool of the pool table (pool/pool_table.h), as SHOW POOLS, DATABASES and LISTS count it.
struct PoolRow {
    uint32_t id = 0;
    std::string database;                // the alias the pool serves
    std::string user;                    // the user its servers log in as
    int servers = 0;                     // server connections of any state, all workers
    int waiting = 0;                     // clients waiting for one of them
    pool::StatValues totals{}, older{};  // pool_table.h: now, and at the older boundary
};

struct Console;

struct Context {
    const config::Config& config;
    const cluster::Topology* topology;  // may be null before the first round of checks
    int64_t now_ms;                     // monotonic, as NodeStatus::checked_ms, for "ms ago"
    const std::vector<WorkerState>* workers = nullptr;  // null: none published yet
    const std::vector<ClientRow>* clients = nullptr;    // SHOW CLIENTS; null: not gathered
    int64_t wall_ms = 0;  // the same instant as now_ms on the wall clock, for timestamps
    // Where UNFENCE and SWITCHOVER go (failover_commands.h); null: they are refused as busy.
    cluster::Requests* requests = nullptr;
    // An admin_users user; a stats_users user may only SHOW (control commands: 42501).
    bool may_control = true;
    const std::vector<PoolRow>* pools = nullptr;  // null: not gathered (SHOW POOLS shows none)
    // Where PAUSE, DISABLE, KILL_CLIENT, RELOAD and SHUTDOWN go (console.h); null: refused.
    Console* console = nullptr;
    pool::PoolTable* pool_table = nullptr;
    int64_t stats_since_ms = 0;  // monotonic: the older stats_period boundary (PoolRow::older)
};

// Whether answering sql needs every worker's clients (Context::clients): the caller gathers
// them first, as they live on other threads.
bool needs_clients(std::string_view sql);

// Answers one simple-protocol Query text sent to the "pgplex" database: appends the reply
// messages (RowDescription, DataRow..., CommandComplete; or one ErrorResponse) to out, but
// not ReadyForQuery. Several ';'-separated commands are answered in order; an error ends
// the answer there, as PostgreSQL abandons the rest of a failed query string. A text with
// no command is answered with EmptyQueryResponse.
//
// Commands (case-insensitive, any whitespace, optional trailing ';'): SHOW CLUSTERS,
// SHOW NODES, SHOW SERVICES, SHOW STATE (PgBouncer's active/paused/suspended), SHOW WORKERS
// (per worker: clients and servers by state, pins, buffers, bytes queued), SHOW CLIENTS
// (PgBouncer's columns, then pgplex's: worker, pgplex_state, wait_reason, pinned, bytes_queued),
// SHOW MEM (PgBouncer's columns: name, size, used, free, memtotal, over all workers), SHOW VERSION,
// SHOW HELP; UNFENCE cluster node and SWITCHOVER cluster [TO node] (failover_commands.h), which
// post a request to the monitor and are the only answers with a side effect. Anything else is
// syntax_error.
void answer(std::string_view sql, const Context& context, std::vector<uint8_t>& out);

}  // namespace pgplex::admin
