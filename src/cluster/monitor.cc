// See monitor.h. One thread runs every node of every cluster from one poll(2) loop: each node
// owns one libpq connection (non-blocking: PQconnectStartParams/PQconnectPoll, PQsendQuery,
// PQconsumeInput/PQisBusy/PQgetResult) and, with Patroni, three HTTP probes (patroni.h).
// A check is one query that reads everything the topology needs; its outcome feeds the
// node's rise/fall Health, then the cluster is derived again (primary, epoch, lag, sync)
// and a new Topology is published at most once per publish batch. The loop sleeps until
// the nearest deadline: a check due, a check timing out, a publication, or a wake from
// reconfigure()/stop() through an eventfd. What the monitor does to nodes (promote, fence,
// switch over) lives in failover.cc, on a second connection per node; the types both files
// share are in monitor_state.h, and both connections are a PgConn (pg_conn.h).
#include "pgplex/cluster/monitor.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "monitor_state.h"
#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"
#include "pgplex/base/unique_fd.h"
#include "pgplex/cluster/derive.h"
#include "pgplex/cluster/monitor.h"
#include "pgplex/cluster/patroni.h"
#include "pgplex/cluster/saved_state.h"

namespace pgplex::cluster {

using namespace monitor_detail;

namespace {

// --- the check query -----------------------------------------------------------------------

// One statement for both roles (PostgreSQL 15): functions that fail on the other role
// (pg_current_wal_lsn() in recovery, pg_is_wal_replay_paused() outside it) sit behind CASE,
// which evaluates only the branch taken. Replay lag is 0 while the replica has replayed all
// it received, else the age of the last replayed transaction. The WAL receiver's
// application_name is the one in its conninfo (not the fallback_application_name beside it),
// else cluster_name, else "walreceiver", as walreceiver.c picks it. The primary lists its
// synchronous standbys (sync or quorum), one application_name a line: PostgreSQL keeps
// application_name printable ASCII, so no name holds a newline.
constexpr const char* check_columns = R"(SELECT r.recovery,
  CASE WHEN NOT r.recovery THEN pg_current_wal_lsn() END,
  pg_last_wal_receive_lsn(),
  pg_last_wal_replay_lsn(),
  CASE WHEN NOT r.recovery THEN 0
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint END,
  (SELECT setting::bigint FROM pg_settings WHERE name = 'recovery_min_apply_delay'),
  CASE WHEN r.recovery THEN pg_is_wal_replay_paused() ELSE false END,
  current_setting('max_connections')::int,
  current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int
    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
  CASE WHEN r.recovery THEN coalesce(
    (SELECT substring(conninfo FROM '(?:^| )application_name=([^ ]+)')
       FROM pg_stat_wal_receiver),
    nullif(current_setting('cluster_name'), ''),
    'walreceiver') END,
  CASE WHEN NOT r.recovery THEN (SELECT string_agg(application_name, E'\n')
    FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) END,
  CASE WHEN to_regnamespace('pgplex') IS NULL THEN false
       WHEN NOT has_schema_privilege(to_regnamespace('pgplex'), 'USAGE') THEN false
       ELSE coalesce(has_function_privilege(to_regprocedure('pgplex.node_metrics()'),
                                            'EXECUTE'), false) END,
  CASE WHEN to_regnamespace('pgplex') IS NULL THEN false
       WHEN NOT has_schema_privilege(to_regnamespace('pgplex'), 'USAGE') THEN false
       ELSE coalesce(has_function_privilege(to_regprocedure('pgplex.promote()'), 'EXECUTE')
                     AND has_function_privilege(to_regprocedure('pgplex.fence()'), 'EXECUTE')
                     AND has_function_privilege(to_regprocedure('pgplex.unfence()'), 'EXECUTE'),
                     false) END)";
constexpr const char* check_from = "\nFROM (SELECT pg_is_in_recovery() AS recovery) AS r";

// The pgplex schema's host metrics (admin/schema.h), once the last check found them there
// and executable: a query that names a missing function would fail the check, so it is only
// asked for after the check query itself said it may be. That column looks the schema up
// before the function: to_regprocedure() raises "permission denied for schema" where
// monitor_user has no USAGE on it, which would fail every check.
const std::string check_query = std::string(check_columns) + check_from;
const std::string check_query_with_metrics = std::string(check_columns) + ",\n  m.load1, m.cpus" +
                                             check_from + ", pgplex.node_metrics() AS m";

// PQlibVersion() of the first libpq that knows the sslnegotiation parameter.
constexpr int libpq_with_sslnegotiation = 170000;

// The check query's columns, in order.
enum Column : int {
    ColumnRecovery,
    ColumnCurrentLsn,
    ColumnReceiveLsn,
    ColumnReplayLsn,
    ColumnLagMs,
    ColumnApplyDelayMs,
    ColumnReplayPaused,
    ColumnMaxConnections,
    ColumnFreeSlots,
    ColumnApplicationName,
    ColumnSyncStandbys,
    ColumnHasMetrics,
    ColumnHasFailover,
    ColumnCount,  // of check_query
    ColumnLoad1 = ColumnCount,
    ColumnCpus,
    ColumnCountWithMetrics,
};

// Reads one column of the check's single row. A NULL leaves `out` as it is.
class Row {
  public:
    explicit Row(const PGresult* result) : result_(result) {}
    bool null(Column column) const { return PQgetisnull(result_, 0, column) != 0; }
    std::string_view text(Column column) const {
        return null(column) ? std::string_view() : PQgetvalue(result_, 0, column);
    }
    bool boolean(Column column, bool& out) const {
        if (null(column)) return true;
        out = text(column) == "t";
        return text(column) == "t" || text(column) == "f";
    }
    bool integer(Column column, int64_t& out) const {
        if (null(column)) return true;
        std::string_view value = text(column);
        auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), out);
        return error == std::errc() && end == value.data() + value.size();
    }
    bool lsn(Column column, uint64_t& out) const {
        return null(column) || parse_lsn(text(column), out);
    }

  private:
    const PGresult* result_;
};

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        size_t end = std::min(text.find('\n'), text.size());
        lines.emplace_back(text.substr(0, end));
        text.remove_prefix(std::min(end + 1, text.size()));
    }
    return lines;
}

