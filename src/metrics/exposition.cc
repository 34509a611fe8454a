// See exposition.h. One function per source: worker stats, pools, topology, gossip. Every
// family is written even when it has no sample, so a dashboard's queries find the name.
#include "pgplex/metrics/exposition.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

#include "pgplex/base/histogram.h"
#include "pgplex/client/client.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/server/server.h"
#include "pgplex/worker/worker.h"

namespace pgplex::metrics {

std::string escape_label_value(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

void Writer::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
}

void Writer::sample(std::string_view name, const Labels& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        for (size_t i = 0; i < labels.size(); ++i) {
            if (i > 0) out_ += ',';
            out_ += labels[i].first;
            out_ += "=\"" + escape_label_value(labels[i].second) + "\"";
        }
        out_ += '}';
    }
    // The shortest text that reads back as the same double: 62.032 s, not 62.031999999999996.
    char number[64] = {};
    if (std::isnan(value))
        snprintf(number, sizeof number, "NaN");
    else if (std::fabs(value) < 9e15 && value == std::floor(value))
        snprintf(number, sizeof number, "%lld", static_cast<long long>(value));
    else
        std::to_chars(number, number + sizeof number - 1, value);
    out_ += ' ';
    out_ += number;
    out_ += '\n';
}

void Writer::histogram(std::string_view name, const Labels& labels,
                       const base::HistogramValues& values) {
    std::string series(name);
    Labels bucket_labels = labels;
    bucket_labels.emplace_back("le", "");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < values.buckets.size(); ++i) {
        cumulative += values.buckets[i];
        char bound[32] = "+Inf";
        if (i < base::histogram_bounds_us.size())
            snprintf(bound, sizeof bound, "%g", double(base::histogram_bounds_us[i]) / 1e6);
        bucket_labels.back().second = bound;
        sample(series + "_bucket", bucket_labels, double(cumulative));
    }
    sample(series + "_sum", labels, double(values.sum_us) / 1e6);
    sample(series + "_count", labels, double(cumulative));
}

