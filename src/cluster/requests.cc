// See requests.h.
#include "pgplex/cluster/requests.h"

#include <unistd.h>

#include <cstring>

namespace pgplex::cluster {

const char* to_string(RequestKind kind) {
    switch (kind) {
        case RequestKind::Unfence:
            return "unfence";
        case RequestKind::Switchover:
            return "switchover";
        case RequestKind::Promote:
            return "promote";
    }
    return "unknown";
}

bool Requests::post(RequestKind kind, std::string_view cluster, std::string_view node) {
    if (cluster.size() > text_bytes_max || node.size() > text_bytes_max) return false;
    for (Slot& slot : slots_) {
        uint8_t expected = Empty;
        if (!slot.state.compare_exchange_strong(expected, Writing, std::memory_order_acquire))
            continue;
        slot.kind = kind;
        slot.cluster_bytes = uint16_t(cluster.size());
        slot.node_bytes = uint16_t(node.size());
        std::memcpy(slot.cluster, cluster.data(), cluster.size());
        std::memcpy(slot.node, node.data(), node.size());
        slot.state.store(Ready, std::memory_order_release);
        int fd = wake_fd_.load(std::memory_order_acquire);
        if (fd >= 0) {
            uint64_t one = 1;
            ssize_t wrote = ::write(fd, &one, sizeof one);
            (void)wrote;  // a full counter still wakes the monitor
        }
        return true;
    }
    return false;
}

std::vector<Request> Requests::take() {
    std::vector<Request> out;
    for (Slot& slot : slots_) {
        if (slot.state.load(std::memory_order_acquire) != Ready) continue;
        Request request;
        request.kind = slot.kind;
        request.cluster.assign(slot.cluster, slot.cluster_bytes);
        request.node.assign(slot.node, slot.node_bytes);
        slot.state.store(Empty, std::memory_order_release);
        out.push_back(std::move(request));
    }
    return out;
}

}  // namespace pgplex::cluster
