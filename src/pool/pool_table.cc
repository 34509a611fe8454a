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

std::string database_of(const Target& target) {
    return target.database.empty() ? target.alias : target.database;
}

}  // namespace

std::unique_ptr<Pool> PoolTable::make_pool(uint64_t key, const Target& target) {
    auto pool = std::make_unique<Pool>();
    pool->key = key;
    pool->target = target;
    // A full budget table leaves the pool uncounted there, never without servers.
    pool->database_budget = budgets.find_or_create(BudgetKind::Database, database_of(target));
    pool->user_budget = budgets.find_or_create(BudgetKind::User, target.user);
    if (!target.endpoint.host.empty())
        pool->node_budget = budgets.find_or_create(BudgetKind::Node, target.endpoint.to_string());
    return pool;
}

uint64_t target_key(const Target& target) {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    hash_field(state, target.endpoint.host);
    uint16_t port = target.endpoint.port;
    XXH3_64bits_update(state, &port, sizeof port);
    hash_field(state, target.dbname);
    hash_field(state, target.database);
    hash_field(state, target.user);
    hash_field(state, target.password);
    for (const auto& [name, value] : target.startup_parameters) {
        hash_field(state, name);
        hash_field(state, value);
    }
    uint8_t direct = target.direct ? 1 : 0;
    XXH3_64bits_update(state, &direct, 1);
    // Servers reached with other TLS settings are not interchangeable.
    if (target.server_tls) {
        const tls::Settings& tls = target.server_tls->settings;
        uint8_t modes[3] = {uint8_t(tls.mode), uint8_t(target.server_tls->channel_binding),
                            uint8_t(target.server_tls->negotiation)};
        XXH3_64bits_update(state, modes, sizeof modes);
        for (const std::string* field : {&tls.cert_file, &tls.key_file, &tls.ca_file,
                                         &tls.protocols, &tls.ciphers, &tls.tls13_ciphers})
            hash_field(state, *field);
    }
    uint64_t key = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return key == 0 ? 1 : key;
}

void Pool::set_size_limit(int limit) {
    PGPLEX_ASSERT(limit >= 0);
    uint64_t word = places_.load(std::memory_order_acquire);
    // Logins store the limit all the time; most find it unchanged and need not write.
    while (int(word >> 32) != limit) {
        uint64_t wanted = uint64_t(uint32_t(limit)) << 32 | uint32_t(word);
        if (places_.compare_exchange_weak(word, wanted, std::memory_order_acq_rel)) return;
    }
}

void Pool::set_budget_limits(const config::Config& config) {
    if (database_budget != nullptr)
        database_budget->servers.set_limit(
            limit_of(config.max_db_connections_of(database_budget->name)));
    if (user_budget != nullptr)
        user_budget->servers.set_limit(limit_of(config.max_user_connections_of(target.user)));
}

bool Pool::over_budget() const {
    for (const Budget* budget : {database_budget, user_budget, node_budget}) {
        if (budget == nullptr) continue;
        int limit = budget->servers.limit();
        if (limit != no_limit && budget->servers.count() > limit) return true;
    }
    return false;
}

// The pool's place first, then its budgets': a place the budgets refuse is given back at
// once, so a pool's servers never count in a budget they were not granted by.
bool Pool::take_budgets() {
    Budget* budgets[] = {database_budget, user_budget, node_budget};
    for (size_t i = 0; i < std::size(budgets); ++i) {
        if (budgets[i] == nullptr || budgets[i]->servers.try_take()) continue;
        while (i-- > 0)
            if (budgets[i] != nullptr) budgets[i]->servers.give_back();
        return false;
    }
    return true;
}

void Pool::give_back_budgets() {
    for (Budget* budget : {database_budget, user_budget, node_budget})
        if (budget != nullptr) budget->servers.give_back();
}