namespace {

struct Totals {
    std::array<uint64_t, client::client_state_count> clients{};
    std::array<uint64_t, server::server_state_count> servers{};
    uint64_t pinned = 0, primary_waiting = 0, bytes_queued = 0;
    uint64_t ring_in_use = 0, ring_count = 0, out_in_use = 0, out_count = 0;
    uint64_t chunks_in_use = 0, chunk_count = 0, buffer_size = 0;
    uint64_t tls_failures = 0, auth_failures = 0, logins_refused = 0, protocol_violations = 0;
    uint64_t auth_queries = 0, auth_query_failures = 0, clients_stalled = 0, clients_kept = 0;
    uint64_t primary_wait_timeouts = 0, requests_rerun = 0;
};

Totals sum_workers(const Snapshot& snapshot) {
    Totals t;
    constexpr auto relaxed = std::memory_order_relaxed;
    for (uint32_t w = 0; snapshot.stats != nullptr && w < snapshot.workers; ++w) {
        const worker::WorkerStats& s = snapshot.stats[w];
        for (size_t i = 0; i < t.clients.size(); ++i) t.clients[i] += s.clients_in[i].load(relaxed);
        for (size_t i = 0; i < t.servers.size(); ++i) t.servers[i] += s.servers_in[i].load(relaxed);
        t.pinned += s.pinned.load(relaxed);
        t.primary_waiting += s.primary_waiting.load(relaxed);
        t.bytes_queued += s.bytes_queued.load(relaxed);
        t.ring_in_use += s.ring_in_use.load(relaxed);
        t.ring_count += s.ring_count.load(relaxed);
        t.out_in_use += s.out_in_use.load(relaxed);
        t.out_count += s.out_count.load(relaxed);
        t.chunks_in_use += s.chunks_in_use.load(relaxed);
        t.chunk_count += s.chunk_count.load(relaxed);
        t.buffer_size = std::max<uint64_t>(t.buffer_size, s.buffer_size.load(relaxed));
        t.tls_failures += s.tls_failures.load(relaxed);
        t.auth_failures += s.auth_failures.load(relaxed);
        t.logins_refused += s.logins_refused.load(relaxed);
        t.protocol_violations += s.protocol_violations.load(relaxed);
        t.auth_queries += s.auth_queries.load(relaxed);
        t.auth_query_failures += s.auth_query_failures.load(relaxed);
        t.clients_stalled += s.clients_stalled.load(relaxed);
        t.clients_kept += s.clients_kept.load(relaxed);
        t.primary_wait_timeouts += s.primary_wait_timeouts.load(relaxed);
        t.requests_rerun += s.requests_rerun.load(relaxed);
    }
    return t;
}

void write_connections(Writer& w, const Totals& t) {
    w.family("pgplex_clients", "gauge", "Client connections by state, all workers.");
    for (size_t i = 1; i < t.clients.size(); ++i)  // 0 is Free: an unused slot
        w.sample("pgplex_clients", {{"state", client::to_string(client::ClientState(i))}},
                 double(t.clients[i]));
    w.family("pgplex_servers", "gauge", "Server connections by state, all workers.");
    for (size_t i = 1; i < t.servers.size(); ++i)
        w.sample("pgplex_servers", {{"state", server::to_string(server::ServerState(i))}},
                 double(t.servers[i]));
    w.family("pgplex_clients_pinned", "gauge",
             "Transaction-pooled clients holding their server for session state.");
    w.sample("pgplex_clients_pinned", double(t.pinned));
    w.family("pgplex_clients_waiting_for_primary", "gauge",
             "Routed clients waiting for a cluster to have a primary.");
    w.sample("pgplex_clients_waiting_for_primary", double(t.primary_waiting));
}

struct Counter {
    std::string_view name;
    std::string_view help;
    uint64_t Totals::*field;
};

constexpr Counter counters[] = {
    {"pgplex_tls_failures_total", "Clients whose TLS handshake or a record failed.",
     &Totals::tls_failures},
    {"pgplex_auth_failures_total", "Wrong passwords, unknown users, failed certificates.",
     &Totals::auth_failures},
    {"pgplex_logins_refused_total", "Logins refused by limits or hba.", &Totals::logins_refused},
    {"pgplex_protocol_violations_total", "Clients closed with 08P01.",
     &Totals::protocol_violations},
    {"pgplex_auth_queries_total", "auth_query lookups run on a server.", &Totals::auth_queries},
    {"pgplex_auth_query_failures_total", "auth_query lookups that failed.",
     &Totals::auth_query_failures},
    {"pgplex_clients_stalled_total", "Clients closed by client_stall_timeout.",
     &Totals::clients_stalled},
    {"pgplex_clients_kept_total", "Clients kept (answered) when their server failed.",
     &Totals::clients_kept},
    {"pgplex_primary_wait_timeouts_total", "Requests answered 57P03 after failover_wait_timeout.",
     &Totals::primary_wait_timeouts},
    {"pgplex_requests_rerun_total", "Requests re-sent after a replica failed.",
     &Totals::requests_rerun},
};

void write_counters_and_memory(Writer& w, const Totals& t) {
    for (const Counter& counter : counters) {
        w.family(counter.name, "counter", counter.help);
        w.sample(counter.name, double(t.*counter.field));
    }
    w.family("pgplex_buffers", "gauge", "Buffers of each kind, all workers.");
    w.sample("pgplex_buffers", {{"kind", "receive"}}, double(t.ring_count));
    w.sample("pgplex_buffers", {{"kind", "send"}}, double(t.out_count));
    w.sample("pgplex_buffers", {{"kind", "chunk"}}, double(t.chunk_count));
    w.family("pgplex_buffers_in_use", "gauge", "Buffers of each kind in use, all workers.");
    w.sample("pgplex_buffers_in_use", {{"kind", "receive"}}, double(t.ring_in_use));
    w.sample("pgplex_buffers_in_use", {{"kind", "send"}}, double(t.out_in_use));
    w.sample("pgplex_buffers_in_use", {{"kind", "chunk"}}, double(t.chunks_in_use));
    w.family("pgplex_buffer_size_bytes", "gauge", "Bytes per receive buffer (buffer_size).");
    w.sample("pgplex_buffer_size_bytes", double(t.buffer_size));
    w.family("pgplex_queued_bytes", "gauge", "Bytes in send queues and held input.");
    w.sample("pgplex_queued_bytes", double(t.bytes_queued));
}

}  // namespace

