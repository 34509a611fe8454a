// From the data path to the control plane without a lock: a small table of 64-bit values
// that any thread posts by compare-and-swap and the monitor thread empties by exchange, waking
// it through its eventfd. A post that finds the table full is dropped (callers say what that
// costs them); a value already waiting is not posted twice. 0 is never a value.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace pgplex::cluster {

class Mailbox {
  public:
    // Any thread. False when the table was full (the value is dropped) or value is 0.
    bool post(uint64_t value);
    // The monitor thread: every value posted since the last take.
    std::vector<uint64_t> take();
    // The monitor's eventfd, or -1 (before it starts, after it stops).
    void attach(int wake_fd) { wake_fd_.store(wake_fd, std::memory_order_release); }

  private:
    static constexpr size_t slots = 64;
    std::array<std::atomic<uint64_t>, slots> slots_{};
    std::atomic<int> wake_fd_{-1};
};

}  // namespace pgplex::cluster