// The metrics columns of check_query_with_metrics, when it was the query.
bool parse_metrics(const PGresult* result, Reading& out) {
    if (PQnfields(result) != ColumnCountWithMetrics) return true;
    Row row(result);
    if (!row.integer(ColumnCpus, out.cpus)) return false;
    if (row.null(ColumnLoad1)) return true;
    std::string_view text = row.text(ColumnLoad1);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out.load1);
    return error == std::errc() && end == text.data() + text.size();
}

bool parse_reading(const PGresult* result, Reading& out, std::string& error) {
    int fields = PQnfields(result);
    if (PQntuples(result) != 1 || (fields != ColumnCount && fields != ColumnCountWithMetrics)) {
        error = "the check query returned an unexpected result";
        return false;
    }
    Row row(result);
    out = Reading{};
    bool ok = row.boolean(ColumnRecovery, out.recovery) && !row.null(ColumnRecovery) &&
              row.lsn(ColumnCurrentLsn, out.current_lsn) &&
              row.lsn(ColumnReceiveLsn, out.receive_lsn) &&
              row.lsn(ColumnReplayLsn, out.replay_lsn) && row.integer(ColumnLagMs, out.lag_ms) &&
              row.integer(ColumnApplyDelayMs, out.apply_delay_ms) &&
              row.boolean(ColumnReplayPaused, out.replay_paused) &&
              row.integer(ColumnMaxConnections, out.max_connections) &&
              row.integer(ColumnFreeSlots, out.free_slots) &&
              row.boolean(ColumnHasMetrics, out.has_metrics) &&
              row.boolean(ColumnHasFailover, out.has_failover) && parse_metrics(result, out);
    if (!ok) {
        error = "the check query returned a value pgplex cannot read";
        return false;
    }
    out.application_name = std::string(row.text(ColumnApplicationName));
    out.sync_standbys = split_lines(row.text(ColumnSyncStandbys));
    return true;
}

int64_t now_us() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
}

// --- the SQL side -----------------------------------------------------------------------------

// Ends this check's SQL part in failure and drops the connection: the next check starts
// from a fresh login, whatever state the server left this one in.
void sql_fail(Node& node, std::string reason) {
    node.metrics = false;
    if (node.checking && !node.sql_done) {
        node.sql_done = true;
        node.sql_ok = false;
        node.sql_error = std::move(reason);
    }
    node.sql.close();
}

// The monitor password: the cluster's, else a plain-text one from the auth file (an md5 or
// SCRAM secret cannot log in through libpq), else none.
std::string password_of(const config::Config& config, const config::Cluster& cluster) {
    if (!cluster.monitor_password.empty()) return cluster.monitor_password;
    auto found = config.users.find(cluster.monitor_user);
    if (found == config.users.end()) return {};
    const std::string& secret = found->second;
    bool md5 = secret.size() == 35 && secret.starts_with("md5");
    if (md5 || secret.starts_with("SCRAM-SHA-256$")) return {};
    return secret;
}

// The resolved numeric address of a TCP node, so libpq never resolves a name on this thread.
std::string numeric_address(const config::Endpoint& endpoint) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* address = nullptr;
    if (endpoint.address.ss_family == AF_INET)
        address = &reinterpret_cast<const sockaddr_in&>(endpoint.address).sin_addr;
    if (endpoint.address.ss_family == AF_INET6)
        address = &reinterpret_cast<const sockaddr_in6&>(endpoint.address).sin6_addr;
    if (address == nullptr) return {};
    if (inet_ntop(endpoint.address.ss_family, address, text, sizeof text) == nullptr) return {};
    return text;
}

// libpq's names for the server TLS settings. sslnegotiation exists from libpq 17 on; an
// older libpq speaks SSLRequest first, which a PostgreSQL 17 server accepts as well.
void add_tls_parameters(ConnectParameters& parameters, const config::ServerTls& server_tls) {
    const tls::Settings& tls = server_tls.settings;
    parameters.add("sslmode", tls::to_string(tls.mode));
    if (!tls.ca_file.empty()) parameters.add("sslrootcert", tls.ca_file);
    if (!tls.cert_file.empty()) parameters.add("sslcert", tls.cert_file);
    if (!tls.key_file.empty()) parameters.add("sslkey", tls.key_file);
    parameters.add("channel_binding", config::to_string(server_tls.channel_binding));
    if (server_tls.negotiation == config::TlsNegotiation::Direct &&
        PQlibVersion() >= libpq_with_sslnegotiation)
        parameters.add("sslnegotiation", "direct");
}