namespace {

// Pools with the same database, user and node (they differ in startup parameters or
// password) are summed: one series per label set, as the format requires.
struct PoolSums {
    int servers = 0, size = 0, waiting = 0;
    pool::StatValues stats{};  // SHOW STATS' counters since start (pool_table.h)
    base::HistogramValues query_time{}, transaction_time{}, wait_time{};
};
using PoolKey = std::tuple<std::string, std::string, std::string>;

// The database a client asked for, as SHOW POOLS names it: the alias, but for the "*"
// fallback the database itself, and without the "@node" of a routed pool (node is a label).
std::string database_of(const pool::Target& target) {
    std::string name = target.alias;
    size_t at = name.rfind('@');
    if (at != std::string::npos &&
        name.compare(at + 1, std::string::npos, target.endpoint.to_string()) == 0)
        name.erase(at);
    return name == "*" ? target.dbname : name;
}

std::map<PoolKey, PoolSums> sum_pools(const pool::PoolTable* pools) {
    std::map<PoolKey, PoolSums> sums;
    for (uint32_t id = 0; pools != nullptr && id < pools->capacity(); ++id) {
        const pool::Pool* pool = pools->by_id(id);
        if (pool == nullptr) continue;
        const pool::Target& target = pool->target;
        PoolSums& sum = sums[{database_of(target), target.user, target.endpoint.to_string()}];
        sum.servers += pool->servers();
        sum.size += pool->size_limit();
        sum.waiting += pool->waiting.load(std::memory_order_relaxed);
        pool::StatValues stats = pool->read(pool->stats);
        for (size_t i = 0; i < pool::stat_count; ++i) sum.stats[i] += stats[i];
        sum.query_time += pool->query_time.read();
        sum.transaction_time += pool->transaction_time.read();
        sum.wait_time += pool->wait_time.read();
    }
    return sums;
}

// SHOW STATS' counters: pgplex_pool_* per database, user and node, and pgbouncer_exporter's
// pgbouncer_stats_* per database, as it labels them. Times are counted in microseconds.
struct StatFamily {
    pool::Stat stat;
    const char* native;
    const char* exporter;
    double scale;
    const char* help;
};
constexpr StatFamily stat_families[] = {
    {pool::Stat::Queries, "pgplex_pool_queries_total", "pgbouncer_stats_queries_pooled_total", 1,
     "Queries (simple Query or extended-protocol Sync) answered through a pool."},
    {pool::Stat::Transactions, "pgplex_pool_transactions_total",
     "pgbouncer_stats_sql_transactions_pooled_total", 1, "Transactions through a pool."},
    {pool::Stat::ServerAssignments, "pgplex_pool_server_assignments_total",
     "pgbouncer_stats_server_assignments_total", 1, "Times a server was lent to a client."},
    {pool::Stat::ReceivedBytes, "pgplex_pool_received_bytes_total",
     "pgbouncer_stats_received_bytes_total", 1, "Bytes from clients forwarded to servers."},
    {pool::Stat::SentBytes, "pgplex_pool_sent_bytes_total", "pgbouncer_stats_sent_bytes_total", 1,
     "Bytes from servers forwarded to clients."},
    {pool::Stat::QueryUs, "pgplex_pool_query_seconds_total",
     "pgbouncer_stats_queries_duration_seconds_total", 1e-6, "Time queries took, summed."},
    {pool::Stat::TransactionUs, "pgplex_pool_transaction_seconds_total",
     "pgbouncer_stats_server_in_transaction_seconds_total", 1e-6,
     "Time transactions held a server, summed."},
    {pool::Stat::WaitUs, "pgplex_pool_wait_seconds_total",
     "pgbouncer_stats_client_wait_seconds_total", 1e-6,
     "Time clients waited for a server, summed."},
};

void write_pool_stats(Writer& w, const std::map<PoolKey, PoolSums>& sums) {
    for (const StatFamily& family : stat_families) {
        size_t at = size_t(family.stat);
        w.family(family.native, "counter", family.help);
        std::map<std::string, double> per_database;
        for (const auto& [key, sum] : sums) {
            double value = double(sum.stats[at]) * family.scale;
            w.sample(family.native,
                     {{"database", std::get<0>(key)},
                      {"user", std::get<1>(key)},
                      {"node", std::get<2>(key)}},
                     value);
            per_database[std::get<0>(key)] += value;
        }
        w.family(family.exporter, "counter", family.help);
        for (const auto& [database, value] : per_database)
            w.sample(family.exporter, {{"database", database}}, value);
    }
}

struct HistogramFamily {
    const char* name;
    base::HistogramValues PoolSums::*values;
    const char* help;
};
constexpr HistogramFamily histogram_families[] = {
    {"pgplex_pool_query_duration_seconds", &PoolSums::query_time,
     "Time from a request to its ReadyForQuery (one query or extended-protocol Sync)."},
    {"pgplex_pool_transaction_duration_seconds", &PoolSums::transaction_time,
     "Time a transaction held a server, from its first request to its idle ReadyForQuery."},
    {"pgplex_pool_wait_duration_seconds", &PoolSums::wait_time,
     "Time a client waited for a server to be lent (0 when one was free)."},
};

// The same times as SHOW STATS' totals, one by one: _sum is pgplex_pool_*_seconds_total.
void write_pool_histograms(Writer& w, const std::map<PoolKey, PoolSums>& sums) {
    for (const HistogramFamily& family : histogram_families) {
        w.family(family.name, "histogram", family.help);
        for (const auto& [key, sum] : sums)
            w.histogram(family.name,
                        {{"database", std::get<0>(key)},
                         {"user", std::get<1>(key)},
                         {"node", std::get<2>(key)}},
                        sum.*family.values);
    }
}

void write_pools(Writer& w, const pool::PoolTable* pools) {
    std::map<PoolKey, PoolSums> sums = sum_pools(pools);
    auto each = [&](std::string_view name, int PoolSums::*field, bool node) {
        for (const auto& [key, sum] : sums) {
            Labels labels{{"database", std::get<0>(key)}, {"user", std::get<1>(key)}};
            if (node) labels.emplace_back("node", std::get<2>(key));
            w.sample(name, labels, double(sum.*field));
        }
    };
    w.family("pgplex_pool_servers", "gauge", "Server connections of a pool, any state.");
    each("pgplex_pool_servers", &PoolSums::servers, true);
    w.family("pgplex_pool_size", "gauge", "pool_size in force for a pool.");
    each("pgplex_pool_size", &PoolSums::size, true);
    w.family("pgplex_pool_clients_waiting", "gauge", "Clients waiting for a server of a pool.");
    each("pgplex_pool_clients_waiting", &PoolSums::waiting, true);
    // pgbouncer_exporter's cl_waiting, labelled as it labels it (database, user).
    std::map<std::pair<std::string, std::string>, int> waiting;
    for (const auto& [key, sum] : sums)
        waiting[{std::get<0>(key), std::get<1>(key)}] += sum.waiting;
    w.family("pgbouncer_pools_client_waiting_connections", "gauge",
             "Client connections waiting on a server connection (as pgbouncer_exporter).");
    for (const auto& [key, count] : waiting)
        w.sample("pgbouncer_pools_client_waiting_connections",
                 {{"database", key.first}, {"user", key.second}}, double(count));
    write_pool_stats(w, sums);
    write_pool_histograms(w, sums);
}

void write_nodes(Writer& w, const cluster::Topology& topology) {
    w.family("pgplex_node_up", "gauge", "1 when the monitor finds the node healthy.");
    for (const cluster::ClusterStatus& c : topology.clusters)
        for (const cluster::NodeStatus& n : c.nodes)
            w.sample("pgplex_node_up",
                     {{"cluster", c.name}, {"node", n.name}, {"role", cluster::to_string(n.role)}},
                     n.healthy ? 1 : 0);
    w.family("pgplex_node_is_primary", "gauge", "1 for the cluster's healthy primary.");
    for (const cluster::ClusterStatus& c : topology.clusters)
        for (size_t i = 0; i < c.nodes.size(); ++i)
            w.sample("pgplex_node_is_primary", {{"cluster", c.name}, {"node", c.nodes[i].name}},
                     c.primary == int(i) ? 1 : 0);
    auto known = [&](std::string_view name, std::string_view help, auto value_of) {
        w.family(name, "gauge", help);
        for (const cluster::ClusterStatus& c : topology.clusters)
            for (const cluster::NodeStatus& n : c.nodes)
                if (double value = value_of(n); value >= 0)
                    w.sample(name, {{"cluster", c.name}, {"node", n.name}}, value);
    };
    known("pgplex_node_lag_bytes", "Replay lag behind the primary in bytes (when known).",
          [](const cluster::NodeStatus& n) { return double(n.lag_bytes); });
    known("pgplex_node_lag_seconds", "Replay lag in time (when known).",
          [](const cluster::NodeStatus& n) { return n.lag_ms < 0 ? -1 : n.lag_ms / 1000.0; });
    known("pgplex_node_free_slots", "Connections the node would still accept (when known).",
          [](const cluster::NodeStatus& n) { return double(n.free_slots); });
    known("pgplex_node_check_seconds", "How long the last good health check took.",
          [](const cluster::NodeStatus& n) { return n.check_us < 0 ? -1 : n.check_us / 1e6; });
    known("pgplex_node_fenced", "1 when the node is fenced.",
          [](const cluster::NodeStatus& n) { return n.fenced ? 1.0 : 0.0; });
}

void write_clusters(Writer& w, const cluster::Topology& topology) {
    auto each = [&](std::string_view name, std::string_view help, auto value_of) {
        w.family(name, "gauge", help);
        for (const cluster::ClusterStatus& c : topology.clusters)
            w.sample(name, {{"cluster", c.name}}, value_of(c));
    };
    each("pgplex_cluster_epoch", "Grows every time the cluster's primary changes.",
         [](const cluster::ClusterStatus& c) { return double(c.epoch); });
    each("pgplex_cluster_primary_known", "1 when the cluster has a healthy primary.",
         [](const cluster::ClusterStatus& c) { return c.primary >= 0 ? 1.0 : 0.0; });
    each("pgplex_cluster_writable", "1 when this appliance sends writes to the cluster.",
         [](const cluster::ClusterStatus& c) { return c.writable ? 1.0 : 0.0; });
    each("pgplex_cluster_readable", "1 when this appliance sends reads to the cluster.",
         [](const cluster::ClusterStatus& c) { return c.readable ? 1.0 : 0.0; });
}

void write_services(Writer& w, const config::Config* config, const cluster::Topology& topology) {
    w.family("pgplex_service_nodes", "gauge", "Nodes that carry a service now.");
    std::vector<std::pair<Labels, bool>> backups;
    for (const cluster::ClusterStatus& status : topology.clusters) {
        const config::Cluster* cluster = config ? config->find_cluster(status.name) : nullptr;
        for (size_t i = 0; cluster != nullptr && i < cluster->services.size(); ++i) {
            const config::Service& service = cluster->services[i];
            cluster::Carriers now =
                cluster::carriers(cluster::service_rule(*cluster, service), status);
            Labels labels{{"cluster", status.name}, {"service", service.name}};
            w.sample("pgplex_service_nodes", labels, double(now.nodes.size()));
            backups.emplace_back(labels, now.backup && !now.nodes.empty());
        }
    }
    w.family("pgplex_service_on_backup", "gauge", "1 when a service is carried by its backups.");
    for (const auto& [labels, backup] : backups)
        w.sample("pgplex_service_on_backup", labels, backup ? 1 : 0);
}

void write_gossip(Writer& w, const cluster::Membership& membership) {
    w.family("pgplex_gossip_enabled", "gauge", "1 when [gossip] is configured.");
    w.sample("pgplex_gossip_enabled", membership.enabled ? 1 : 0);
    w.family("pgplex_gossip_quorum", "gauge", "1 when this appliance reaches a majority.");
    w.sample("pgplex_gossip_quorum", membership.quorum ? 1 : 0);
    w.family("pgplex_gossip_members", "gauge", "Appliances by gossip state (self included).");
    std::map<std::string, int> states{{"alive", 0}, {"suspect", 0}, {"dead", 0}};
    for (const cluster::MemberStatus& member : membership.members) ++states[member.state];
    for (const auto& [state, count] : states)
        w.sample("pgplex_gossip_members", {{"state", state}}, count);
    w.family("pgplex_gossip_messages_total", "counter", "Gossip datagrams by outcome.");
    w.sample("pgplex_gossip_messages_total", {{"outcome", "received"}},
             double(membership.received));
    w.sample("pgplex_gossip_messages_total", {{"outcome", "sent"}}, double(membership.sent));
    w.sample("pgplex_gossip_messages_total", {{"outcome", "forged"}}, double(membership.forged));
    w.sample("pgplex_gossip_messages_total", {{"outcome", "replayed"}},
             double(membership.replayed));
    w.sample("pgplex_gossip_messages_total", {{"outcome", "malformed"}},
             double(membership.malformed));
}

void write_process(Writer& w, const Snapshot& snapshot) {
    const config::Config* config = snapshot.config.get();
    w.family("pgplex_info", "gauge", "Always 1; the version as a label.");
    w.sample("pgplex_info", {{"version", PGPLEX_VERSION}}, 1);
    w.family("pgplex_workers", "gauge", "Worker threads.");
    w.sample("pgplex_workers", snapshot.workers);
    w.family("pgplex_shutting_down", "gauge", "1 once SIGTERM or SIGINT has been taken.");
    w.sample("pgplex_shutting_down", snapshot.shutting_down ? 1 : 0);
    w.family("pgplex_client_connections", "gauge", "Client connections, all workers.");
    w.sample("pgplex_client_connections", snapshot.clients);
    w.family("pgplex_max_client_conn", "gauge", "max_client_conn in force.");
    w.sample("pgplex_max_client_conn", config ? config->max_client_conn : 0);
    w.family("pgbouncer_up", "gauge", "Always 1 (as pgbouncer_exporter's, for its dashboards).");
    w.sample("pgbouncer_up", 1);
    w.family("pgbouncer_config_max_client_connections", "gauge",
             "max_client_conn in force (as pgbouncer_exporter).");
    w.sample("pgbouncer_config_max_client_connections", config ? config->max_client_conn : 0);
}

}  // namespace

std::string render(const Snapshot& snapshot) {
    Writer w;
    write_process(w, snapshot);
    Totals totals = sum_workers(snapshot);
    write_connections(w, totals);
    write_counters_and_memory(w, totals);
    write_pools(w, snapshot.pools);
    const cluster::Topology* topology = snapshot.topology.get();
    cluster::Topology empty;
    write_clusters(w, topology ? *topology : empty);
    write_nodes(w, topology ? *topology : empty);
    write_services(w, snapshot.config.get(), topology ? *topology : empty);
    write_gossip(w, topology ? topology->membership : empty.membership);
    return w.text();
}

}  // namespace pgplex::metrics
