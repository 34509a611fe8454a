// See topology.h.
#include "pgplex/cluster/topology.h"

namespace pgplex::cluster {

namespace {

bool within(const Limits& limits, const NodeStatus& node) {
    if (node.role == Role::Primary) return true;
    if (limits.max_lag_bytes >= 0 && (node.lag_bytes < 0 || node.lag_bytes > limits.max_lag_bytes))
        return false;
    if (limits.max_lag_ms >= 0 && (node.lag_ms < 0 || node.lag_ms > limits.max_lag_ms))
        return false;
    return node.replay_lsn >= limits.min_replay_lsn;
}

void collect(const Selector& selector, const Limits& limits, const ClusterStatus& cluster,
             std::vector<int>& out) {
    if (selector.empty()) return;
    for (size_t i = 0; i < cluster.nodes.size(); ++i) {
        const NodeStatus& node = cluster.nodes[i];
        // A node that says it is primary but is not the cluster's primary (a split brain, a
        // failover half way, or with gossip one the appliances did not choose) carries nothing.
        if (node.role == Role::Primary && int(i) != cluster.primary) continue;
        if (node.noloadbalance) continue;
        if (node.healthy && !node.fenced && node.role != Role::Unknown && matches(selector, node) &&
            within(limits, node))
            out.push_back(int(i));
    }
}

}  // namespace

const char* to_string(Role role) {
    switch (role) {
        case Role::Unknown:
            return "unknown";
        case Role::Primary:
            return "primary";
        case Role::Replica:
            return "replica";
    }
    return "unknown";
}

bool matches(const Selector& selector, const NodeStatus& node) {
    config::SelectorFacts facts;
    facts.primary = node.role == Role::Primary;
    facts.replica = node.role == Role::Replica;
    facts.sync = node.sync;
    facts.delayed = node.delayed();
    facts.offline = node.options.offline;
    facts.offline_query = node.options.offline_query;
    return selector.matches(facts);
}

const ClusterStatus* Topology::find(std::string_view name) const {
    for (const ClusterStatus& cluster : clusters)
        if (cluster.name == name) return &cluster;
    return nullptr;
}

Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster, const Limits& limits) {
    Carriers out;
    collect(rule.selector, limits, cluster, out.nodes);
    if (!out.nodes.empty()) return out;
    collect(rule.backup, limits, cluster, out.nodes);
    out.backup = !out.nodes.empty();
    return out;
}

Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster) {
    return carriers(rule, cluster, Limits{rule.max_lag_ms, rule.max_lag_bytes, 0});
}

ServiceRule service_rule(const config::Cluster& cluster, const config::Service& service) {
    ServiceRule rule;
    std::string reason;
    if (!Selector::compile(service.selector, rule.selector, reason)) rule.selector = Selector();
    if (!Selector::compile(service.backup, rule.backup, reason)) rule.backup = Selector();
    rule.max_lag_ms = service.max_lag_ms >= 0 ? service.max_lag_ms : cluster.max_lag_ms;
    rule.max_lag_bytes = service.max_lag_bytes >= 0 ? service.max_lag_bytes : cluster.max_lag_bytes;
    return rule;
}

}  // namespace pgplex::cluster
