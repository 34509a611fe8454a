// See monitor_state.h. The monitor's actions on nodes and the failover state machine that
// drives them, one step per loop turn of the monitor thread (monitor.cc): promotions (failover
// = "promote", or the gossip engine's), fences, planned switchovers, and holding writes while
// Patroni moves its leader. Nothing here blocks: every statement goes out on the node's action
// connection through libpq's non-blocking calls and is read back when poll(2) says so.
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <string>
#include <system_error>
#include <vector>

#include "monitor_state.h"
#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"

namespace pgplex::cluster::monitor_detail {

// --- actions: what the monitor does to a node -------------------------------------------

void action_end(Action& action, bool ok, std::string error) {
    action.done = true;
    action.ok = ok;
    action.error = std::move(error);
    if (!ok) action.conn.close();
}

// Sends the statement at `step`, or ends the action when none is left.
void action_send(Action& action) {
    if (action.step >= action.statements.size()) return action_end(action, true, {});
    if (!action.conn.send(action.statements[action.step]))
        action_end(action, false, action.conn.error());
}

// Runs `statements` on the node one after another (each its own Query, so ALTER SYSTEM runs
// outside a transaction block), within `timeout_ms`. The caller reads node.action.done.
void action_start(const config::Config& config, const config::Cluster& cluster, Node& node,
                  std::string what, std::vector<std::string> statements, int64_t timeout_ms,
                  int64_t now) {
    Action& action = node.action;
    PGPLEX_ASSERT(!action.busy());
    action.what = std::move(what);
    action.statements = std::move(statements);
    action.step = 0;
    action.deadline_us = now + timeout_ms * 1000;
    action.done = false;
    action.ok = false;
    action.error.clear();
    action.value.clear();
    if (action.conn.state() == PgConn::State::Ready) return action_send(action);
    ConnectParameters parameters = connect_parameters(config, cluster, node);
    for (size_t i = 0; i < parameters.keywords.size(); ++i)
        if (parameters.keywords[i] == "application_name") parameters.values[i] = "pgplex failover";
    if (!action.conn.connect(parameters)) action_end(action, false, action.conn.error());
}

// The results of statements[step] are in; the next statement goes out unless one failed.
void action_answered(Action& action) {
    for (const Result& result : action.conn.take_results()) {
        ExecStatusType status = PQresultStatus(result.get());
        if (status == PGRES_TUPLES_OK && PQntuples(result.get()) > 0 && PQnfields(result.get()) > 0)
            action.value = PQgetvalue(result.get(), 0, 0);
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && action.error.empty())
            action.error = one_line(PQresultErrorMessage(result.get()));
    }
    if (!action.error.empty()) return action_end(action, false, action.error);
    ++action.step;
    action_send(action);
}

void advance_action(Node& node, short revents) {
    Action& action = node.action;
    switch (action.conn.advance(revents)) {
        case PgConn::Progress::LoggedIn:
            return action_send(action);
        case PgConn::Progress::Answered:
            return action_answered(action);
        case PgConn::Progress::Failed:
            return action_end(action, false, action.conn.error());
        case PgConn::Progress::Waiting:
        case PgConn::Progress::Dropped:  // a later action reconnects
            return;
    }
}

void time_out_action(Node& node, int64_t now) {
    Action& action = node.action;
    if (!action.busy() || now < action.deadline_us) return;
    action_end(action, false, action.what + " timed out");
}

// --- failover: promote, fence, switch over ------------------------------------------------

// pgplex.promote() waits for the promotion up to 10 s (admin/schema.cc); the action gets a
// little more, and the node that long again to report itself primary.
constexpr int64_t promote_action_ms = 15'000;
constexpr int64_t promote_wait_ms = 30'000;
// After a promotion failed, the monitor deciding alone waits this long before the next.
constexpr int64_t promote_retry_ms = 5'000;
// Draining: how often the old primary's open transactions are counted.
constexpr int64_t drain_count_interval_us = 100'000;

