// See budget.h.
#include "pgplex/pool/budget.h"

#include <xxhash.h>

#include <algorithm>

#include "pgplex/base/assert.h"
#include "pgplex/config/config.h"

namespace pgplex::pool {

const char* to_string(BudgetKind kind) {
    switch (kind) {
        case BudgetKind::Database:
            return "database";
        case BudgetKind::User:
            return "user";
        case BudgetKind::Node:
            return "node";
    }
    return "?";
}

int Counted::limit() const {
    uint64_t word = word_.load(std::memory_order_acquire);
    return (word >> 32) == 0 ? no_limit : int((word >> 32) - 1);
}

void Counted::set_limit(int limit) {
    PGPLEX_ASSERT(limit >= no_limit);
    uint64_t high = uint64_t(uint32_t(limit + 1)) << 32;
    uint64_t word = word_.load(std::memory_order_acquire);
    // Logins store the limit all the time; most find it unchanged and need not write.
    while ((word & ~uint64_t(0xffffffffu)) != high) {
        if (word_.compare_exchange_weak(word, high | uint32_t(word), std::memory_order_acq_rel))
            return;
    }
}

bool Counted::try_take() {
    uint64_t word = word_.load(std::memory_order_acquire);
    while (true) {
        uint64_t high = word >> 32;
        if (high != 0 && uint64_t(uint32_t(word)) >= high - 1) return false;
        if (word_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) return true;
    }
}

int Counted::take() {
    return int(uint32_t(word_.fetch_add(1, std::memory_order_acq_rel))) + 1;
}

void Counted::give_back() {
    uint64_t before = word_.fetch_sub(1, std::memory_order_acq_rel);
    PGPLEX_ASSERT(uint32_t(before) > 0);
}

namespace {

uint64_t budget_key(BudgetKind kind, std::string_view name) {
    uint64_t key = XXH3_64bits_withSeed(name.data(), name.size(), uint64_t(kind) + 1);
    return key == 0 ? 1 : key;
}

}  // namespace

BudgetTable::BudgetTable(uint32_t capacity)
    : capacity_(capacity), slots_(new std::atomic<Budget*>[capacity]) {
    PGPLEX_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    for (uint32_t i = 0; i < capacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
}

BudgetTable::~BudgetTable() {
    for (uint32_t i = 0; i < capacity_; ++i) delete slots_[i].load(std::memory_order_acquire);
}

Budget* BudgetTable::find(BudgetKind kind, std::string_view name) const {
    uint64_t key = budget_key(kind, name);
    for (uint32_t probe = 0; probe < capacity_; ++probe) {
        Budget* existing = slots_[uint32_t(key + probe) & (capacity_ - 1)].load();
        if (existing == nullptr) return nullptr;
        if (existing->key == key && existing->kind == kind && existing->name == name)
            return existing;
    }
    return nullptr;
}

Budget* BudgetTable::find_or_create(BudgetKind kind, std::string_view name) {
    uint64_t key = budget_key(kind, name);
    std::unique_ptr<Budget> fresh;
    for (uint32_t probe = 0; probe < capacity_; ++probe) {
        std::atomic<Budget*>& slot = slots_[uint32_t(key + probe) & (capacity_ - 1)];
        Budget* existing = slot.load(std::memory_order_acquire);
        if (existing == nullptr) {
            if (!fresh) {
                fresh = std::make_unique<Budget>();
                fresh->kind = kind;
                fresh->name = std::string(name);
                fresh->key = key;
            }
            if (slot.compare_exchange_strong(existing, fresh.get(), std::memory_order_acq_rel))
                return fresh.release();
        }
        if (existing->key == key && existing->kind == kind && existing->name == name)
            return existing;
    }
    return nullptr;
}

void apply_config_limits(BudgetTable& budgets, const config::Config& config) {
    for (uint32_t i = 0; i < budgets.capacity(); ++i) {
        Budget* budget = budgets.at(i);
        if (budget == nullptr) continue;
        switch (budget->kind) {
            case BudgetKind::Database:
                budget->servers.set_limit(limit_of(config.max_db_connections_of(budget->name)));
                break;
            case BudgetKind::User:
                budget->servers.set_limit(limit_of(config.max_user_connections_of(budget->name)));
                break;
            case BudgetKind::Node:
                break;
        }
    }
}

void apply_node_budgets(BudgetTable& budgets, const config::Config& config) {
    std::vector<const Budget*> configured;
    int appliances = std::max<int>(1, int(config.gossip.appliances.size()));
    for (const config::Cluster& cluster : config.clusters) {
        for (const config::Node& node : cluster.nodes) {
            int total = node.options.max_db_connections;
            if (total <= 0) continue;
            Budget* budget = budgets.find_or_create(BudgetKind::Node, node.endpoint.to_string());
            if (budget == nullptr) continue;
            // With [gossip] every appliance starts at its static share (they sum to the
            // budget at most), and a reload only lowers what gossip gave it: it grows again
            // in its turn (gossip/budget_share.h).
            Demand self{config.gossip.index, 0, 0};
            int fixed = node_limit(total, std::span<const Demand>(&self, 1), 0, appliances, false);
            int current = budget->servers.limit();
            int limit = !config.gossip.enabled ? total
                        : current == no_limit  ? fixed
                                               : std::min(current, fixed);
            budget->servers.set_limit(limit);
            configured.push_back(budget);
        }
    }
    for (uint32_t i = 0; i < budgets.capacity(); ++i) {
        Budget* budget = budgets.at(i);
        if (budget == nullptr || budget->kind != BudgetKind::Node) continue;
        if (std::find(configured.begin(), configured.end(), budget) == configured.end())
            budget->servers.set_limit(no_limit);
    }
}

int ClientCharge::take(Budget& budget) {
    release();
    budget_ = &budget;
    return budget.clients.take();
}

void ClientCharge::release() {
    if (budget_ != nullptr) budget_->clients.give_back();
    budget_ = nullptr;
}

std::vector<int> shares(int budget, std::span<const Demand> demands) {
    std::vector<int> out(demands.size(), 0);
    int64_t total = 0;
    for (const Demand& demand : demands) total += std::max(0, demand.total());
    if (total == 0 || budget <= 0) return out;
    int64_t sum = 0;
    for (size_t i = 0; i < demands.size(); ++i) {
        int64_t demand = std::max(0, demands[i].total());
        if (demand == 0) continue;
        out[i] = int(std::max<int64_t>(1, int64_t(budget) * demand / total));
        sum += out[i];
    }
    // Over the budget only through the floors of 1: the largest gives back first, then the
    // later appliances (by their place in the configured list) give their 1.
    while (sum > budget) {
        size_t pick = demands.size();
        for (size_t i = 0; i < demands.size(); ++i) {
            if (out[i] == 0) continue;
            bool later = pick == demands.size() || out[i] > out[pick] ||
                         (out[i] == out[pick] && demands[i].appliance > demands[pick].appliance);
            if (later) pick = i;
        }
        PGPLEX_ASSERT(pick < demands.size());
        --out[pick];
        --sum;
    }
    return out;
}

int node_limit(int budget, std::span<const Demand> demands, size_t self, int appliances,
               bool majority) {
    PGPLEX_ASSERT(self < demands.size() && appliances >= 1);
    int share = 0;
    if (majority) {
        share = shares(budget, demands)[self];
    } else {
        share = budget / appliances;
        if (share == 0 && int64_t(demands[self].appliance) < budget) share = 1;
    }
    int64_t others_held = 0;
    for (size_t i = 0; i < demands.size(); ++i)
        if (i != self) others_held += std::max(0, demands[i].held);
    return int(std::clamp<int64_t>(std::min<int64_t>(share, budget - others_held), 0, budget));
}

}  // namespace pgplex::pool
