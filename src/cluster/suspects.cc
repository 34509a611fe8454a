// See suspects.h.
#include "pgplex/cluster/suspects.h"

#include <unistd.h>
#include <xxhash.h>

#include <string>

namespace pgplex::cluster {

uint64_t Suspects::hash(const config::Endpoint& endpoint) {
    std::string name = endpoint.to_string();
    uint64_t value = XXH3_64bits(name.data(), name.size());
    return value == 0 ? 1 : value;  // 0 marks an empty slot
}

void Suspects::report(const config::Endpoint& endpoint) {
    uint64_t value = hash(endpoint);
    size_t start = value % slots;
    bool placed = false;
    for (size_t i = 0; i < slots && !placed; ++i) {
        std::atomic<uint64_t>& slot = slots_[(start + i) % slots];
        uint64_t seen = slot.load(std::memory_order_acquire);
        if (seen == value) return;  // reported already, not yet taken: the wake is on its way
        if (seen == 0)
            placed = slot.compare_exchange_strong(seen, value, std::memory_order_acq_rel);
        if (!placed && seen == value) return;
    }
    int fd = wake_fd_.load(std::memory_order_acquire);
    if (!placed || fd < 0) return;
    uint64_t one = 1;
    ssize_t wrote = ::write(fd, &one, sizeof one);
    (void)wrote;  // a full counter still wakes the monitor
}

std::vector<uint64_t> Suspects::take() {
    std::vector<uint64_t> out;
    for (std::atomic<uint64_t>& slot : slots_) {
        uint64_t value = slot.exchange(0, std::memory_order_acq_rel);
        if (value != 0) out.push_back(value);
    }
    return out;
}

}  // namespace pgplex::cluster