// The old primary's open client transactions, the monitors' own connections left out.
constexpr const char* count_open_sql =
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND xact_start IS NOT NULL AND pid <> pg_backend_pid() "
    "AND application_name NOT IN ('pgplex monitor', 'pgplex failover')";

// Read-only by ALTER SYSTEM, which a function cannot run (it refuses a transaction block)
// and which, unlike ALTER DATABASE ... SET, is a file on this node only: a catalog setting
// would replicate to the node being promoted and make it read-only too. pgplex.fence() then
// checks the setting took and ends the other client sessions, so none keeps writing.
std::vector<std::string> fence_statements(const Node& node) {
    std::vector<std::string> statements;
    if (node.failover_functions) {
        statements = {"ALTER SYSTEM SET default_transaction_read_only = on",
                      "SELECT pg_reload_conf()", "SELECT pgplex.fence()"};
    }
    statements.push_back("SELECT pg_current_wal_flush_lsn()");
    return statements;
}

std::vector<std::string> unfence_statements() {
    return {"ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()",
            "SELECT pgplex.unfence()"};
}

Node* node_named(ClusterState& cluster, std::string_view name) {
    for (std::unique_ptr<Node>& node : cluster.nodes)
        if (node->config.name == name) return node.get();
    return nullptr;
}

bool is_primary(const ClusterState& cluster, std::string_view name) {
    return cluster.primary >= 0 && cluster.nodes[size_t(cluster.primary)]->config.name == name;
}

// The one place a failover changes state: checks the edge and logs it.
void set_failover_state(ClusterState& cluster, FailoverState next, int64_t now) {
    Failover& failover = cluster.failover;
    switch (next) {
        case FailoverState::Idle:
            break;
        case FailoverState::Draining:
            PGPLEX_ASSERT(failover.state == FailoverState::Idle && failover.switchover);
            break;
        case FailoverState::Fencing:
            PGPLEX_ASSERT(failover.state == FailoverState::Draining);
            break;
        case FailoverState::CatchingUp:
            PGPLEX_ASSERT(failover.state == FailoverState::Fencing);
            break;
        case FailoverState::Promoting:
            PGPLEX_ASSERT(failover.state == FailoverState::Idle ||
                          failover.state == FailoverState::CatchingUp);
            break;
        case FailoverState::PatroniMoving:
            PGPLEX_ASSERT(failover.state == FailoverState::Idle);
            break;
    }
    log_debug("cluster %s: failover %s -> %s", cluster.config->name.c_str(),
              to_string(failover.state), to_string(next));
    failover.state = next;
    if (next == FailoverState::Idle) {
        failover.switchover = false;
        failover.target.clear();
        failover.old.clear();
        failover.open = -1;
    }
    (void)now;
}

void enter_promoting(const config::Config& config, ClusterState& cluster, Node& target,
                     int64_t now) {
    Failover& failover = cluster.failover;
    const char* statement =
        target.failover_functions ? "SELECT pgplex.promote()" : "SELECT pg_promote(wait => false)";
    log_warning("cluster %s: promoting %s (%s; replay LSN %s)", cluster.config->name.c_str(),
                target.config.name.c_str(), statement,
                format_lsn(target.status.replay_lsn).c_str());
    if (target.action.busy()) target.action.conn.close();
    action_start(config, *cluster.config, target, "promote", {statement}, promote_action_ms, now);
    failover.deadline_us = now + promote_wait_ms * 1000;
    set_failover_state(cluster, FailoverState::Promoting, now);
}

// An unplanned promotion: the old primary is fenced first, since it may come back.
void begin_promotion(const config::Config& config, ClusterState& cluster, Node& target,
                     int64_t now) {
    Failover& failover = cluster.failover;
    failover.switchover = false;
    failover.target = target.config.name;
    failover.old = cluster.last_primary;
    failover.started_us = now;
    if (!failover.old.empty())
        fence(*cluster.config, cluster.states(), failover.old,
              "pgplex promotes " + failover.target);
    enter_promoting(config, cluster, target, now);
}