void send_query(Node& node) {
    const std::string& query = node.metrics ? check_query_with_metrics : check_query;
    if (!node.sql.send(query)) sql_fail(node, node.sql.error());
}

void sql_begin(const config::Config& config, const config::Cluster& cluster, Node& node) {
    node.sql_done = false;
    node.sql_ok = false;
    node.sql_error.clear();
    ConnectParameters parameters = connect_parameters(config, cluster, node);
    if (node.sql.state() == PgConn::State::Ready &&
        node.sql.connected_as() != parameters.credentials())
        node.sql.close();  // reloaded with other credentials
    switch (node.sql.state()) {
        case PgConn::State::Closed:
            if (!node.sql.connect(parameters)) sql_fail(node, node.sql.error());
            return;
        case PgConn::State::Ready:
            return send_query(node);
        case PgConn::State::Connecting:
        case PgConn::State::Querying:
            PGPLEX_UNREACHABLE();
    }
}

// One result of the check query: the row, or the error that replaced it.
void take_result(Node& node, const PGresult* result) {
    if (PQresultStatus(result) == PGRES_TUPLES_OK) {
        if (node.sql_error.empty() && parse_reading(result, node.reading, node.sql_error))
            node.sql_ok = true;
        return;
    }
    node.sql_ok = false;
    // Maybe the metrics function went away or lost its grant: the next check asks without it
    // (and finds out again whether it may).
    node.metrics = false;
    if (node.sql_error.empty()) node.sql_error = one_line(PQresultErrorMessage(result));
    if (node.sql_error.empty()) node.sql_error = PQresStatus(PQresultStatus(result));
}

// Every result of the check query is in.
void take_results(Node& node) {
    for (const Result& result : node.sql.take_results()) take_result(node, result.get());
    if (!node.sql_ok && node.sql_error.empty()) node.sql_error = "no result";
    if (!node.sql_ok) return sql_fail(node, node.sql_error);
    node.sql_done = true;
}

void advance_sql(Node& node, short revents) {
    switch (node.sql.advance(revents)) {
        case PgConn::Progress::LoggedIn:
            return send_query(node);
        case PgConn::Progress::Answered:
            return take_results(node);
        case PgConn::Progress::Failed:
            return sql_fail(node, node.sql.error());
        case PgConn::Progress::Waiting:
        case PgConn::Progress::Dropped:
            return;
    }
}

// --- a check: begin, time out, finish -----------------------------------------------------

bool check_complete(const Node& node) {
    if (!node.sql_done) return false;
    for (const PatroniProbe& probe : node.probes) {
        if (!probe.idle()) return false;
    }
    return true;
}

void begin_check(const config::Config& config, const config::Cluster& cluster, Node& node,
                 int64_t now) {
    PGPLEX_ASSERT(!node.checking);
    node.checking = true;
    node.check_started_us = now;
    node.check_deadline_us = now + std::max<int64_t>(cluster.check_timeout_ms, 1) * 1000;
    if (cluster.patroni_port != 0) {
        for (int probe = 0; probe < ProbeCount; ++probe)
            node.probes[probe].start(node.config.endpoint.address, cluster.patroni_port,
                                     node.config.endpoint.host, probe_paths[probe]);
    }
    sql_begin(config, cluster, node);
}

void time_out_check(const config::Cluster& cluster, Node& node) {
    std::string reason =
        "check timed out after " + std::to_string(cluster.check_timeout_ms) + " ms";
    if (!node.sql_done) sql_fail(node, reason);
    for (PatroniProbe& probe : node.probes) probe.abandon(reason);
}

// Patroni decides health and role: 200 on /primary or /replica is a healthy node. Patroni
// answers 200 on /primary as soon as the node holds the leader key, before its `pg_ctl
// promote` has finished; while this check's SQL still finds the node in recovery it is a
// replica (writes released to it would fail with 25006), and the primary from the first
// check that finds it out. Without an SQL answer Patroni's word stands.
// Patroni answers 503 on /primary and /replica (and /read-only, /sync) for a running replica
// tagged noloadbalance: when it answered both, and this check's SQL finds PostgreSQL up and
// in recovery, the node is a healthy replica that carries no service (NodeStatus::
// noloadbalance), where HAProxy's checks would mark it down for every service.
bool apply_patroni(Node& node) {
    int leader_status = node.probes[ProbePrimary].status();
    int replica_status = node.probes[ProbeReplica].status();
    bool leader = leader_status == 200;
    bool replica = replica_status == 200;
    bool in_recovery = node.sql_ok && node.reading.recovery;
    bool promoting = leader && in_recovery;
    bool unbalanced =
        !leader && !replica && leader_status != 0 && replica_status != 0 && in_recovery;
    if (leader && !promoting) node.status.role = Role::Primary;
    if (promoting || (replica && !leader) || unbalanced) node.status.role = Role::Replica;
    node.status.noloadbalance = unbalanced;
    node.patroni_sync = node.probes[ProbeSync].status() == 200 && !leader;
    return leader || replica || unbalanced;
}

