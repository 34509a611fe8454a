// The monitors: one connection per node, owned by pgplex, on a thread of the control plane
// (never a worker). Each check reads the node's role, LSNs, lag, sync state, apply delay and
// free connection slots in one query; rise/fall hysteresis turns checks into health; every
// round that changed anything publishes a new Topology (topology.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/mailbox.h"
#include "pgplex/cluster/requests.h"
#include "pgplex/cluster/suspects.h"
#include "pgplex/cluster/topology.h"
#include "pgplex/config/config.h"

namespace pgplex::cluster {

// The monitor thread's seam to the other pgplex appliances of the site. The monitor knows only
// this interface; gossip/consensus.h implements it over the gossip engine, and control.cc
// hands one to the monitor when [gossip] is configured (the control plane's layering: cluster
// below gossip, gossip below the program). Every call comes from the monitor thread.
// A promotion the appliances chose for this one to carry out: pg_promote() on `node`.
struct Promotion {
    std::string cluster;
    std::string node;
    uint64_t epoch = 0;
};

class Peers {
  public:
    virtual ~Peers() = default;

    // At start and on every reload.
    virtual void adopt(const config::Config& config, int64_t now_ms) = 0;
    // The socket to poll for readability; -1 for none.
    virtual int fd() const = 0;
    virtual void readable(int64_t now_ms) = 0;
    // Feeds every cluster's local status and runs timers; true when a decision changed since
    // the last gate() (the monitor publishes then).
    virtual bool advance(const std::vector<ClusterStatus>& local, int64_t now_ms) = 0;
    virtual int64_t next_wakeup_ms() const = 0;  // INT64_MAX for none
    virtual std::vector<Promotion> take_promotions() = 0;
    virtual void promotion_failed(const Promotion& promotion, int64_t now_ms) = 0;
    // A CancelRequest for a client of another appliance (base/limits.h's pid layout).
    virtual void forward_cancel(uint32_t pid, uint32_t key, int64_t now_ms) = 0;
    // Applies the appliances' decisions to a Topology about to be published.
    virtual void gate(Topology& topology, int64_t now_ms) = 0;
};

// What the monitor thread shares with the rest of the program; each may be null.
struct MonitorLinks {
    // Where workers report nodes failing on the data path (suspects.h); each is checked
    // at once.
    Suspects* suspects = nullptr;
    // UNFENCE / SWITCHOVER / promotions for the thread to carry out (requests.h).
    Requests* requests = nullptr;
    // CancelRequests (pid << 32 | key) for clients of other appliances, which the thread
    // hands to `peers`.
    Mailbox* cancels = nullptr;
    // The other appliances ([gossip]; Peers above): they decide primaries and promotions
    // together. Null: this appliance decides alone.
    Peers* peers = nullptr;
};

class Monitor {
  public:
    using Publish = std::function<void(std::shared_ptr<const Topology>)>;

    using Links = MonitorLinks;

    explicit Monitor(Publish publish, Links links = {});
    ~Monitor();  // stops the thread
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    // Starts the thread for the clusters of `config` (none: the thread still runs, idle).
    void start(std::shared_ptr<const config::Config> config);
    // A reload: nodes still configured keep their state and connection; new ones start
    // unknown; removed ones are dropped. Thread-safe.
    void reconfigure(std::shared_ptr<const config::Config> config);
    void stop();

    // Carries out a promotion decided elsewhere (the gossip engine's Promotion): pg_promote()
    // on `node` of `cluster` over a monitor connection, the node it replaces fenced, exactly as
    // a promotion the monitor decides itself. Thread-safe; false when the request table is
    // full or the names are too long. The outcome shows in the topology (and the log).
    bool promote(std::string_view cluster, std::string_view node);
    // Whether the monitor decides promotions itself (failover = "promote" clusters). True by
    // default; with gossip the appliances decide together and call promote() instead.
    void decide_promotions(bool alone);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgplex::cluster