// A switchover that cannot finish gives the old primary back: nothing was promoted, so it
// still has every write.
void abort_switchover(const config::Config& config, ClusterState& cluster, std::string why,
                      int64_t now) {
    Failover& failover = cluster.failover;
    log_error("cluster %s: switchover to %s abandoned: %s; %s stays primary",
              cluster.config->name.c_str(), failover.target.c_str(), why.c_str(),
              failover.old.c_str());
    Node* old = node_named(cluster, failover.old);
    if (old != nullptr && old->status.fenced) {
        old->status.fenced = false;
        old->fence_applied = false;
        if (old->failover_functions && !old->action.busy())
            action_start(config, *cluster.config, *old, "unfence", unfence_statements(),
                         fence_action_ms, now);
    }
    set_failover_state(cluster, FailoverState::Idle, now);
}

void fail_promotion(const config::Config& config, ClusterState& cluster, std::string why,
                    int64_t now) {
    Failover& failover = cluster.failover;
    if (failover.switchover) return abort_switchover(config, cluster, std::move(why), now);
    log_error("cluster %s: promoting %s failed: %s; trying again in %lld ms",
              cluster.config->name.c_str(), failover.target.c_str(), why.c_str(),
              static_cast<long long>(promote_retry_ms));
    failover.retry_after_us = now + promote_retry_ms * 1000;
    set_failover_state(cluster, FailoverState::Idle, now);
}

void step_promoting(const config::Config& config, ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    Node* target = node_named(cluster, failover.target);
    if (target == nullptr) return fail_promotion(config, cluster, "it left the config", now);
    if (is_primary(cluster, failover.target)) {
        log_warning("cluster %s: %s is primary (epoch %llu), %lld ms after the %s began",
                    cluster.config->name.c_str(), failover.target.c_str(),
                    static_cast<unsigned long long>(cluster.epoch),
                    static_cast<long long>((now - failover.started_us) / 1000),
                    failover.switchover ? "switchover" : "promotion");
        if (failover.switchover)
            log_info("cluster %s: writes released; %s stays fenced until UNFENCE",
                     cluster.config->name.c_str(), failover.old.c_str());
        return set_failover_state(cluster, FailoverState::Idle, now);
    }
    Action& action = target->action;
    if (action.done && action.what == "promote" && !action.ok)
        return fail_promotion(config, cluster, action.error, now);
    if (now >= failover.deadline_us)
        fail_promotion(config, cluster, "it did not report primary in time", now);
}

// failover = "promote" without gossip: when the primary is down and nobody else claims it.
void decide_alone(const config::Config& config, ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    std::vector<NodeState*> states = cluster.states();
    if (now < failover.retry_after_us || !promotion_due(*cluster.config, cluster, states)) {
        failover.refused.clear();
        return;
    }
    std::string why_not;
    int candidate = choose_candidate(*cluster.config, cluster, states, why_not);
    if (candidate < 0) {
        if (why_not != failover.refused)
            log_error("cluster %s: primary %s is down and no replica can be promoted: %s",
                      cluster.config->name.c_str(), cluster.last_primary.c_str(), why_not.c_str());
        failover.refused = why_not;
        return;
    }
    log_warning("cluster %s: primary %s is down", cluster.config->name.c_str(),
                cluster.last_primary.c_str());
    begin_promotion(config, cluster, *cluster.nodes[size_t(candidate)], now);
}

// --- a switchover, step by step

void enter_fencing(const config::Config& config, ClusterState& cluster, Node& old, int64_t now) {
    Failover& failover = cluster.failover;
    fence(*cluster.config, cluster.states(), failover.old, "switchover to " + failover.target);
    if (old.action.busy()) old.action.conn.close();
    action_start(config, *cluster.config, old, "fence", fence_statements(old), fence_action_ms,
                 now);
    set_failover_state(cluster, FailoverState::Fencing, now);
}