bool Pool::try_reserve_server() {
    uint64_t word = places_.load(std::memory_order_acquire);
    // servers < size_limit <= INT_MAX, so the increment never carries into the limit.
    while (uint32_t(word) < uint32_t(word >> 32)) {
        if (!places_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) continue;
        if (take_budgets()) return true;
        places_.fetch_sub(1, std::memory_order_acq_rel);
        return false;
    }
    return false;
}

bool Pool::try_reserve_below(int limit) {
    uint64_t word = places_.load(std::memory_order_acquire);
    while (int64_t(uint32_t(word)) < limit && uint32_t(word) < uint32_t(word >> 32)) {
        if (!places_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) continue;
        if (take_budgets()) return true;
        places_.fetch_sub(1, std::memory_order_acq_rel);
        return false;
    }
    return false;
}

bool Pool::try_reserve_extra() {
    uint64_t word = places_.load(std::memory_order_acquire);
    int64_t extra = reserve_limit.load(std::memory_order_acquire);
    while (int64_t(uint32_t(word)) < int64_t(word >> 32) + extra) {
        if (!places_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) continue;
        if (take_budgets()) return true;
        places_.fetch_sub(1, std::memory_order_acq_rel);
        return false;
    }
    return false;
}

bool Pool::try_release_above(int floor) {
    uint64_t word = places_.load(std::memory_order_acquire);
    while (int64_t(uint32_t(word)) > int64_t(floor)) {
        if (!places_.compare_exchange_weak(word, word - 1, std::memory_order_acq_rel)) continue;
        give_back_budgets();
        return true;
    }
    return false;
}

void Pool::release_server() {
    uint64_t before = places_.fetch_sub(1, std::memory_order_acq_rel);
    PGPLEX_ASSERT(uint32_t(before) > 0);
    give_back_budgets();
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

// Each pool names at most three budgets.
PoolTable::PoolTable(uint32_t capacity)
    : budgets(capacity * 4), capacity_(capacity), slots_(new std::atomic<Pool*>[capacity]) {
    PGPLEX_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    for (uint32_t i = 0; i < capacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
}

PoolTable::~PoolTable() {
    for (uint32_t i = 0; i < capacity_; ++i) delete slots_[i].load(std::memory_order_acquire);
}

Pool* PoolTable::find_or_create(const Target& target) {
    uint64_t key = target_key(target);
    uint32_t mask = capacity_ - 1;
    std::unique_ptr<Pool> fresh;
    for (uint32_t probe = 0; probe < capacity_; ++probe) {
        uint32_t index = uint32_t(key + probe) & mask;
        std::atomic<Pool*>& slot = slots_[index];
        Pool* existing = slot.load(std::memory_order_acquire);
        if (existing == nullptr) {
            if (!fresh) fresh = make_pool(key, target);
            // The id is the slot, set before the pool is visible: a lost race costs no id.
            fresh->id = index;
            if (slot.compare_exchange_strong(existing, fresh.get(), std::memory_order_acq_rel)) {
                count_.fetch_add(1, std::memory_order_acq_rel);
                return fresh.release();
            }
        }
        if (existing->key == key) return existing;
    }
    return nullptr;
}

StatValues Pool::read(const std::array<std::atomic<uint64_t>, stat_count>& values) const {
    StatValues out{};
    for (size_t i = 0; i < stat_count; ++i) out[i] = values[i].load(std::memory_order_relaxed);
    return out;
}

void PoolTable::roll_stats(int64_t now_ms) {
    for (uint32_t id = 0; id < capacity_; ++id) {
        Pool* pool = by_id(id);
        if (pool == nullptr) continue;
        for (size_t i = 0; i < stat_count; ++i) {
            pool->stats_older[i].store(pool->stats_newer[i].load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
            pool->stats_newer[i].store(pool->stats[i].load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
        }
    }
    older_stamp_ms.store(newer_stamp_ms.load(std::memory_order_relaxed), std::memory_order_relaxed);
    newer_stamp_ms.store(now_ms, std::memory_order_relaxed);
}

}  // namespace pgplex::pool
