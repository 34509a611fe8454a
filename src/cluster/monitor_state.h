// What the monitor thread keeps per node and per cluster, shared by the two files that run
// it: monitor.cc (the check connection, the poll loop, publication) and failover.cc (the
// action connection, promotions, fences, switchovers). Internal to src/cluster: nothing
// outside the monitor thread sees these types.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pg_conn.h"
#include "pgplex/cluster/derive.h"
#include "pgplex/cluster/patroni.h"
#include "pgplex/config/config.h"

namespace pgplex::cluster::monitor_detail {

// --- per node state ---------------------------------------------------------------------------

// Patroni's endpoints, in the order of Node::probes.
enum Probe : int { ProbePrimary, ProbeReplica, ProbeSync, ProbeCount };
inline constexpr const char* probe_paths[ProbeCount] = {"/primary", "/replica", "/sync"};

// A node's second connection, for what the monitor does to it rather than reads from it:
// promote, fence, unfence, count open transactions. Apart from the check connection so a
// check never waits behind pg_promote() (which may wait up to 10 s) and an action never waits
// behind a check. It stays open between steps of a failover and closes on any error.
struct Action {
    PgConn conn;       // Ready between actions; `done` says whether an outcome waits to be read
    std::string what;  // "promote", "fence", ... for the log
    std::vector<std::string> statements;
    size_t step = 0;
    int64_t deadline_us = 0;
    bool done = false;  // the action ended: ok, else error says why
    bool ok = false;
    std::string error;
    std::string value;  // the first column of the last statement's first row, "" if none

    bool busy() const { return conn.busy(); }
};

struct Node : NodeState {
    int64_t next_check_us = 0;  // when the next check starts, while !checking

    bool checking = false;  // a check is in flight: its SQL part and (with Patroni) probes
    int64_t check_started_us = 0;
    int64_t check_deadline_us = 0;

    PgConn sql;             // the check connection, kept between checks
    bool sql_done = false;  // this check's SQL part is over: sql_ok, or sql_error says why not
    bool sql_ok = false;
    std::string sql_error;
    Reading reading;  // valid when sql_ok

    PatroniProbe probes[ProbeCount];
    Action action;
    int64_t fence_retry_us = 0;  // a fence that failed on the node is tried again from then
};

// A promotion (failover = "promote", or the gossip engine's) or a planned switchover of one
// cluster, carried out by the monitor thread one step per loop turn.
enum class FailoverState : uint8_t {
    Idle,           // nothing under way: target and old are empty, no hold
    Draining,       // switchover: writes held (published); counting the old primary's open
                    // transactions until there are none or switchover_timeout passes
    Fencing,        // switchover: old fenced in routing; its fence action runs (read-only, then
                    // its last flushed LSN)
    CatchingUp,     // switchover: old read-only at final_lsn; waiting for target to replay it
    Promoting,      // target's promote action was sent; waiting for it to report primary
    PatroniMoving,  // patroni_port: the primary's Patroni answers, but not 200 on /primary (it
                    // is giving up the leader lock): writes held until another node is primary,
                    // it is leader again, or switchover_timeout passes
};

inline const char* to_string(FailoverState state) {
    switch (state) {
        case FailoverState::Idle:
            return "";
        case FailoverState::Draining:
            return "draining";
        case FailoverState::Fencing:
            return "fencing";
        case FailoverState::CatchingUp:
            return "catching up";
        case FailoverState::Promoting:
            return "promoting";
        case FailoverState::PatroniMoving:
            return "patroni moves the leader";
    }
    return "";
}

struct Failover {
    FailoverState state = FailoverState::Idle;
    bool switchover = false;  // planned: writes are held until it ends
    std::string target;       // the node being promoted
    std::string old;          // the primary it replaces
    uint64_t final_lsn = 0;   // switchover: the old primary's last flushed LSN once read-only
    int64_t started_us = 0;
    int64_t deadline_us = 0;     // of the current state
    int64_t next_count_us = 0;   // draining: when to count open transactions again
    int64_t open = -1;           // draining: the last count, -1 before the first
    int64_t retry_after_us = 0;  // deciding alone: no new promotion before this
    std::string refused;         // why no replica could be promoted, logged once
};

struct ClusterState : Derivation {
    const config::Cluster* config = nullptr;
    std::vector<std::unique_ptr<Node>> nodes;
    Failover failover;

    std::vector<NodeState*> states() const {
        std::vector<NodeState*> out;
        for (const std::unique_ptr<Node>& node : nodes) out.push_back(node.get());
        return out;
    }
};

// --- monitor.cc -------------------------------------------------------------------------------

ConnectParameters connect_parameters(const config::Config& config, const config::Cluster& cluster,
                                     const Node& node);

// --- failover.cc: the action connection -------------------------------------------------------

// A fence or unfence is a few quick statements, but the node may be slow to answer.
inline constexpr int64_t fence_action_ms = 10'000;

// Runs `statements` on the node one after another (each its own Query, so ALTER SYSTEM runs
// outside a transaction block), within `timeout_ms`. The caller reads node.action.done.
void action_start(const config::Config& config, const config::Cluster& cluster, Node& node,
                  std::string what, std::vector<std::string> statements, int64_t timeout_ms,
                  int64_t now);
void advance_action(Node& node, short revents);
void time_out_action(Node& node, int64_t now);

// --- failover.cc: promotions, fences, switchovers ---------------------------------------------

std::vector<std::string> unfence_statements();
Node* node_named(ClusterState& cluster, std::string_view name);
bool is_primary(const ClusterState& cluster, std::string_view name);
// The one place a failover changes state: checks the edge.
void set_failover_state(ClusterState& cluster, FailoverState next, int64_t now);
// An unplanned promotion of target: the old primary is fenced first, since it may come back.
void begin_promotion(const config::Config& config, ClusterState& cluster, Node& target,
                     int64_t now);
// One step of the cluster's failover state machine; `alone`: decide promotions without gossip.
void step_failover(const config::Config& config, ClusterState& cluster, bool alone, int64_t now);
// Fenced nodes back as primary are made read-only (with the schema).
void apply_fences(const config::Config& config, ClusterState& cluster, int64_t now);
// While a failover is under way its target is checked at fastinter.
void hurry_checks(ClusterState& cluster, int64_t now);

}  // namespace pgplex::cluster::monitor_detail