void step_draining(const config::Config& config, ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    Node* old = node_named(cluster, failover.old);
    if (old == nullptr) return abort_switchover(config, cluster, "the old primary left", now);
    Action& action = old->action;
    if (action.done && action.what == "count") {
        action.done = false;
        int64_t open = -1;
        if (action.ok &&
            std::from_chars(action.value.data(), action.value.data() + action.value.size(), open)
                    .ec == std::errc())
            failover.open = open;
        if (!action.ok)
            log_warning("cluster %s: switchover: counting transactions on %s failed: %s",
                        cluster.config->name.c_str(), failover.old.c_str(), action.error.c_str());
    }
    if (failover.open == 0) return enter_fencing(config, cluster, *old, now);
    if (now >= failover.deadline_us) {
        log_warning(
            "cluster %s: switchover: %lld transactions still open on %s after "
            "switchover_timeout; going on without them",
            cluster.config->name.c_str(), static_cast<long long>(failover.open),
            failover.old.c_str());
        return enter_fencing(config, cluster, *old, now);
    }
    if (action.busy() || now < failover.next_count_us) return;
    failover.next_count_us = now + drain_count_interval_us;
    action_start(config, *cluster.config, *old, "count", {count_open_sql},
                 cluster.config->check_timeout_ms, now);
}

void step_fencing(const config::Config& config, ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    Node* old = node_named(cluster, failover.old);
    if (old == nullptr) return abort_switchover(config, cluster, "the old primary left", now);
    Action& action = old->action;
    if (!action.done || action.what != "fence") return;
    action.done = false;
    if (!action.ok || !parse_lsn(action.value, failover.final_lsn))
        return abort_switchover(
            config, cluster,
            "fencing " + failover.old + " failed: " + (action.ok ? action.value : action.error),
            now);
    old->fence_applied = old->failover_functions;
    log_info("cluster %s: switchover: %s is %s at %s; waiting for %s to replay it",
             cluster.config->name.c_str(), failover.old.c_str(),
             old->fence_applied ? "read-only" : "fenced (no pgplex schema: not read-only)",
             format_lsn(failover.final_lsn).c_str(), failover.target.c_str());
    failover.deadline_us = now + cluster.config->switchover_timeout_ms * 1000;
    set_failover_state(cluster, FailoverState::CatchingUp, now);
}

void step_catching_up(const config::Config& config, ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    Node* target = node_named(cluster, failover.target);
    if (target == nullptr) return abort_switchover(config, cluster, "the target left", now);
    if (target->status.healthy && target->status.replay_lsn >= failover.final_lsn)
        return enter_promoting(config, cluster, *target, now);
    if (now >= failover.deadline_us)
        abort_switchover(config, cluster,
                         failover.target + " did not replay " + format_lsn(failover.final_lsn) +
                             " within switchover_timeout",
                         now);
}

// --- a switchover made by Patroni

// The primary's Patroni answered its /primary probe, and not with 200: Patroni on that node
// is alive and says it is not the leader (a switchover, or a failover it runs). No answer at
// all is a failure, which rise/fall handles.
bool patroni_gives_up_leader(const ClusterState& cluster) {
    if (cluster.config->patroni_port == 0 || cluster.primary < 0) return false;
    const Node& primary = *cluster.nodes[size_t(cluster.primary)];
    int status = primary.probes[ProbePrimary].status();
    return !primary.checking && status != 0 && status != 200;
}

void watch_patroni(ClusterState& cluster, int64_t now) {
    if (!patroni_gives_up_leader(cluster)) return;
    Failover& failover = cluster.failover;
    failover.switchover = true;  // writes are held
    failover.old = cluster.nodes[size_t(cluster.primary)]->config.name;
    failover.started_us = now;
    failover.deadline_us = now + cluster.config->switchover_timeout_ms * 1000;
    log_warning(
        "cluster %s: Patroni on %s no longer answers 200 on /primary: holding writes "
        "until the new leader is seen",
        cluster.config->name.c_str(), failover.old.c_str());
    set_failover_state(cluster, FailoverState::PatroniMoving, now);
}

