// Nodes the data path found failing, for the monitor to check at once (issue: a failover is
// noticed at the next check otherwise, up to `inter` later). A worker whose connection to a
// node is refused or lost reports the node's address; the monitor thread takes the reports
// when it wakes and starts a check of each such node now (fastinter then applies while its
// health changes). Lock-free, as the data path must be: a small table of address hashes, set
// by compare-and-swap and emptied by exchange; a report that finds the table full is dropped
// (the next failure reports again, and the regular check still comes).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "pgplex/config/config.h"

namespace pgplex::cluster {

class Suspects {
  public:
    // Any thread. Wakes the monitor through its eventfd when one is attached.
    void report(const config::Endpoint& endpoint);
    // The monitor thread: the hashes reported since the last take.
    std::vector<uint64_t> take();
    // The monitor's eventfd, or -1 (before it starts, after it stops).
    void attach(int wake_fd) { wake_fd_.store(wake_fd, std::memory_order_release); }

    static uint64_t hash(const config::Endpoint& endpoint);

  private:
    static constexpr size_t slots = 64;
    std::array<std::atomic<uint64_t>, slots> slots_{};
    std::atomic<int> wake_fd_{-1};
};

}  // namespace pgplex::cluster
