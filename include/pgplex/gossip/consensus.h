// Where the monitors' view meets the other appliances' (agent.h): the cluster::Peers the
// monitor thread is given when [gossip] is configured. The monitor feeds it every cluster's
// local status, polls its socket, and passes each Topology through gate() before publishing
// it, so that workers route writes only to the primary of the highest epoch a majority
// accepted, and only while this appliance holds their lease.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "pgplex/cluster/monitor.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"
#include "pgplex/dcs/store.h"
#include "pgplex/gossip/agent.h"
#include "pgplex/pool/pool_table.h"

namespace pgplex::gossip {

class Consensus final : public cluster::Peers {
  public:
    Consensus();
    ~Consensus() override;

    // At start and on every reload: opens the gossip socket the first time [gossip] is
    // configured (a reload never changes it: control.cc keeps the running [gossip]), and with
    // [dcs] starts the etcd client (dcs/etcd.h), which decides from then on.
    void adopt(const config::Config& config, int64_t now_ms) override;
    int fd() const override { return agent_ ? agent_->fd() : -1; }

    // The socket is readable.
    void readable(int64_t now_ms) override;
    // Feeds the local view of every cluster, runs the engine's timers, sends what it has to.
    // Returns true when a decision changed since the last gate(): the caller publishes.
    bool advance(const std::vector<cluster::ClusterStatus>& local, int64_t now_ms) override;
    int64_t next_wakeup_ms() const override;  // INT64_MAX without gossip
    std::vector<cluster::Promotion> take_promotions() override;
    // A promotion take_promotions() handed out could not be carried out here.
    void promotion_failed(const cluster::Promotion& promotion, int64_t now_ms) override;
    // A CancelRequest a worker received for a client of another appliance: sent to it by
    // gossip, authenticated like every datagram. Its pid names the appliance (base/limits.h).
    void forward_cancel(uint32_t pid, uint32_t key, int64_t now_ms) override;

    // Applies the decisions to a Topology about to be published: each cluster's epoch, its
    // primary (only the decided one, only while writable and seen healthy and primary here),
    // and the membership for SHOW MEMBERS.
    void gate(cluster::Topology& topology, int64_t now_ms) override;

    // The pool table whose node budgets (node_options max_db_connections) this appliance
    // shares with the others: each gossip round it sends its demand on each budgeted node
    // and sets its own limit there from everyone's (pool::node_limit). Before start.
    void share_budgets(pool::PoolTable* pools) { pools_ = pools; }

  private:
    struct NodeBudget {
        std::string node;  // endpoint, "host:port": the pool::BudgetKind::Node name
        int budget = 0;
    };
    void share_node_budgets(int64_t now_ms);
    std::vector<NodeDemand> local_demands() const;
    int node_limit(const NodeBudget& node, const NodeDemand& local,
                   const std::vector<NodeDemand>& heard, bool majority, int current) const;
    uint32_t appliance_index(const std::string& address) const;

    struct Seen {  // what the last gate() published of a cluster
        uint64_t epoch = 0;
        std::string primary;
        bool writable = false;
    };
    bool differs(const std::vector<cluster::ClusterStatus>& local, int64_t now_ms) const;

    std::unique_ptr<dcs::DecisionStore> store_;  // [dcs]; outlives agent_, which uses it
    std::unique_ptr<Agent> agent_;
    std::vector<std::pair<std::string, Seen>> seen_;  // by cluster name
    bool quorum_seen_ = false;
    bool minority_reads_ = true;  // [gossip] minority_reads
    bool configured_ = false;     // [gossip] is in the config (agent_ may still have failed)
    pool::PoolTable* pools_ = nullptr;
    std::vector<NodeBudget> node_budgets_;  // from the config adopted last
    std::vector<std::string> appliances_;   // config::Gossip::appliances
    std::string self_;
    int64_t demand_interval_ms_ = 500;  // [gossip] probe_interval
    int64_t demands_sent_ms_ = INT64_MIN / 2;
};

}  // namespace pgplex::gossip