std::string patroni_error(const Node& node) {
    std::string text = "patroni:";
    for (int probe = 0; probe < ProbeCount; ++probe) {
        const PatroniProbe& answer = node.probes[probe];
        text += std::string(probe == 0 ? " " : ", ") + probe_paths[probe] + " " +
                (answer.status() != 0 ? std::to_string(answer.status()) : answer.error());
    }
    return text;
}

// Returns true when something the routing reads (health, role) changed.
bool finish_check(const ClusterState& cluster, Node& node, int64_t now) {
    const config::Cluster& settings = *cluster.config;
    bool patroni = settings.patroni_port != 0;
    Before before{node.health, node.status.role};
    node.checking = false;
    if (node.sql_ok) apply_reading(node, node.reading, now);
    bool ok = patroni ? apply_patroni(node) : node.sql_ok;
    node.status.source = patroni ? "patroni" : "monitor";
    std::string error = ok ? std::string() : patroni ? patroni_error(node) : node.sql_error;
    bool changed =
        record_check(settings, node, before, ok, std::move(error), node.check_started_us, now);
    node.next_check_us = now + node.health.next_interval_ms(settings) * 1000;
    return changed;
}

}  // namespace

// --- the thread ---------------------------------------------------------------------------

namespace {

// Checks that end within this of each other are published together.
constexpr int64_t publish_batch_us = 100'000;

// What poll(2) entry i belongs to: the check connection, the action connection, or a
// Patroni probe (its index).
constexpr int watch_sql = -1;
constexpr int watch_action = -2;
struct Watch {
    Node* node;
    int probe;
};

}  // namespace

struct Monitor::Impl {
    Impl(Publish callback, const Links& links)
        : publish(std::move(callback)),
          suspects(links.suspects),
          requests(links.requests != nullptr ? links.requests : &own_requests),
          cancels(links.cancels),
          peers(links.peers) {}

    void run();
    void run_loop();
    void adopt(std::shared_ptr<const config::Config> fresh);
    void take_pending();
    void advance_checks(int64_t now);
    void changed(bool urgent, int64_t now);
    void publish_if_due(int64_t now);
    void restore_saved(const std::vector<bool>& fresh);
    void save_state();
    int64_t next_wakeup() const;
    void wait(int64_t now);
    void drain_wake();
    void check_suspects(int64_t now);
    void take_requests(int64_t now);
    void unfence(ClusterState& cluster, Node& node, int64_t now);
    void switchover(ClusterState& cluster, std::string_view to, int64_t now);
    bool external_promotion(ClusterState& cluster, Node& node, int64_t now);
    void advance_failovers(int64_t now);

    std::vector<ClusterStatus> statuses() const;
    void advance_consensus(int64_t now);

