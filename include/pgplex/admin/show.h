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
};

struct Context {
    const config::Config& config;
    const cluster::Topology* topology;  // may be null before the first round of checks
    int64_t now_ms;                     // monotonic, as NodeStatus::checked_ms, for "ms ago"
    const std::vector<WorkerState>* workers = nullptr;  // null: none published yet
};

// Answers one simple-protocol Query text sent to the "pgplex" database: appends the reply
// messages (RowDescription, DataRow..., CommandComplete; or one ErrorResponse) to out, but
// not ReadyForQuery. Several ';'-separated commands are answered in order; an error ends
// the answer there, as PostgreSQL abandons the rest of a failed query string. A text with
// no command is answered with EmptyQueryResponse.
//
// Commands (case-insensitive, any whitespace, optional trailing ';'): SHOW CLUSTERS,
// SHOW NODES, SHOW SERVICES, SHOW STATE (per worker: clients and servers by state, pins,
// buffers, bytes queued), SHOW MEM (PgBouncer's columns: name, size, used, free, memtotal,
// over all workers), SHOW VERSION, SHOW HELP. Anything else is syntax_error.
void answer(std::string_view sql, const Context& context, std::vector<uint8_t>& out);

}  // namespace pgplex::admin
