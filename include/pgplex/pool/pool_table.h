// The pool table: every pool of the process, shared by all workers, lock-free.
//
// A fixed-size open-addressing table of atomic pointers keyed by an xxHash of everything
// that makes two server connections interchangeable: node, dbname, user, password and the
// startup parameters. Pools are created on first use by a compare-and-swap into an empty
// slot and never removed (the table is sized at start and never grows), so a pointer to a
// pool stays valid for the life of the process and readers need no lock or hazard scheme.
// A pool's id is its slot: fixed before the pool is published, never taken by another pool,
// and below the capacity that sizes each worker's per-pool state.
// Counters shared across workers are atomics on the pool; idle servers and waiting clients
// live per worker (pool/pool.h) because each belongs to one ring.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/base/histogram.h"
#include "pgplex/config/config.h"
#include "pgplex/pool/budget.h"
#include "pgplex/tls/scram.h"

namespace pgplex::pool {

inline constexpr uint32_t waiter_mask_words = 4;  // 256 workers

// How to reach and log in to the servers of one pool. Immutable once the pool exists.
struct Target {
    std::string alias;  // for logs and errors
    // The database its server connections count against (max_db_connections, budget.h):
    // the alias's name, or the client's database name under [databases."*"]. Pools of two
    // aliases are apart, as PgBouncer's are, so each alias's limit holds.
    std::string database;
    config::Endpoint endpoint;
    std::string dbname;
    std::string user;
    std::string password;  // plain, "md5..." or a SCRAM secret; may be empty
    std::vector<std::pair<std::string, std::string>> startup_parameters;
    // A service with dest = "direct": each client its own server, closed when it leaves.
    bool direct = false;
    // TLS toward the servers: the alias's, cluster's or node's settings; null: [pgplex]'s.
    std::shared_ptr<const config::ServerTls> server_tls;
};

uint64_t target_key(const Target& target);

// PgBouncer's per-pool statistics (SHOW STATS), counted since start. Times are in
// microseconds, as PgBouncer's, measured on the worker's clock (milliseconds).
enum class Stat : uint8_t {
    ServerAssignments,  // a server lent to a client (total_server_assignment_count)
    Transactions,       // a ReadyForQuery that reports idle
    Queries,            // every ReadyForQuery: one Query, or one extended-protocol Sync
    ReceivedBytes,      // from clients, forwarded to servers
    SentBytes,          // from servers, forwarded to clients
    TransactionUs,      // from a transaction's first request to its idle ReadyForQuery
    QueryUs,            // from a request to its ReadyForQuery
    WaitUs,             // clients waiting for a server to be lent
};
inline constexpr size_t stat_count = size_t(Stat::WaitUs) + 1;
using StatValues = std::array<uint64_t, stat_count>;

struct Pool {
    uint32_t id = 0;
    uint64_t key = 0;
    Target target;
    std::atomic<int> waiting{0};  // clients waiting for a server, all workers
    // The budgets its servers count against, set before the pool is published and never
    // changed: a place is granted only if each of them has room too (budget.h).
    Budget* database_budget = nullptr;
    Budget* user_budget = nullptr;
    Budget* node_budget = nullptr;
    std::atomic<int> reserve_limit{0};        // reserve_pool_size, as size_limit
    std::atomic<int> min_size{0};             // min_pool_size (at most size_limit), likewise
    std::atomic<int64_t> login_failed_ms{0};  // when a server login last failed; 0: never
    std::atomic<bool> paused{false};          // PAUSE of its database (admin/console.h)
    // RECONNECT of its database: servers opened before this (worker clock, ms) close as soon
    // as they are released or found idle; 0: none.
    std::atomic<int64_t> reconnect_before_ms{0};
    std::array<std::atomic<uint64_t>, waiter_mask_words> waiter_workers{};
    std::array<std::atomic<uint64_t>, waiter_mask_words> idle_workers{};  // idle servers there
    // SCRAM keys learnt from a client that proved the password of target.user; they let
    // pgplex log in when the auth file holds only the SCRAM secret.
    std::atomic<bool> scram_keys_ready{false};
    tls::scram::Key scram_client_key{};
    tls::scram::Key scram_server_key{};
    // Relaxed adds from every worker: a counter is never read together with another, and a
    // SHOW that misses an add in flight shows it the next time.
    std::array<std::atomic<uint64_t>, stat_count> stats{};
    // The totals at the last two stats_period boundaries (PoolTable::roll_stats).
    std::array<std::atomic<uint64_t>, stat_count> stats_newer{}, stats_older{};
    // The same times one by one, for /metrics' histograms: each query (as Stat::QueryUs),
    // each transaction (Stat::TransactionUs) and each lending (Stat::WaitUs, 0 for a client
    // that did not wait, so its count is Stat::ServerAssignments).
    base::Histogram query_time, transaction_time, wait_time;