    Publish publish;
    Suspects* suspects;
    Requests own_requests;  // where promote() posts when the owner gave no table
    Requests* requests;
    Mailbox* cancels;
    std::atomic<bool> decide_alone_flag{true};
    std::mutex mutex;                               // guards pending
    std::shared_ptr<const config::Config> pending;  // a config the thread has not taken yet
    std::atomic<bool> stopping{false};
    base::UniqueFd wake{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    std::thread thread;

    // Owned by the thread while it runs.
    std::shared_ptr<const config::Config> config;
    std::vector<ClusterState> clusters;
    uint64_t generation = 0;
    bool publish_pending = false;
    int64_t publish_at_us = 0;
    int64_t published_us = 0;
    std::vector<pollfd> poll_fds;
    std::vector<Watch> watches;
    Peers* peers;  // with [gossip]: the other appliances' part in the decisions; else null
    std::vector<SavedCluster> saved;  // what state_file holds, as this thread last wrote it
    bool save_failing = false;        // the last write failed (logged once until one works)
};

namespace {

ClusterState* find_cluster(std::vector<ClusterState>& clusters, std::string_view name) {
    for (ClusterState& cluster : clusters) {
        if (cluster.config->name == name) return &cluster;
    }
    return nullptr;
}

std::unique_ptr<Node> take_node(ClusterState* old, std::string_view name) {
    if (old == nullptr) return nullptr;
    for (std::unique_ptr<Node>& node : old->nodes) {
        if (node != nullptr && node->config.name == name) return std::move(node);
    }
    return nullptr;
}

// The cluster as `settings` configures it, keeping the state of the nodes `old` had.
ClusterState carry_over(const config::Cluster& settings, ClusterState* old) {
    ClusterState cluster;
    cluster.config = &settings;
    std::string old_primary;
    if (old != nullptr) {
        cluster.epoch = old->epoch;
        cluster.last_primary = old->last_primary;
        cluster.split_warned = old->split_warned;
        cluster.primary_lsn = old->primary_lsn;
        cluster.failover = old->failover;
        if (old->primary >= 0) old_primary = old->nodes[size_t(old->primary)]->config.name;
    }
    for (const config::Node& node_config : settings.nodes) {
        std::unique_ptr<Node> node = take_node(old, node_config.name);
        if (node == nullptr) node = std::make_unique<Node>();
        node->config = node_config;
        node->status.name = node_config.name;
        node->status.endpoint = node_config.endpoint;
        node->status.options = node_config.options;
        if (node_config.name == old_primary) cluster.primary = int(cluster.nodes.size());
        cluster.nodes.push_back(std::move(node));
    }
    return cluster;
}

}  // namespace

void Monitor::Impl::adopt(std::shared_ptr<const config::Config> fresh) {
    std::vector<ClusterState> next;
    std::vector<bool> unseen;  // a cluster this process had not monitored until now
    for (const config::Cluster& settings : fresh->clusters) {
        ClusterState* old = find_cluster(clusters, settings.name);
        unseen.push_back(old == nullptr);
        next.push_back(carry_over(settings, old));
    }
    // The old clusters drop here, with the nodes no longer configured and their connections.
    clusters = std::move(next);
    config = std::move(fresh);
    restore_saved(unseen);
    for (ClusterState& cluster : clusters) derive(*cluster.config, cluster, cluster.states());
    if (peers != nullptr) peers->adopt(*config, now_us() / 1000);
    changed(true, now_us());
}

namespace {

// What a failover step may change that the topology shows: its state, the hold, fences.
std::string failover_signature(const ClusterState& cluster) {
    std::string text = to_string(cluster.failover.state);
    text += cluster.failover.switchover ? "s" : "-";
    for (const std::unique_ptr<Node>& node : cluster.nodes) text += node->status.fenced ? 'F' : '-';
    return text;
}

}  // namespace

void Monitor::Impl::advance_failovers(int64_t now) {
    // With [gossip] the appliances decide promotions together (advance_consensus).
    bool alone = decide_alone_flag.load(std::memory_order_acquire) && peers == nullptr;
    for (ClusterState& cluster : clusters) {
        std::string before = failover_signature(cluster);
        step_failover(*config, cluster, alone, now);
        apply_fences(*config, cluster, now);
        hurry_checks(cluster, now);
        if (failover_signature(cluster) == before) continue;
        // A fence or a release changes who may carry services: derive and publish now.
        derive(*cluster.config, cluster, cluster.states());
        changed(true, now);
    }
}

void Monitor::Impl::unfence(ClusterState& cluster, Node& node, int64_t now) {
    if (!node.status.fenced) {
        log_info("cluster %s: UNFENCE %s: it is not fenced", cluster.config->name.c_str(),
                 node.config.name.c_str());
        return;
    }
    node.status.fenced = false;
    node.fence_applied = false;
    log_warning("cluster %s: node %s unfenced by an operator", cluster.config->name.c_str(),
                node.config.name.c_str());
    if (node.failover_functions && !node.action.busy())
        action_start(*config, *cluster.config, node, "unfence", unfence_statements(),
                     fence_action_ms, now);
    derive(*cluster.config, cluster, cluster.states());
    changed(true, now);
}

// SWITCHOVER cluster [TO node]: the admin command checked what it could against its snapshot;
// this checks again against the monitor's own state, which may be newer.
void Monitor::Impl::switchover(ClusterState& cluster, std::string_view to, int64_t now) {
    const char* name = cluster.config->name.c_str();
    Failover& failover = cluster.failover;
    if (failover.state != FailoverState::Idle) {
        log_error("cluster %s: SWITCHOVER refused: a %s is under way", name,
                  failover.switchover ? "switchover" : "promotion");
        return;
    }
    if (cluster.primary < 0) {
        log_error("cluster %s: SWITCHOVER refused: no primary", name);
        return;
    }
    std::vector<NodeState*> states = cluster.states();
    std::string why_not;
    int target = -1;
    if (to.empty()) target = choose_candidate(*cluster.config, cluster, states, why_not, false);
    for (int i = 0; !to.empty() && i < int(cluster.nodes.size()); ++i)
        if (cluster.nodes[size_t(i)]->config.name == to) target = i;
    if (target >= 0 && promotion_unfit(*states[size_t(target)]) != nullptr)
        why_not = std::string(to) + " is " + promotion_unfit(*states[size_t(target)]);
    if (target < 0 || !why_not.empty()) {
        log_error("cluster %s: SWITCHOVER refused: %s", name,
                  why_not.empty() ? "no such node" : why_not.c_str());
        return;
    }
    failover.switchover = true;
    failover.target = cluster.nodes[size_t(target)]->config.name;
    failover.old = cluster.nodes[size_t(cluster.primary)]->config.name;
    failover.started_us = now;
    failover.deadline_us = now + cluster.config->switchover_timeout_ms * 1000;
    failover.next_count_us = now;
    failover.open = -1;
    log_warning("cluster %s: switchover from %s to %s: holding writes", name, failover.old.c_str(),
                failover.target.c_str());
    set_failover_state(cluster, FailoverState::Draining, now);
    changed(true, now);
}

bool Monitor::Impl::external_promotion(ClusterState& cluster, Node& node, int64_t now) {
    const char* name = cluster.config->name.c_str();
    // Patroni holds the leader key and chooses among its members (never a nofailover one,
    // which pgplex cannot see); a promotion behind its back would make two primaries.
    if (cluster.config->patroni_port != 0) {
        log_error("cluster %s: promotion of %s refused: Patroni promotes, pgplex follows", name,
                  node.config.name.c_str());
        return false;
    }
    if (cluster.failover.state != FailoverState::Idle) {
        log_warning("cluster %s: promotion of %s ignored: a %s is under way", name,
                    node.config.name.c_str(), to_string(cluster.failover.state));
        return true;  // not refused: what is under way decides
    }
    if (is_primary(cluster, node.config.name)) return true;
    const char* unfit = promotion_unfit(node);
    if (unfit != nullptr) {
        log_error("cluster %s: promotion of %s refused: it is %s", name, node.config.name.c_str(),
                  unfit);
        return false;
    }
    begin_promotion(*config, cluster, node, now);
    changed(true, now);
    return true;
}

void Monitor::Impl::take_requests(int64_t now) {
    for (const Request& request : requests->take()) {
        ClusterState* cluster = find_cluster(clusters, request.cluster);
        Node* node = cluster != nullptr ? node_named(*cluster, request.node) : nullptr;
        if (cluster == nullptr || (node == nullptr && !request.node.empty())) {
            log_error("monitor: %s %s %s: no such cluster or node", to_string(request.kind),
                      request.cluster.c_str(), request.node.c_str());
            continue;
        }
        switch (request.kind) {
            case RequestKind::Unfence:
                if (node != nullptr) unfence(*cluster, *node, now);
                break;
            case RequestKind::Switchover:
                switchover(*cluster, request.node, now);
                break;
            case RequestKind::Promote:
                if (node != nullptr) external_promotion(*cluster, *node, now);
                break;
        }
    }
}

void Monitor::Impl::take_pending() {
    std::shared_ptr<const config::Config> fresh;
    {
        std::lock_guard<std::mutex> lock(mutex);
        fresh = std::move(pending);
    }
    if (fresh != nullptr) adopt(std::move(fresh));
}

void Monitor::Impl::changed(bool urgent, int64_t now) {
    int64_t due = urgent ? now : std::max(now, published_us + publish_batch_us);
    publish_at_us = publish_pending ? std::min(publish_at_us, due) : due;
    publish_pending = true;
}

namespace {

ClusterStatus status_of(const ClusterState& cluster) {
    ClusterStatus status;
    status.name = cluster.config->name;
    status.primary = cluster.primary;
    status.epoch = cluster.epoch;
    status.hold_writes = cluster.failover.switchover;
    if (cluster.failover.state != FailoverState::Idle)
        status.failover_state =
            std::string(cluster.failover.switchover ? "switchover" : "promotion") + " to " +
            cluster.failover.target + ": " + to_string(cluster.failover.state);
    for (const std::unique_ptr<Node>& node : cluster.nodes) status.nodes.push_back(node->status);
    return status;
}

}  // namespace

std::vector<ClusterStatus> Monitor::Impl::statuses() const {
    std::vector<ClusterStatus> out;
    for (const ClusterState& cluster : clusters) out.push_back(status_of(cluster));
    return out;
}

void Monitor::Impl::publish_if_due(int64_t now) {
    if (!publish_pending || now < publish_at_us) return;
    auto topology = std::make_shared<Topology>();
    topology->generation = ++generation;
    topology->clusters = statuses();
    if (peers != nullptr) peers->gate(*topology, now / 1000);
    save_state();
    publish_pending = false;
    published_us = now;
    if (publish) publish(std::move(topology));
}

// state_file: the clusters this process sees for the first time start from what a previous
// run left (their fences above all: a fenced old primary back and writable must not be taken
// for one more primary after a restart).
void Monitor::Impl::restore_saved(const std::vector<bool>& unseen) {
    if (config->state_file.empty()) return;
    std::vector<SavedCluster> file;
    std::string reason;
    if (!read_saved_state(config->state_file, file, reason)) {
        log_error("state_file %s: %s; starting without it (fences made before are lost)",
                  config->state_file.c_str(), reason.c_str());
        return;
    }
    for (size_t i = 0; i < clusters.size(); ++i) {
        if (!unseen[i]) continue;
        for (const SavedCluster& cluster : file)
            if (cluster.name == clusters[i].config->name)
                restore(cluster, clusters[i], clusters[i].states());
    }
}

// Writes state_file when what it keeps changed (an epoch, a primary, a fence).
void Monitor::Impl::save_state() {
    if (config->state_file.empty()) return;
    std::vector<SavedCluster> now;
    for (const ClusterState& cluster : clusters)
        now.push_back(saved_of(cluster.config->name, cluster, cluster.states()));
    if (now == saved) return;
    std::string reason;
    if (!write_saved_state(config->state_file, now, reason)) {
        if (!save_failing)
            log_error("state_file: cannot write it: %s; fences will not outlive a restart",
                      reason.c_str());
        save_failing = true;
        return;
    }
    if (save_failing) log_info("state_file %s: written again", config->state_file.c_str());
    save_failing = false;
    saved = std::move(now);
}

// With [gossip]: the engine hears what the monitors see, runs its timers and sends; a changed
// decision (an epoch, a primary, a lease won or lost) is published at once.
void Monitor::Impl::advance_consensus(int64_t now) {
    if (peers == nullptr) return;
    if (cancels != nullptr) {
        for (uint64_t request : cancels->take())
            peers->forward_cancel(uint32_t(request >> 32), uint32_t(request), now / 1000);
    }
    if (peers->advance(statuses(), now / 1000)) changed(true, now);
    for (const Promotion& promotion : peers->take_promotions()) {
        log_info("cluster %s: the appliances chose %s as primary in epoch %llu; promoting it",
                 promotion.cluster.c_str(), promotion.node.c_str(),
                 static_cast<unsigned long long>(promotion.epoch));
        ClusterState* cluster = find_cluster(clusters, promotion.cluster);
        Node* node = cluster != nullptr ? node_named(*cluster, promotion.node) : nullptr;
        if (node == nullptr || !external_promotion(*cluster, *node, now))
            peers->promotion_failed(promotion, now / 1000);
    }
}

// Starts the checks that are due, times out the late ones, and finishes the complete ones.
void Monitor::Impl::advance_checks(int64_t now) {
    for (ClusterState& cluster : clusters) {
        bool finished = false;
        bool urgent = false;
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            if (!node->checking && now >= node->next_check_us)
                begin_check(*config, *cluster.config, *node, now);
            if (node->checking && now >= node->check_deadline_us)
                time_out_check(*cluster.config, *node);
            time_out_action(*node, now);
            if (!node->checking || !check_complete(*node)) continue;
            urgent = finish_check(cluster, *node, now) || urgent;
            finished = true;
        }
        if (!finished) continue;
        urgent = derive(*cluster.config, cluster, cluster.states()) || urgent;
        changed(urgent, now);
    }
}

