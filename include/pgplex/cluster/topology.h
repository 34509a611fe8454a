// What the monitors see of every cluster, as one immutable snapshot. The monitor thread
// (cluster/monitor.h) builds a new Topology after every round of checks that changed
// something and publishes it; workers only read the snapshot they hold, and pick up the
// next one on their loop turn. Nothing here is trusted from the config except which nodes
// exist and their flags: roles, health, LSNs and lag are always read from the nodes.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/config/config.h"
#include "pgplex/config/selector.h"

namespace pgplex::cluster {

// What a node says it is (pg_is_in_recovery()). Unknown until its first good check.
enum class Role : uint8_t { Unknown, Primary, Replica };

const char* to_string(Role role);

struct NodeStatus {
    std::string name;  // "host:port" as written in the cluster's nodes
    config::Endpoint endpoint;
    config::NodeOptions options;  // offline / offline_query / weight, from the config
    bool healthy = false;         // after rise/fall hysteresis
    Role role = Role::Unknown;    // from the last good check
    bool sync = false;            // the primary's pg_stat_replication calls it sync or quorum
    int64_t apply_delay_ms = 0;   // recovery_min_apply_delay: > 0 makes it a delayed replica
    bool replay_paused = false;   // pg_is_wal_replay_paused()
    uint64_t current_lsn = 0;     // primary: pg_current_wal_lsn()
    uint64_t receive_lsn = 0;     // replica: pg_last_wal_receive_lsn()
    uint64_t replay_lsn = 0;      // replica: pg_last_wal_replay_lsn(); primary: current_lsn
    int64_t lag_bytes = -1;  // primary's current_lsn - replay_lsn; 0 on the primary; -1 unknown
    int64_t lag_ms = -1;     // replay lag in time; 0 on the primary; -1 unknown
    int max_connections = 0;
    int free_slots = -1;           // connections it would still accept; -1 unknown
    std::string application_name;  // the name its WAL receiver gives the primary
    // The host's 1-minute load average and CPUs, from the pgplex schema's node_metrics()
    // when installed (balance = "load"); -1 and 0 when unknown.
    double load1 = -1;
    int cpus = 0;
    int64_t up_since_ms = 0;         // monotonic ms when it last became healthy (slowstart)
    int64_t checked_ms = 0;          // monotonic ms of the last check, good or bad
    int64_t check_us = -1;           // how long the last good check took
    std::string last_error;          // why the last check failed; empty after a good one
    std::string source = "monitor";  // "monitor" or "patroni"
    // Patroni runs it as a replica but answers 503 on /replica (its noloadbalance tag): it
    // carries no service, as HAProxy with Patroni's checks (/replica, /read-only, /sync)
    // gives it none, yet it is healthy and may still become primary.
    bool noloadbalance = false;
    // Another node was promoted in its place (by pgplex, or seen: the epoch moved) while it
    // was primary: it may have diverged, so it carries no service, is never chosen primary,
    // and (with the pgplex schema) is made read-only, until an operator runs UNFENCE.
    bool fenced = false;

    bool delayed() const { return role == Role::Replica && apply_delay_ms > 0; }
};

struct ClusterStatus {
    std::string name;
    std::vector<NodeStatus> nodes;  // in the config's order
    int primary = -1;               // index into nodes of the healthy primary; -1 none
    uint64_t epoch = 0;             // grows every time the primary changes
    // A switchover is moving the primary: transactions that need the primary wait at their
    // boundary (as while primary < 0), up to the cluster's failover_wait_timeout.
    bool hold_writes = false;
    // What a promotion or switchover under way is doing ("" when none), for SHOW CLUSTERS.
    std::string failover_state;
    // With [gossip]: whether this appliance holds a majority's lease on the epoch (primary is
    // -1 while it does not: writes wait, reads go on). Always true without [gossip].
    bool writable = true;
    // With [gossip]: the monotonic ms (base::monotonic_ms) at which the lease ends unless a
    // later snapshot renews it; the router sends nothing to the primary from then on, so a
    // worker reading a stale snapshot cannot outlive the lease. INT64_MAX without [gossip].
    int64_t writable_until_ms = INT64_MAX;
    // With [dcs]: writes are not routed because this appliance cannot confirm the epoch with
    // etcd (unreachable, or its lease lapsed); the client's error says so.
    bool store_unconfirmed = false;
    // With [gossip] and minority_reads = false: false while this appliance cannot reach a
    // majority; the router then sends nothing to any node of the cluster.
    bool readable = true;
};

// What the gossip between appliances says (gossip/engine.h), for SHOW MEMBERS. Not enabled
// without [gossip]: the appliance then decides alone.
struct MemberStatus {
    std::string address;  // "ip:port"
    bool self = false;
    std::string state;  // alive | suspect | dead
    uint64_t incarnation = 0;
    int64_t heard_ms = -1;  // monotonic ms of the last message accepted from it; -1 never
};

struct Membership {
    bool enabled = false;
    bool quorum = true;  // this appliance reaches a majority of the configured appliances
    std::vector<MemberStatus> members;
    uint64_t received = 0;
    uint64_t sent = 0;
    uint64_t forged = 0;
    uint64_t replayed = 0;
    uint64_t malformed = 0;
};

struct Topology {
    uint64_t generation = 0;  // grows with every publication
    std::vector<ClusterStatus> clusters;
    Membership membership;

    const ClusterStatus* find(std::string_view name) const;
};

// --- services --------------------------------------------------------------------------------

// Services select their nodes with a compiled selector (config/selector.h).
using Selector = config::Selector;
bool matches(const Selector& selector, const NodeStatus& node);

// Which nodes carry a service now: members, or the backups when no member qualifies.
struct Carriers {
    std::vector<int> nodes;  // indexes into ClusterStatus::nodes
    bool backup = false;     // true when these are the backups
};

struct ServiceRule {
    Selector selector;
    Selector backup;
    int64_t max_lag_ms = -1;     // -1: no limit
    int64_t max_lag_bytes = -1;  // -1: no limit
};

// The rule a service routes by: its selectors compiled, its lag limits or else its
// cluster's. The loader checked the selectors; one that does not compile selects nothing.
ServiceRule service_rule(const config::Cluster& cluster, const config::Service& service);

// What a node must meet, besides the selector, to carry a request.
struct Limits {
    int64_t max_lag_ms = -1;      // -1: no limit
    int64_t max_lag_bytes = -1;   // -1: no limit
    uint64_t min_replay_lsn = 0;  // read your writes: a replica must have replayed this
};

// Healthy nodes matching the selector within the limits; else healthy backups within them;
// else nothing. A replica whose lag is unknown counts as over any limit. The primary is
// never over a limit.
Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster, const Limits& limits);
// With the rule's own lag limits.
Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster);

}  // namespace pgplex::cluster
