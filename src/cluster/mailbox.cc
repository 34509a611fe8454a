// See mailbox.h.
#include "pgplex/cluster/mailbox.h"

#include <unistd.h>

namespace pgplex::cluster {

bool Mailbox::post(uint64_t value) {
    if (value == 0) return false;
    size_t start = (value ^ value >> 29) % slots;
    bool placed = false;
    for (size_t i = 0; i < slots && !placed; ++i) {
        std::atomic<uint64_t>& slot = slots_[(start + i) % slots];
        uint64_t seen = slot.load(std::memory_order_acquire);
        if (seen == value) return true;  // waiting already: its wake is on its way
        if (seen == 0)
            placed = slot.compare_exchange_strong(seen, value, std::memory_order_acq_rel);
        if (!placed && seen == value) return true;
    }
    int fd = wake_fd_.load(std::memory_order_acquire);
    if (!placed) return false;
    if (fd < 0) return true;
    uint64_t one = 1;
    ssize_t wrote = ::write(fd, &one, sizeof one);
    (void)wrote;  // a full counter still wakes the monitor
    return true;
}

std::vector<uint64_t> Mailbox::take() {
    std::vector<uint64_t> out;
    for (std::atomic<uint64_t>& slot : slots_) {
        uint64_t value = slot.exchange(0, std::memory_order_acq_rel);
        if (value != 0) out.push_back(value);
    }
    return out;
}

}  // namespace pgplex::cluster