int64_t Monitor::Impl::next_wakeup() const {
    int64_t wakeup = INT64_MAX;
    if (publish_pending) wakeup = publish_at_us;
    int64_t gossip_ms = peers != nullptr ? peers->next_wakeup_ms() : INT64_MAX;
    if (gossip_ms != INT64_MAX) wakeup = std::min(wakeup, gossip_ms * 1000);
    for (const ClusterState& cluster : clusters) {
        for (const std::unique_ptr<Node>& node : cluster.nodes) {
            wakeup =
                std::min(wakeup, node->checking ? node->check_deadline_us : node->next_check_us);
            if (node->action.busy()) wakeup = std::min(wakeup, node->action.deadline_us);
        }
        // A failover steps on its own deadlines (draining counts, catching up, promoting).
        if (cluster.failover.state != FailoverState::Idle)
            wakeup = std::min(
                wakeup, std::min(cluster.failover.deadline_us, cluster.failover.next_count_us));
    }
    return wakeup;
}

void Monitor::Impl::drain_wake() {
    uint64_t count = 0;
    ssize_t got = ::read(wake.get(), &count, sizeof count);
    (void)got;  // EAGAIN: already drained
}

// Sleeps in poll(2) until the nearest deadline or an event, and hands the events out.
void Monitor::Impl::wait(int64_t now) {
    poll_fds.assign(1, pollfd{wake.get(), POLLIN, 0});
    watches.assign(1, Watch{nullptr, watch_sql});
    // Entry 1 is the gossip socket, or fd -1 (poll(2) skips it) without [gossip].
    poll_fds.push_back(pollfd{peers != nullptr ? peers->fd() : -1, POLLIN, 0});
    watches.push_back(Watch{nullptr, watch_sql});
    for (ClusterState& cluster : clusters) {
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            if (short events = node->sql.events(); events != 0) {
                poll_fds.push_back(pollfd{node->sql.socket(), events, 0});
                watches.push_back(Watch{node.get(), watch_sql});
            }
            if (short events = node->action.conn.events(); events != 0) {
                poll_fds.push_back(pollfd{node->action.conn.socket(), events, 0});
                watches.push_back(Watch{node.get(), watch_action});
            }
            for (int probe = 0; probe < ProbeCount; ++probe) {
                if (node->probes[probe].idle()) continue;
                poll_fds.push_back(
                    pollfd{node->probes[probe].fd(), node->probes[probe].events(), 0});
                watches.push_back(Watch{node.get(), probe});
            }
        }
    }
    int64_t wakeup = next_wakeup();
    int timeout_ms = -1;
    if (wakeup != INT64_MAX)
        timeout_ms = int(std::clamp<int64_t>((wakeup - now + 999) / 1000, 0, 3'600'000));
    if (!wake.valid() && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;  // stop() polls
    int ready = ::poll(poll_fds.data(), poll_fds.size(), timeout_ms);
    if (ready <= 0) return;  // a timeout, or EINTR: the caller's loop looks again
    if ((poll_fds[0].revents & POLLIN) != 0) drain_wake();
    if ((poll_fds[1].revents & POLLIN) != 0 && peers != nullptr) peers->readable(now_us() / 1000);
    for (size_t i = 2; i < poll_fds.size(); ++i) {
        if (poll_fds[i].revents == 0) continue;
        Watch watch = watches[i];
        if (watch.probe == watch_sql) {
            // An earlier entry cannot have closed it: each node has one SQL entry.
            advance_sql(*watch.node, poll_fds[i].revents);
        } else if (watch.probe == watch_action) {
            advance_action(*watch.node, poll_fds[i].revents);
        } else {
            watch.node->probes[watch.probe].advance(poll_fds[i].revents);
        }
    }
}

