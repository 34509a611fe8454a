// Nodes the data path found failing, for the monitor to check at once (issue: a failover is
// noticed at the next check otherwise, up to `inter` later). A worker whose connection to a
// node is refused or lost reports the node's address; the monitor thread takes the reports
// when it wakes and starts a check of each such node now (fastinter then applies while its
// health changes). Lock-free, as the data path must be: the address hashes go through a
// Mailbox (mailbox.h); a report that finds it full is dropped (the next failure reports
// again, and the regular check still comes).
#pragma once

#include <cstdint>
#include <vector>

#include "pgplex/cluster/mailbox.h"
#include "pgplex/config/config.h"

namespace pgplex::cluster {

class Suspects {
  public:
    // Any thread. Wakes the monitor through its eventfd when one is attached.
    void report(const config::Endpoint& endpoint) { mailbox_.post(hash(endpoint)); }
    // The monitor thread: the hashes reported since the last take.
    std::vector<uint64_t> take() { return mailbox_.take(); }
    // The monitor's eventfd, or -1 (before it starts, after it stops).
    void attach(int wake_fd) { mailbox_.attach(wake_fd); }

    static uint64_t hash(const config::Endpoint& endpoint);

  private:
    Mailbox mailbox_;
};

}  // namespace pgplex::cluster
