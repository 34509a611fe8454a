// Connection budgets shared by many pools: PgBouncer's max_db_connections and
// max_user_connections (server connections per database and per server user, over all their
// pools), max_db_client_connections and max_user_client_connections (clients logged in per
// database and per user), and a node's max_db_connections (server connections to one node
// over every pool, split between the appliances of a site by gossip).
//
// Each count is one atomic word, {limit + 1 << 32 | count} (0 << 32: no limit), so a place is taken
// by one compare-and-swap against the limit in force when it is granted, from any worker, with no
// lock (the pool's own places work the same way, pool_table.h). Budgets live in a fixed
// table keyed by (kind, name), created on first use and never removed, like pools, so a
// pool keeps raw pointers to its three server budgets for its whole life.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::config {
struct Config;
}

namespace pgplex::pool {

enum class BudgetKind : uint8_t {
    Database,  // an alias (its pools' server connections; its clients)
    User,      // a server user (its pools' server connections); a login user (its clients)
    Node,      // a node's endpoint, "host:port": server connections to it over every pool
};

const char* to_string(BudgetKind kind);

inline constexpr int no_limit = -1;
// A limit as the config writes it (0: none) as Counted takes it.
inline int limit_of(int configured) {
    return configured > 0 ? configured : no_limit;
}

// One counted limit. With no_limit the count is still kept, for SHOW.
class Counted {
  public:
    int count() const { return int(uint32_t(word_.load(std::memory_order_acquire))); }
    int limit() const;  // no_limit: none
    // A limit below the count takes nothing away: places above it are given back as they
    // end, and none is granted until the count is below it.
    void set_limit(int limit);
    // Takes one place if the count is below the limit at that instant (always, with none).
    [[nodiscard]] bool try_take();
    // Takes one place whatever the limit (a client counted before it is checked).
    int take();  // the count with this one
    void give_back();

  private:
    std::atomic<uint64_t> word_{0};
};

struct Budget {
    BudgetKind kind = BudgetKind::Database;
    std::string name;
    uint64_t key = 0;
    Counted servers;  // server connections (any state) of the pools it covers
    Counted clients;  // clients logged in (Database and User budgets)
};

class BudgetTable {
  public:
    explicit BudgetTable(uint32_t capacity);
    ~BudgetTable();
    BudgetTable(const BudgetTable&) = delete;
    BudgetTable& operator=(const BudgetTable&) = delete;

    // The budget of (kind, name), created if new; null only when the table is full.
    Budget* find_or_create(BudgetKind kind, std::string_view name);
    Budget* find(BudgetKind kind, std::string_view name) const;
    Budget* at(uint32_t index) const {
        return index < capacity_ ? slots_[index].load(std::memory_order_acquire) : nullptr;
    }
    uint32_t capacity() const { return capacity_; }

  private:
    uint32_t capacity_;
    std::unique_ptr<std::atomic<Budget*>[]> slots_;
};

// The Database and User server limits a config sets for every budget that exists (a reload
// applies at once, not at the next login). Node budgets are the control thread's
// (node_limit below).
void apply_config_limits(BudgetTable& budgets, const config::Config& config);

// Each node's max_db_connections on its budget: the whole of it without [gossip], else
// what node_limit gives an appliance that has heard no majority yet (gossip then updates
// it each round). A node without one has no limit.
void apply_node_budgets(BudgetTable& budgets, const config::Config& config);

// A client's place in a client budget, given back when the holder is destroyed (the
// client's session ends with it).
class ClientCharge {
  public:
    ClientCharge() = default;
    ~ClientCharge() { release(); }
    ClientCharge(const ClientCharge&) = delete;
    ClientCharge& operator=(const ClientCharge&) = delete;
    // Counts the client in budget's clients; the count with it.
    int take(Budget& budget);
    void release();

  private:
    Budget* budget_ = nullptr;
};

// One appliance's demand on a node, as gossip carries it: servers it holds there and
// clients of its pools there waiting for one. `appliance` is its place in the sorted list of
// configured appliances (config::Gossip::appliances), the same on every appliance.
struct Demand {
    uint32_t appliance = 0;
    int held = 0;
    int waiting = 0;
    int total() const { return held + waiting; }
};

// The share of a node's budget each appliance may use, in the order of `demands` (every
// appliance heard, this one among them; issue 12 item 6): floor(budget x demand / total
// demand), at least 1 for an appliance with demand, 0 without; while the sum is over the
// budget, the largest share (the later appliance on a tie) gives one back, and once all are 1
// the later appliances give theirs. Every appliance computes the same shares from the same
// demands, so they never sum above the budget.
std::vector<int> shares(int budget, std::span<const Demand> demands);

// This appliance's limit on a node: its share with a majority of the appliances heard, else
// budget / appliances (configured; the first appliances get 1 when that is 0 and the budget
// allows), then capped at budget - what the others hold (servers another appliance has not
// yet given back are not taken twice). `self` indexes demands.
int node_limit(int budget, std::span<const Demand> demands, size_t self, int appliances,
               bool majority);

}  // namespace pgplex::pool