// Nodes a worker found failing are checked now, unless a check began in the last 100 ms
// (then right after that): a burst of failing connections costs one check, not one each.
void Monitor::Impl::check_suspects(int64_t now) {
    if (suspects == nullptr) return;
    std::vector<uint64_t> reported = suspects->take();
    if (reported.empty()) return;
    constexpr int64_t spacing_us = 100'000;
    for (ClusterState& cluster : clusters) {
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            if (node->checking) continue;
            uint64_t hash = Suspects::hash(node->config.endpoint);
            if (std::find(reported.begin(), reported.end(), hash) == reported.end()) continue;
            int64_t at = std::max(now, node->check_started_us + spacing_us);
            if (at >= node->next_check_us) continue;
            node->next_check_us = at;
            log_info("monitor: %s: a connection to it failed on the data path; checking it now",
                     node->status.name.c_str());
        }
    }
}

void Monitor::Impl::run_loop() {
    while (!stopping.load(std::memory_order_acquire)) {
        take_pending();
        int64_t now = now_us();
        check_suspects(now);
        take_requests(now);
        advance_checks(now);
        advance_failovers(now);
        advance_consensus(now);
        publish_if_due(now);
        wait(now);
    }
}

void Monitor::Impl::run() {
    try {
        run_loop();
    } catch (const std::exception& error) {
        log_error("monitor: the monitor thread stopped: %s", error.what());
    } catch (...) {
        log_error("monitor: the monitor thread stopped on an unknown exception");
    }
    clusters.clear();  // closes every connection on the thread that used them
}

