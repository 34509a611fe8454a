// The monitors: one connection per node, owned by pgplex, on a thread of the control plane
// (never a worker). Each check reads the node's role, LSNs, lag, sync state, apply delay and
// free connection slots in one query; rise/fall hysteresis turns checks into health; every
// round that changed anything publishes a new Topology (topology.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "pgplex/cluster/suspects.h"
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

class Monitor {
  public:
    using Publish = std::function<void(std::shared_ptr<const Topology>)>;

    // `suspects`: where workers report nodes failing on the data path (suspects.h); each is
    // checked at once. May be null.
    explicit Monitor(Publish publish, Suspects* suspects = nullptr);
    ~Monitor();  // stops the thread
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    // Starts the thread for the clusters of `config` (none: the thread still runs, idle).
    void start(std::shared_ptr<const config::Config> config);
    // A reload: nodes still configured keep their state and connection; new ones start
    // unknown; removed ones are dropped. Thread-safe.
    void reconfigure(std::shared_ptr<const config::Config> config);
    void stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgplex::cluster
