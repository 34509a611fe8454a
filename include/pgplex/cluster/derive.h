// The pure half of the monitors: what checks make of a node (rise/fall health, role, LSNs,
// lag) and what a cluster's nodes make of the cluster (primary, epoch, sync). No I/O and no
// clock: the monitor thread (monitor.h) feeds it readings and times, and so do the unit tests
// and the deterministic simulation (tests/sim).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"

namespace pgplex::cluster {

// HAProxy's rise/fall. A node with no history goes up on its first good check and down on
// its first failed one; after that it takes `rise` good checks in a row to go up and `fall`
// failed ones to go down.
struct Health {
    bool known = false;
    bool up = false;
    int good = 0;  // good checks in a row
    int bad = 0;   // failed checks in a row

    // Returns true when `up` changed.
    bool observe(bool ok, int rise, int fall);
    // inter while up and steady, fastinter while counting towards a change, downinter while
    // down.
    int64_t next_interval_ms(const config::Cluster& cluster) const;
};

// "16/B374D848" → 0x16B374D848. False on anything else.
bool parse_lsn(std::string_view text, uint64_t& out);
std::string format_lsn(uint64_t lsn);

// What one good check query read.
struct Reading {
    bool recovery = false;
    uint64_t current_lsn = 0;
    uint64_t receive_lsn = 0;
    uint64_t replay_lsn = 0;
    int64_t lag_ms = -1;
    int64_t apply_delay_ms = 0;
    bool replay_paused = false;
    int64_t max_connections = 0;
    int64_t free_slots = -1;
    std::string application_name;
    std::vector<std::string> sync_standbys;
    bool has_metrics = false;   // pgplex.node_metrics() may be asked for
    bool has_failover = false;  // pgplex.promote() and pgplex.fence() may be called
    double load1 = -1;          // its readings, when asked: -1 and 0 when unknown
    int64_t cpus = 0;
};

// What the derivation keeps of a node between checks.
struct NodeState {
    config::Node config;
    NodeStatus status;
    Health health;
    bool patroni_sync = false;        // Patroni's /sync answered 200 on the last check
    bool metrics = false;             // the last check found pgplex.node_metrics() executable
    bool failover_functions = false;  // ... and pgplex.promote() / fence() / unfence()
    bool fence_applied = false;       // fenced, and made read-only on the node itself
    std::vector<std::string> sync_standbys;  // as primary: its sync/quorum standbys
    int64_t became_primary_us = 0;           // when it was last seen to turn primary
    int64_t caught_up_us = 0;  // as replica: the last check that found it had replayed all
};

// A good check's reading, applied to the node's status (role, LSNs, lag in time, metrics).
void apply_reading(NodeState& node, const Reading& reading, int64_t now_us);

// What a node was before a check, to tell what the check changed.
struct Before {
    Health health;
    Role role = Role::Unknown;
};

// The end of a check whose reading (and Patroni's word) is already applied: `ok` feeds the
// rise/fall health. Logs what changed. Returns true when something the routing reads
// (health, role) changed.
bool record_check(const config::Cluster& cluster, NodeState& node, Before before, bool ok,
                  std::string error, int64_t started_us, int64_t now_us);

// What the derivation keeps of a cluster between rounds.
struct Derivation {
    int primary = -1;  // index into the nodes of the healthy primary; -1 none
    uint64_t epoch = 0;
    std::string last_primary;   // name of the last node that was primary: epoch grows on another
    bool split_warned = false;  // two healthy primaries were reported, once
    uint64_t primary_lsn = 0;   // the primary's current LSN at its last good check
};

// The primary (the healthy node that says it is one: with two, the current one while it
// stays so, else the one that turned primary last), the epoch (grows whenever the primary is
// another node), and each replica's lag in bytes and sync flag. Returns true when the
// primary changed.
bool derive(const config::Cluster& cluster, Derivation& derived,
            const std::vector<NodeState*>& nodes);

// --- failover = "promote" --------------------------------------------------------------------

// Whether pgplex must promote a replica now: the cluster fails over by "promote", it had a
// primary (so its last LSN is known), that node is down by rise/fall, and no healthy node that
// is not fenced says it is primary. Call after derive().
bool promotion_due(const config::Cluster& cluster, const Derivation& derived,
                   const std::vector<NodeState*>& nodes);

// The replica to promote, or -1 with the reason in `why_not`. Only a node that is healthy by
// rise/fall, a replica, not fenced, not flagged offline (an analytics node is not sized for
// the primary's load), with no apply delay (it is behind on purpose) and replay not paused
// (an operator stopped it, maybe to inspect a bad transaction) qualifies; of those, the one
// whose replay LSN is furthest ahead wins (the config's order breaks ties), if it is within
// max_failover_lag of the old primary's last known LSN.
// A planned switchover passes lag_limit = false: it waits for the target to catch up anyway.
int choose_candidate(const config::Cluster& cluster, const Derivation& derived,
                     const std::vector<NodeState*>& nodes, std::string& why_not,
                     bool lag_limit = true);
// Why this node may not be promoted ("down", "delayed", ...), or nullptr when it may.
const char* promotion_unfit(const NodeState& node);

// Fences the node named `name` (another was promoted in its place). Returns true when it was
// not fenced yet.
bool fence(const config::Cluster& cluster, const std::vector<NodeState*>& nodes,
           std::string_view name, std::string_view why);

}  // namespace pgplex::cluster