// --- the public face ------------------------------------------------------------------------

Monitor::Monitor(Publish publish, Links links)
    : impl_(std::make_unique<Impl>(std::move(publish), links)) {
    if (!impl_->wake.valid()) log_warning("monitor: eventfd failed; stop() waits up to 100 ms");
}

Monitor::~Monitor() {
    stop();
}

void Monitor::start(std::shared_ptr<const config::Config> config) {
    PGPLEX_ASSERT(config != nullptr);
    if (impl_->thread.joinable()) return reconfigure(std::move(config));
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->pending = std::move(config);
    }
    impl_->stopping.store(false, std::memory_order_release);
    if (impl_->suspects != nullptr && impl_->wake.valid())
        impl_->suspects->attach(impl_->wake.get());
    if (impl_->cancels != nullptr && impl_->wake.valid()) impl_->cancels->attach(impl_->wake.get());
    if (impl_->wake.valid()) impl_->requests->attach(impl_->wake.get());
    try {
        impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
    } catch (const std::exception& error) {
        log_error("monitor: cannot start the monitor thread: %s", error.what());
    }
}

void Monitor::reconfigure(std::shared_ptr<const config::Config> config) {
    PGPLEX_ASSERT(config != nullptr);
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->pending = std::move(config);
    }
    uint64_t one = 1;
    ssize_t wrote = ::write(impl_->wake.get(), &one, sizeof one);
    (void)wrote;  // a full counter still wakes the thread
}

void Monitor::stop() {
    if (!impl_->thread.joinable()) return;
    if (impl_->suspects != nullptr) impl_->suspects->attach(-1);
    if (impl_->cancels != nullptr) impl_->cancels->attach(-1);
    impl_->requests->attach(-1);
    impl_->stopping.store(true, std::memory_order_release);
    uint64_t one = 1;
    ssize_t wrote = ::write(impl_->wake.get(), &one, sizeof one);
    (void)wrote;
    impl_->thread.join();
}

bool Monitor::promote(std::string_view cluster, std::string_view node) {
    return impl_->requests->post(RequestKind::Promote, cluster, node);
}

void Monitor::decide_promotions(bool alone) {
    impl_->decide_alone_flag.store(alone, std::memory_order_release);
}

// --- shared with failover.cc (monitor_state.h) ----------------------------------------------

namespace monitor_detail {

// libpq's messages end in a newline and may span lines ("\n\tIs the server running...").
ConnectParameters connect_parameters(const config::Config& config, const config::Cluster& cluster,
                                     const Node& node) {
    ConnectParameters parameters;
    const config::Endpoint& endpoint = node.config.endpoint;
    parameters.add("host", endpoint.host);
    if (!endpoint.is_unix()) {
        std::string address = numeric_address(endpoint);
        if (!address.empty()) parameters.add("hostaddr", address);
    }
    parameters.add("port", std::to_string(endpoint.port));
    parameters.add("user", cluster.monitor_user);
    std::string password = password_of(config, cluster);
    if (!password.empty()) parameters.add("password", password);
    parameters.add("dbname", cluster.monitor_dbname);
    parameters.add("application_name", "pgplex monitor");
    int64_t timeout_seconds = std::max<int64_t>(1, (cluster.check_timeout_ms + 999) / 1000);
    parameters.add("connect_timeout", std::to_string(timeout_seconds));
    // The node's server TLS settings, as pgplex's own connections to it use them (libpq's
    // sslmode has the same names; verify-full checks `host`, the node's name as configured).
    const config::ServerTls& server_tls =
        node.config.server_tls ? *node.config.server_tls : *config.server_tls;
    if (!endpoint.is_unix()) add_tls_parameters(parameters, server_tls);
    return parameters;
}

}  // namespace monitor_detail

}  // namespace pgplex::cluster
