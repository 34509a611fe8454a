// Where the cancels of clients handed over by an earlier pgplex go (client_handover.h):
// their BackendKeyData was made there, so the process id their CancelRequests carry names
// a worker and slot of the old process. Keyed by (pid, key), valued by (worker, slot) here.
//
// Lock-free, as everything workers share: open addressing over atomics, written by the
// worker that adopts a client (insert) or sees it leave (erase), read by any worker that
// takes a CancelRequest. A key is written before its value, so a reader that sees the key
// with no value yet treats it as absent; an erased entry becomes a tombstone that lookups
// probe past and inserts reuse. Made only when a takeover brings clients.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace pgplex::pool {

class MovedCancels {
  public:
    static constexpr uint64_t empty = 0;
    static constexpr uint64_t tombstone = ~uint64_t(0);

    explicit MovedCancels(uint32_t capacity_log2 = 17)
        : mask_((uint64_t(1) << capacity_log2) - 1),
          entries_(std::make_unique<Entry[]>(mask_ + 1)) {}

    static uint64_t key_of(uint32_t pid, uint32_t key) {
        // pids are never 0 (base/limits.h): no real key is `empty` or `tombstone`.
        return uint64_t(pid) << 32 | key;
    }

    // False when the table is full (the client's cancels then find nothing).
    bool insert(uint64_t key, uint64_t value) {
        for (uint64_t probe = 0, at = hash(key); probe <= mask_; ++probe, at = (at + 1) & mask_) {
            Entry& entry = entries_[at];
            uint64_t seen = entry.key.load(std::memory_order_acquire);
            if (seen == key) {
                entry.value.store(value + 1, std::memory_order_release);
                return true;
            }
            if ((seen == empty || seen == tombstone) &&
                entry.key.compare_exchange_strong(seen, key, std::memory_order_acq_rel)) {
                entry.value.store(value + 1, std::memory_order_release);
                return true;
            }
        }
        return false;
    }

    // The value, or false when absent.
    bool find(uint64_t key, uint64_t& value) const {
        for (uint64_t probe = 0, at = hash(key); probe <= mask_; ++probe, at = (at + 1) & mask_) {
            const Entry& entry = entries_[at];
            uint64_t seen = entry.key.load(std::memory_order_acquire);
            if (seen == empty) return false;
            if (seen != key) continue;
            uint64_t stored = entry.value.load(std::memory_order_acquire);
            if (stored == 0) return false;
            value = stored - 1;
            return true;
        }
        return false;
    }

    // Erases the entry if it still holds `value`.
    void erase(uint64_t key, uint64_t value) {
        for (uint64_t probe = 0, at = hash(key); probe <= mask_; ++probe, at = (at + 1) & mask_) {
            Entry& entry = entries_[at];
            uint64_t seen = entry.key.load(std::memory_order_acquire);
            if (seen == empty) return;
            if (seen != key) continue;
            uint64_t expected = value + 1;
            if (entry.value.compare_exchange_strong(expected, 0, std::memory_order_acq_rel))
                entry.key.store(tombstone, std::memory_order_release);
            return;
        }
    }

  private:
    struct Entry {
        std::atomic<uint64_t> key{empty};
        std::atomic<uint64_t> value{0};  // value + 1; 0: none (yet)
    };
    uint64_t hash(uint64_t key) const {
        key ^= key >> 33;
        key *= 0xff51afd7ed558ccdull;
        key ^= key >> 33;
        return key & mask_;
    }
    uint64_t mask_;
    std::unique_ptr<Entry[]> entries_;
};

}  // namespace pgplex::pool