void step_patroni_moving(ClusterState& cluster, int64_t now) {
    Failover& failover = cluster.failover;
    const char* name = cluster.config->name.c_str();
    Node* old = node_named(cluster, failover.old);
    bool again = is_primary(cluster, failover.old) && old != nullptr && !old->checking &&
                 old->probes[ProbePrimary].status() == 200;
    bool moved = cluster.primary >= 0 && !is_primary(cluster, failover.old);
    if (!again && !moved && now < failover.deadline_us) return;
    if (moved)
        log_warning("cluster %s: Patroni moved the leader to %s in %lld ms: writes released", name,
                    cluster.nodes[size_t(cluster.primary)]->config.name.c_str(),
                    static_cast<long long>((now - failover.started_us) / 1000));
    else if (again)
        log_info("cluster %s: %s is Patroni's leader again: writes released", name,
                 failover.old.c_str());
    else
        log_warning(
            "cluster %s: no new Patroni leader within switchover_timeout: writes "
            "released",
            name);
    set_failover_state(cluster, FailoverState::Idle, now);
}

// The old primary's action, or the count's: a switchover is under way on it.
bool switchover_owns(const ClusterState& cluster, const Node& node) {
    return cluster.failover.switchover && node.config.name == cluster.failover.old;
}

// Reads what an earlier fence or unfence on the node came to.
void take_fence_outcome(const ClusterState& cluster, Node& node, int64_t now) {
    Action& action = node.action;
    if (!action.done || (action.what != "fence" && action.what != "unfence")) return;
    action.done = false;
    const char* cluster_name = cluster.config->name.c_str();
    if (action.what == "unfence") {
        if (!action.ok)
            log_warning("cluster %s: node %s: making it writable again failed: %s", cluster_name,
                        node.config.name.c_str(), action.error.c_str());
        return;
    }
    node.fence_applied = action.ok;
    if (action.ok) {
        log_warning("cluster %s: fenced node %s is back and now read-only", cluster_name,
                    node.config.name.c_str());
        return;
    }
    log_warning("cluster %s: fencing node %s failed: %s", cluster_name, node.config.name.c_str(),
                action.error.c_str());
    node.fence_retry_us = now + promote_retry_ms * 1000;
}

// A fenced node that claims primary again is made read-only when the pgplex schema lets the
// monitor do it; without it, it is only kept out of routing.
void apply_fences(const config::Config& config, ClusterState& cluster, int64_t now) {
    for (std::unique_ptr<Node>& node : cluster.nodes) {
        if (switchover_owns(cluster, *node)) continue;
        take_fence_outcome(cluster, *node, now);
        const NodeStatus& status = node->status;
        if (!status.fenced || node->fence_applied || !status.healthy ||
            status.role != Role::Primary || !node->failover_functions)
            continue;
        if (node->action.busy() || now < node->fence_retry_us) continue;
        action_start(config, *cluster.config, *node, "fence", fence_statements(*node),
                     fence_action_ms, now);
    }
}

// While a failover is under way its target is checked at fastinter, so its promotion (or
// catching up) is seen as soon as it happens.
void hurry_checks(ClusterState& cluster, int64_t now) {
    if (cluster.failover.state == FailoverState::Idle) return;
    Node* target = node_named(cluster, cluster.failover.target);
    if (target == nullptr || target->checking) return;
    int64_t soon = std::max(now, target->check_started_us + cluster.config->fastinter_ms * 1000);
    target->next_check_us = std::min(target->next_check_us, soon);
}

void step_failover(const config::Config& config, ClusterState& cluster, bool alone, int64_t now) {
    switch (cluster.failover.state) {
        case FailoverState::Idle:
            if (alone) decide_alone(config, cluster, now);
            if (cluster.failover.state == FailoverState::Idle) watch_patroni(cluster, now);
            break;
        case FailoverState::PatroniMoving:
            step_patroni_moving(cluster, now);
            break;
        case FailoverState::Draining:
            step_draining(config, cluster, now);
            break;
        case FailoverState::Fencing:
            step_fencing(config, cluster, now);
            break;
        case FailoverState::CatchingUp:
            step_catching_up(config, cluster, now);
            break;
        case FailoverState::Promoting:
            step_promoting(config, cluster, now);
            break;
    }
}

}  // namespace pgplex::cluster::monitor_detail
