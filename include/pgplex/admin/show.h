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

#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"

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
    uint64_t clients_kept = 0;  // answered in place of a server that failed, not closed
};

// One client connection as SHOW CLIENTS lists it, taken by its own worker (client_admin.cc).
// Times are monotonic milliseconds, as Context::now_ms.
struct ClientRow {
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

struct Context {
    const config::Config& config;
    const cluster::Topology* topology;  // may be null before the first round of checks
    int64_t now_ms;                     // monotonic, as NodeStatus::checked_ms, for "ms ago"
    const std::vector<WorkerState>* workers = nullptr;  // null: none published yet
    const std::vector<ClientRow>* clients = nullptr;    // SHOW CLIENTS; null: not gathered
    int64_t wall_ms = 0;  // the same instant as now_ms on the wall clock, for timestamps
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
// SHOW NODES, SHOW SERVICES, SHOW STATE (per worker: clients and servers by state, pins,
// buffers, bytes queued), SHOW CLIENTS (PgBouncer's columns, then pgplex's: worker,
// pgplex_state, wait_reason, pinned, bytes_queued), SHOW MEM (PgBouncer's columns: name, size,
// used, free, memtotal, over all workers), SHOW VERSION, SHOW HELP. Anything else is syntax_error.
void answer(std::string_view sql, const Context& context, std::vector<uint8_t>& out);

}  // namespace pgplex::admin
