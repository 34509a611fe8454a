// What the rest of pgplex asks the monitor thread to do to a cluster: an operator's UNFENCE or
// SWITCHOVER typed in the management database (on a worker), or a promotion the gossip engine
// decided. The data path never calls into the control plane and never locks, so a request is
// dropped into one of a few fixed slots by compare-and-swap, like suspects.h, and the monitor
// takes the slots when its eventfd wakes it. Requests are rare (an operator's command), so a
// full table answers "busy" rather than growing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::cluster {

enum class RequestKind : uint8_t {
    Unfence,     // UNFENCE cluster node: the operator re-adds a fenced node
    Switchover,  // SWITCHOVER cluster [TO node]: node empty lets the monitor choose
    Promote,     // the gossip engine's Promotion: promote node now, whatever the monitor thinks
};
const char* to_string(RequestKind kind);

struct Request {
    RequestKind kind = RequestKind::Unfence;
    std::string cluster;
    std::string node;
};

class Requests {
  public:
    // A node is "host:port" or a Unix socket directory and port: this is room enough.
    static constexpr size_t text_bytes_max = 256;

    // Any thread, lock-free. False when the names are too long or every slot is taken.
    bool post(RequestKind kind, std::string_view cluster, std::string_view node);
    // The monitor thread: the requests posted since the last take, oldest slot first.
    std::vector<Request> take();
    // The monitor's eventfd, or -1.
    void attach(int wake_fd) { wake_fd_.store(wake_fd, std::memory_order_release); }

  private:
    // A slot's life: Empty → Writing (one poster owns it) → Ready → Empty (taken).
    enum SlotState : uint8_t {
        Empty,    // free for a poster
        Writing,  // a poster is filling it; the monitor skips it
        Ready,    // filled; the monitor takes it
    };
    struct Slot {
        std::atomic<uint8_t> state{Empty};
        RequestKind kind = RequestKind::Unfence;
        uint16_t cluster_bytes = 0;
        uint16_t node_bytes = 0;
        char cluster[text_bytes_max];
        char node[text_bytes_max];
    };
    static constexpr size_t slots = 8;
    std::array<Slot, slots> slots_{};
    std::atomic<int> wake_fd_{-1};
};

}  // namespace pgplex::cluster
