// See pool_table.h.
#include "pgplex/pool/pool_table.h"

#include <xxhash.h>

#include "pgplex/base/assert.h"

namespace pgplex::pool {

namespace {

void hash_field(XXH3_state_t* state, std::string_view text) {
    uint32_t size = uint32_t(text.size());
    XXH3_64bits_update(state, &size, sizeof size);
    XXH3_64bits_update(state, text.data(), text.size());
}

}  // namespace

uint64_t target_key(const Target& target) {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    hash_field(state, target.endpoint.host);
    uint16_t port = target.endpoint.port;
    XXH3_64bits_update(state, &port, sizeof port);
    hash_field(state, target.dbname);
    hash_field(state, target.user);
    hash_field(state, target.password);
    for (const auto& [name, value] : target.startup_parameters) {
        hash_field(state, name);
        hash_field(state, value);
    }
    uint64_t key = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return key == 0 ? 1 : key;
}

bool Pool::try_reserve_below(int limit) {
    int current = servers.load(std::memory_order_acquire);
    while (current < limit) {
        if (servers.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel))
            return true;
    }
    return false;
}

bool Pool::try_release_above(int floor) {
    int current = servers.load(std::memory_order_acquire);
    while (current > floor) {
        if (servers.compare_exchange_weak(current, current - 1, std::memory_order_acq_rel))
            return true;
    }
    return false;
}

void Pool::mark_waiter_worker(uint32_t worker) {
    waiter_workers[worker / 64].fetch_or(uint64_t(1) << (worker % 64), std::memory_order_acq_rel);
}

void Pool::clear_waiter_worker(uint32_t worker) {
    waiter_workers[worker / 64].fetch_and(~(uint64_t(1) << (worker % 64)),
                                          std::memory_order_acq_rel);
}

void Pool::mark_idle_worker(uint32_t worker) {
    idle_workers[worker / 64].fetch_or(uint64_t(1) << (worker % 64), std::memory_order_acq_rel);
}

void Pool::clear_idle_worker(uint32_t worker) {
    idle_workers[worker / 64].fetch_and(~(uint64_t(1) << (worker % 64)), std::memory_order_acq_rel);
}

void Pool::publish_scram_keys(const tls::scram::Key& client_key,
                              const tls::scram::Key& server_key) {
    // First writer wins; the keys for one secret are always the same, so a lost race is
    // harmless, but readers must never see a half-written key.
    bool expected = false;
    static std::atomic<bool> writing{false};
    if (scram_keys_ready.load(std::memory_order_acquire)) return;
    if (!writing.compare_exchange_strong(expected, true)) return;
    if (!scram_keys_ready.load(std::memory_order_acquire)) {
        scram_client_key = client_key;
        scram_server_key = server_key;
        scram_keys_ready.store(true, std::memory_order_release);
    }
    writing.store(false, std::memory_order_release);
}

PoolTable::PoolTable(uint32_t capacity)
    : capacity_(capacity),
      slots_(new std::atomic<Pool*>[capacity]),
      by_id_(new std::atomic<Pool*>[capacity]) {
    PGPLEX_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    for (uint32_t i = 0; i < capacity; ++i) {
        slots_[i].store(nullptr, std::memory_order_relaxed);
        by_id_[i].store(nullptr, std::memory_order_relaxed);
    }
}

PoolTable::~PoolTable() {
    for (uint32_t i = 0; i < capacity_; ++i) delete slots_[i].load(std::memory_order_acquire);
}

Pool* PoolTable::find_or_create(const Target& target) {
    uint64_t key = target_key(target);
    uint32_t mask = capacity_ - 1;
    std::unique_ptr<Pool> fresh;
    for (uint32_t probe = 0; probe < capacity_; ++probe) {
        std::atomic<Pool*>& slot = slots_[(key + probe) & mask];
        Pool* existing = slot.load(std::memory_order_acquire);
        if (existing != nullptr) {
            if (existing->key == key) return existing;
            continue;
        }
        if (!fresh) {
            // The id is taken before the pool is visible, so no reader sees it unset; an
            // id lost to a race that another thread won stays unused.
            uint32_t id = next_id_.fetch_add(1, std::memory_order_acq_rel);
            if (id >= capacity_) return nullptr;
            fresh = std::make_unique<Pool>();
            fresh->id = id;
            fresh->key = key;
            fresh->target = target;
            by_id_[id].store(fresh.get(), std::memory_order_release);
        }
        if (slot.compare_exchange_strong(existing, fresh.get(), std::memory_order_acq_rel))
            return fresh.release();
        if (existing->key == key) {
            by_id_[fresh->id].store(nullptr, std::memory_order_release);
            return existing;
        }
    }
    if (fresh) by_id_[fresh->id].store(nullptr, std::memory_order_release);
    return nullptr;
}

}  // namespace pgplex::pool
