// See consensus.h.
#include "pgplex/gossip/consensus.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include "pgplex/base/log.h"
#include "pgplex/dcs/etcd.h"
#include "pgplex/gossip/budget_share.h"

namespace pgplex::gossip {

using cluster::ClusterStatus;
using cluster::NodeStatus;
using cluster::Role;
using cluster::Topology;

namespace {

int find_node(const ClusterStatus& cluster, const std::string& name) {
    for (size_t i = 0; i < cluster.nodes.size(); ++i)
        if (cluster.nodes[i].name == name) return int(i);
    return -1;
}

// The decided primary's index, when this appliance may send it writes: it holds the lease,
// and its own monitor sees that node healthy and primary (a decision is no reason to send
// writes to a node this appliance cannot reach or that has not finished its promotion).
int gated_primary(const ClusterStatus& cluster, const Decision& decision) {
    if (!decision.writable || decision.primary.empty()) return -1;
    int index = find_node(cluster, decision.primary);
    if (index < 0) return -1;
    const NodeStatus& node = cluster.nodes[size_t(index)];
    return node.healthy && node.role == Role::Primary ? index : -1;
}

cluster::Membership membership_of(const Engine& engine, int64_t now_ms) {
    cluster::Membership membership;
    membership.enabled = true;
    membership.quorum = engine.quorum(now_ms);
    for (const MemberRow& row : engine.members()) {
        membership.members.push_back(cluster::MemberStatus{
            row.address, row.self, to_string(row.state), row.incarnation, row.heard_ms});
    }
    Counters counters = engine.counters();
    membership.received = counters.received;
    membership.sent = counters.sent;
    membership.forged = counters.forged;
    membership.replayed = counters.replayed;
    membership.malformed = counters.malformed;
    return membership;
}

}  // namespace

Consensus::Consensus() = default;
Consensus::~Consensus() = default;

void Consensus::adopt(const config::Config& config, int64_t now_ms) {
    minority_reads_ = config.gossip.minority_reads;
    configured_ = config.gossip.enabled;
    node_budgets_.clear();
    for (const config::Cluster& cluster : config.clusters)
        for (const config::Node& node : cluster.nodes)
            if (node.options.max_db_connections > 0)
                node_budgets_.push_back(
                    {node.endpoint.to_string(), node.options.max_db_connections});
    appliances_ = config.gossip.appliances;
    self_ = config.gossip.self;
    demand_interval_ms_ = std::max<int64_t>(50, config.gossip.probe_interval_ms);
    // A reload never changes [gossip]'s members (control.cc refuses such a file): opened once.
    if (agent_ != nullptr || !config.gossip.enabled) return;
    std::string reason;
    agent_ = Agent::open(config, now_ms, reason);
    if (agent_ == nullptr) {
        log_error(
            "gossip: %s; this appliance routes no writes until it can gossip "
            "(fix [gossip] and restart)",
            reason.c_str());
        return;
    }
    if (!config.dcs.enabled) return;
    std::vector<std::string> clusters;
    for (const config::Cluster& cluster : config.clusters) clusters.push_back(cluster.name);
    store_ = std::make_unique<dcs::EtcdStore>(config.dcs, config.gossip.self, clusters);
    agent_->engine().use_store(store_.get());
    log_info("dcs: the appliances' decisions live in etcd under %s (ttl %llds)",
             config.dcs.prefix.c_str(), static_cast<long long>(config.dcs.ttl_s));
}

void Consensus::readable(int64_t now_ms) {
    if (agent_ == nullptr) return;
    agent_->receive(now_ms);
    agent_->flush();
    agent_->deliver_cancels();
}

bool Consensus::advance(const std::vector<ClusterStatus>& local, int64_t now_ms) {
    if (agent_ == nullptr) return false;
    Engine& engine = agent_->engine();
    for (const ClusterStatus& cluster : local) engine.observe(cluster, now_ms);
    if (now_ms >= engine.next_tick_ms()) engine.tick(now_ms);
    share_node_budgets(now_ms);
    agent_->flush();
    agent_->deliver_cancels();
    return differs(local, now_ms);
}

bool Consensus::differs(const std::vector<ClusterStatus>& local, int64_t now_ms) const {
    const Engine& engine = agent_->engine();
    if (engine.quorum(now_ms) != quorum_seen_) return true;
    for (const ClusterStatus& cluster : local) {
        Decision decision = engine.decision(cluster.name, now_ms);
        auto seen = std::find_if(seen_.begin(), seen_.end(),
                                 [&](const auto& entry) { return entry.first == cluster.name; });
        if (seen == seen_.end() || seen->second.epoch != decision.epoch ||
            seen->second.primary != decision.primary || seen->second.writable != decision.writable)
            return true;
    }
    return false;
}

uint32_t Consensus::appliance_index(const std::string& address) const {
    auto found = std::find(appliances_.begin(), appliances_.end(), address);
    return uint32_t(found - appliances_.begin());
}

// Servers this appliance holds on each budgeted node, and its clients waiting for one there.
std::vector<NodeDemand> Consensus::local_demands() const {
    std::vector<NodeDemand> out;
    for (const NodeBudget& node : node_budgets_) {
        NodeDemand demand{self_, node.node, 0, 0, 0, 0};
        const pool::Budget* budget = pools_->budgets.find(pool::BudgetKind::Node, node.node);
        if (budget != nullptr) {
            demand.held = budget->servers.count();
            demand.limit = std::max(0, budget->servers.limit());
        }
        for (uint32_t id = 0; budget != nullptr && id < pools_->capacity(); ++id) {
            const pool::Pool* pool = pools_->by_id(id);
            if (pool != nullptr && pool->node_budget == budget)
                demand.waiting += pool->waiting.load(std::memory_order_acquire);
        }
        out.push_back(std::move(demand));
    }
    return out;
}

// This appliance's new limit on one budgeted node, from its own demand and the others'.
int Consensus::node_limit(const NodeBudget& node, const NodeDemand& local,
                          const std::vector<NodeDemand>& heard, bool majority, int current) const {
    std::vector<ApplianceDemand> demands = {
        {appliance_index(self_), int(local.held), int(local.waiting), current}};
    for (const NodeDemand& peer : heard)
        if (peer.node == node.node)
            demands.push_back({appliance_index(peer.appliance), int(peer.held), int(peer.waiting),
                               int(peer.limit)});
    int appliances = std::max<int>(1, int(appliances_.size()));
    int64_t wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    bool may_grow = growth_turn(wall_ms, demand_interval_ms_, appliances, demands[0].appliance);
    return appliance_limit(node.budget, demands, appliances, majority, current, may_grow);
}

// At every turn of the monitor thread: this appliance's limit on each budgeted node is set
// from every demand heard lately (gossip/budget_share.h); its demand and limit go to the
// others every probe_interval, and at once when a limit changed (a growth must be heard
// before the next appliance's turn). A peer not heard for a few rounds is counted for its
// static share.
void Consensus::share_node_budgets(int64_t now_ms) {
    if (pools_ == nullptr || node_budgets_.empty()) return;
    Engine& engine = agent_->engine();
    std::vector<NodeDemand> local = local_demands();
    std::vector<NodeDemand> heard = engine.peer_demands(now_ms, 4 * demand_interval_ms_);
    bool majority = engine.quorum(now_ms);
    bool changed = false;
    for (size_t i = 0; i < node_budgets_.size(); ++i) {
        pool::Budget* budget =
            pools_->budgets.find_or_create(pool::BudgetKind::Node, local[i].node);
        if (budget == nullptr) continue;
        int current = std::max(0, budget->servers.limit());
        int limit = node_limit(node_budgets_[i], local[i], heard, majority, current);
        if (limit != current) {
            changed = true;
            log_debug("gossip: node %s: this appliance's share of max_db_connections %d: %d",
                      local[i].node.c_str(), node_budgets_[i].budget, limit);
        }
        budget->servers.set_limit(limit);
        local[i].limit = limit;
    }
    if (!changed && now_ms - demands_sent_ms_ < demand_interval_ms_) return;
    demands_sent_ms_ = now_ms;
    engine.send_demands(local, now_ms);
}

int64_t Consensus::next_wakeup_ms() const {
    return agent_ != nullptr ? agent_->engine().next_tick_ms() : INT64_MAX;
}

std::vector<cluster::Promotion> Consensus::take_promotions() {
    std::vector<cluster::Promotion> out;
    if (agent_ == nullptr) return out;
    for (const Promotion& promotion : agent_->engine().take_promotions())
        out.push_back(cluster::Promotion{promotion.cluster, promotion.node, promotion.epoch});
    return out;
}

void Consensus::promotion_failed(const cluster::Promotion& promotion, int64_t now_ms) {
    if (agent_ != nullptr)
        agent_->engine().promotion_failed(
            Promotion{promotion.cluster, promotion.node, promotion.epoch}, now_ms);
}

void Consensus::forward_cancel(uint32_t pid, uint32_t key, int64_t now_ms) {
    if (agent_ == nullptr) return;
    agent_->forward_cancel(pid, key, now_ms);
}

void Consensus::gate(Topology& topology, int64_t now_ms) {
    if (agent_ == nullptr && configured_) {
        // [gossip] is configured but its socket could not be opened: fail closed.
        for (ClusterStatus& cluster : topology.clusters) {
            cluster.primary = -1;
            cluster.writable = false;
            cluster.writable_until_ms = 0;
            cluster.readable = minority_reads_;
        }
        return;
    }
    if (agent_ == nullptr) return;
    const Engine& engine = agent_->engine();
    seen_.clear();
    for (ClusterStatus& cluster : topology.clusters) {
        Decision decision = engine.decision(cluster.name, now_ms);
        seen_.push_back({cluster.name, Seen{decision.epoch, decision.primary, decision.writable}});
        cluster.epoch = decision.epoch;
        cluster.writable = decision.writable;
        cluster.writable_until_ms = decision.writable ? decision.writable_until_ms : 0;
        cluster.store_unconfirmed = store_ != nullptr && !decision.writable;
        cluster.primary = gated_primary(cluster, decision);
    }
    topology.membership = membership_of(engine, now_ms);
    bool quorum = topology.membership.quorum;
    for (ClusterStatus& cluster : topology.clusters) cluster.readable = quorum || minority_reads_;
    if (quorum != quorum_seen_ && quorum)
        log_info("gossip: this appliance reaches a majority of the %zu configured appliances",
                 topology.membership.members.size());
    if (quorum != quorum_seen_ && !quorum && store_ == nullptr)
        log_warning(
            "gossip: this appliance cannot reach a majority of the %zu configured "
            "appliances: it routes no writes until it does (reads go on)",
            topology.membership.members.size());
    if (quorum != quorum_seen_ && !quorum && store_ != nullptr)
        log_warning(
            "gossip: this appliance cannot reach a majority of the %zu configured "
            "appliances: etcd ([dcs]) still decides whether it routes writes, but it proposes "
            "no change of primary until it does",
            topology.membership.members.size());
    quorum_seen_ = quorum;
}

}  // namespace pgplex::gossip