    void count(Stat stat, uint64_t value) {
        stats[size_t(stat)].fetch_add(value, std::memory_order_relaxed);
    }
    StatValues read(const std::array<std::atomic<uint64_t>, stat_count>& values) const;

    // Server connections of any state, all workers.
    int servers() const { return int(uint32_t(places_.load(std::memory_order_acquire))); }
    // pool_size from the newest config seen at login.
    int size_limit() const { return int(places_.load(std::memory_order_acquire) >> 32); }
    // Lowering the limit closes no server: places above it are given back as their servers
    // close, and no new one is granted until the pool is below the limit.
    void set_size_limit(int limit);
    // max_db_connections and max_user_connections of this config on its budgets (a login
    // brings a budget made since the last reload under the newest config).
    void set_budget_limits(const config::Config& config);
    // Takes one server place if the pool is below its limit at that instant.
    [[nodiscard]] bool try_reserve_server();
    void release_server();
    // Whether a budget of the pool holds more servers than its limit now (a reload lowered
    // it, or gossip gave this appliance a smaller share of a node): a server coming back
    // should close rather than idle, so the places go where the limit now puts them.
    bool over_budget() const;
    // Takes one place if fewer than `limit` servers exist (and the pool is below its size).
    [[nodiscard]] bool try_reserve_below(int limit);
    // Takes one of the reserve_pool_size places past pool_size; the caller has decided that
    // a client waited long enough to deserve it.
    [[nodiscard]] bool try_reserve_extra();
    // Gives one place back if more than `floor` servers exist (one compare-and-swap, so
    // racing threads cannot take the pool below the floor together).
    [[nodiscard]] bool try_release_above(int floor);
    void mark_waiter_worker(uint32_t worker);
    void clear_waiter_worker(uint32_t worker);
    void mark_idle_worker(uint32_t worker);
    void clear_idle_worker(uint32_t worker);
    void publish_scram_keys(const tls::scram::Key& client_key, const tls::scram::Key& server_key);

  private:
    // Takes a place in each budget, or none (false).
    [[nodiscard]] bool take_budgets();
    void give_back_budgets();
    // size_limit in the high half, servers in the low: one word, so a reservation is checked
    // against the limit in force when it is granted. With two words, a reservation that read
    // the limit just before a reload lowered it was still granted after, above the new limit.
    std::atomic<uint64_t> places_{0};
};

class PoolTable {
  public:
    explicit PoolTable(uint32_t capacity);
    ~PoolTable();
    PoolTable(const PoolTable&) = delete;
    PoolTable& operator=(const PoolTable&) = delete;

    // The pool for this target, created if new; null only when every slot holds another
    // pool, and then for good.
    Pool* find_or_create(const Target& target);
    // A pool's id is the slot it was created in, below capacity(); ids are not dense.
    Pool* by_id(uint32_t id) const {
        return id < capacity_ ? slots_[id].load(std::memory_order_acquire) : nullptr;
    }
    uint32_t capacity() const { return capacity_; }
    uint32_t count() const { return count_.load(std::memory_order_acquire); }  // pools made
    // Every stats_period, from one thread: each pool's totals become its newest snapshot,
    // that one its older. The avg_* columns are over [older_stamp_ms, now], as PgBouncer's.
    void roll_stats(int64_t now_ms);
    std::atomic<int64_t> newer_stamp_ms{0}, older_stamp_ms{0};
    // The budgets of every database, user and node met (budget.h).
    BudgetTable budgets;

  private:
    std::unique_ptr<Pool> make_pool(uint64_t key, const Target& target);
    uint32_t capacity_;
    std::unique_ptr<std::atomic<Pool*>[]> slots_;
    std::atomic<uint32_t> count_{0};
};

}  // namespace pgplex::pool
