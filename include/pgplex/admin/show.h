// The management database "pgplex": what an admin user's simple-protocol Query is answered
// with. Pure: the caller hands in the config and topology snapshots it holds and a clock
// reading, and sends the bytes; nothing here does I/O, locks or reads a clock, so every
// answer is a function of its inputs and is tested as one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"

namespace pgplex::admin {

// pgplex's own leases per node (reserved for a later "in_flight" column; optional).
struct NodeLoad {
    std::string cluster, node;
    int in_flight = 0;
};

struct Context {
    const config::Config& config;
    const cluster::Topology* topology;  // may be null before the first round of checks
    int64_t now_ms;                     // monotonic, as NodeStatus::checked_ms, for "ms ago"
};

// Answers one simple-protocol Query text sent to the "pgplex" database: appends the reply
// messages (RowDescription, DataRow..., CommandComplete; or one ErrorResponse) to out, but
// not ReadyForQuery. Several ';'-separated commands are answered in order; an error ends
// the answer there, as PostgreSQL abandons the rest of a failed query string. A text with
// no command is answered with EmptyQueryResponse.
//
// Commands (case-insensitive, any whitespace, optional trailing ';'): SHOW CLUSTERS,
// SHOW NODES, SHOW SERVICES, SHOW VERSION, SHOW HELP. Anything else is syntax_error.
void answer(std::string_view sql, const Context& context, std::vector<uint8_t>& out);

}  // namespace pgplex::admin
