// The pool table under concurrent lease and return, driven from a seed.
//
// Four threads each run a fixed list of operations drawn from a std::mt19937_64 seeded with
// the run's seed plus the thread's index: find or create the pool of one of 24 targets (more
// than the table holds, so some are refused), take a server place and give it back, move
// servers between idle and leased and clients in and out of the wait queue with the worker
// bits that follow them, and, on the pools a thread owns, grow or shrink the size limit as
// a reload does. A second run puts three threads on one pool while the fourth resizes it.
// Along the way every granted place is checked against a ceiling the limit changes imply
// (class Ceiling); at the end, the table, every counter and every worker bit against what
// the threads hold, and again once they have given everything back.
//
// One draw per operation, whatever its outcome, so what each thread asks for is fixed by the
// seed; what it gets depends on how the scheduler interleaves the threads, which no seed
// fixes. A failure prints its seed: PGPLEX_SEED=<seed> replays the same operations, and may
// need a few runs to meet the same interleaving. Criterion asserts only on the test's own
// thread, so the threads record the first broken invariant and stop; the test asserts after
// joining them.
#include <criterion/criterion.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/pool/pool_table.h"

using pgplex::pool::Pool;
using pgplex::pool::PoolTable;
using pgplex::pool::Target;
using pgplex::pool::target_key;
using pgplex::pool::waiter_mask_words;

namespace {

constexpr uint64_t seed_default = 20240611;
constexpr int thread_count = 4;
constexpr int operations_per_thread = 50000;  // 200,000 in all, well under a second
constexpr uint32_t table_capacity = 16;
constexpr int target_count = 24;  // more targets than the table has slots
constexpr uint32_t worker_count = waiter_mask_words * 64;
constexpr uint32_t workers_per_thread = worker_count / thread_count;
constexpr size_t leases_per_thread_max = 8;  // then a reservation gives one back instead
constexpr std::array<int, 6> size_limits = {0, 1, 2, 3, 5, 8};
static_assert(worker_count % thread_count == 0, "each thread plays as many workers");

// How often each operation is drawn, as cumulative percentages, and on which targets.
struct Mix {
    int find;     // find_or_create
    int reserve;  // take a server place
    int release;  // give one back
    int idle;     // a held server turns idle, or is leased again
    int wait;     // a client starts or stops waiting; above it the owner of the target
                  // resizes (to 97) or tightens its ceiling, and the other threads audit
    int targets;
    int hot_targets;  // half the draws go to these, so that threads contend
};

using Mixes = std::array<Mix, thread_count>;  // one per thread

// All of it, on more targets than the table holds.
constexpr Mix everything = {10, 40, 60, 75, 90, target_count, 4};
// One pool: its owner, thread 0, resizes it while the others take and give back places.
constexpr Mix resizes = {0, 0, 0, 0, 0, 1, 1};
constexpr Mix leases = {0, 50, 100, 100, 100, 1, 1};
constexpr Mixes everything_everywhere = {everything, everything, everything, everything};
constexpr Mixes shrinks_under_load = {resizes, leases, leases, leases};

uint64_t run_seed() {
    const char* text = std::getenv("PGPLEX_SEED");
    return text != nullptr ? std::strtoull(text, nullptr, 0) : seed_default;
}

Target target(int index) {
    static const char* const dbnames[] = {"appdb", "reports", "audit", "billing"};
    Target t;
    t.alias = dbnames[index % 4];
    t.endpoint.host = "127.0.0.1";
    t.endpoint.port = 5432;
    t.dbname = dbnames[index % 4];
    t.user = "u" + std::to_string(index / 4);
    t.password = "secret";
    return t;
}

bool worker_bit(const std::array<std::atomic<uint64_t>, waiter_mask_words>& mask, uint32_t worker) {
    return (mask[worker / 64].load(std::memory_order_acquire) >> (worker % 64)) & 1;
}

// The first broken invariant of a run, kept by whichever thread breaks one first.
class Failure {
  public:
    bool happened() const { return happened_.load(std::memory_order_acquire); }
    const char* text() const { return text_; }

    __attribute__((format(printf, 2, 3))) void record(const char* format, ...) {
        bool expected = false;
        if (!claimed_.compare_exchange_strong(expected, true)) return;
        va_list arguments;
        va_start(arguments, format);
        std::vsnprintf(text_, sizeof text_, format, arguments);
        va_end(arguments);
        happened_.store(true, std::memory_order_release);
    }

  private:
    std::atomic<bool> claimed_{false};
    std::atomic<bool> happened_{false};
    char text_[512] = "";
};

// An upper bound on a pool's servers that holds at every instant if no reservation is
// granted above the limit in force when it is granted. Raised before the limit grows;
// lowered after it shrinks, to the larger of the new limit and the servers counted after
// the shrink: places taken before a shrink drain, and none may be added above the new
// limit. One thread writes it; the high half counts the changes, so a reader can tell that
// the bound held still while it counted.
class Ceiling {
  public:
    uint64_t word() const { return word_.load(std::memory_order_seq_cst); }
    static int bound(uint64_t word) { return int(uint32_t(word)); }
    void set(int bound) {
        uint64_t changes = (word() >> 32) + 1;
        word_.store(changes << 32 | uint32_t(bound), std::memory_order_seq_cst);
    }

  private:
    std::atomic<uint64_t> word_{0};
};

// What the test knows of the pool of one target, beside the pool.
struct Shadow {
    std::atomic<int> in_use{0};  // +1 after a granted reservation, -1 before its release
    Ceiling ceiling;
    int size_limit = 0;  // the limit last set; written by the owning thread only
};

struct Run {
    Mixes mixes;
    uint64_t seed = run_seed();
    PoolTable table{table_capacity};
    std::vector<Target> targets;
    std::array<Shadow, target_count> shadows;
    std::atomic<bool> go{false};
    Failure failure;

    explicit Run(const Mixes& run_mixes) : mixes(run_mixes) {
        for (int i = 0; i < target_count; ++i) targets.push_back(target(i));
    }
};

// A server place a thread holds, on one of its workers.
struct Lease {
    int target;
    uint32_t worker;
    bool idle;
};

enum class Asked : uint8_t { Not, Refused, Found };

struct ThreadState {
    int index = 0;
    std::mt19937_64 random;
    std::array<Asked, target_count> asked{};
    std::array<Pool*, target_count> pools{};
    std::vector<Lease> leases;
    // Per (worker of this thread, target): idle servers and waiting clients held there.
    std::vector<int> idle_counts = std::vector<int>(workers_per_thread * target_count, 0);
    std::vector<int> waiter_counts = std::vector<int>(workers_per_thread * target_count, 0);
};

uint32_t worker_of(const ThreadState& state, uint32_t local) {
    return local * thread_count + uint32_t(state.index);
}

int& count_at(std::vector<int>& counts, uint32_t local, int target) {
    return counts[local * target_count + uint32_t(target)];
}

bool owns(const ThreadState& state, int target) {
    return target % thread_count == state.index;
}

// Checks that the pool's servers and held places are within its ceiling, when the ceiling
// held still while they were counted.
void audit(Run& run, int target, Pool& pool) {
    Shadow& shadow = run.shadows[target];
    uint64_t before = shadow.ceiling.word();
    int servers = pool.servers();
    int in_use = shadow.in_use.load(std::memory_order_seq_cst);
    if (shadow.ceiling.word() != before) return;
    int bound = Ceiling::bound(before);
    if (servers > bound || in_use > bound)
        run.failure.record("target %d: %d servers, %d in use, above the bound %d", target, servers,
                           in_use, bound);
}

void check_found(Run& run, int target, Pool* pool) {
    if (pool == nullptr) return;
    const Target& want = run.targets[target];
    if (pool->key != target_key(want) || pool->target.user != want.user ||
        pool->target.dbname != want.dbname || pool->target.password != want.password)
        run.failure.record("target %d: its pool holds another target", target);
    if (run.table.by_id(pool->id) != pool)
        run.failure.record("target %d: by_id(%u) is not its pool", target, pool->id);
}

// find_or_create, checked against what this thread was told before: a found pool stays the
// same pool and a refused target stays refused (pools are never removed).
Pool* find(Run& run, ThreadState& state, int target) {
    Pool* pool = run.table.find_or_create(run.targets[target]);
    check_found(run, target, pool);
    Asked now = pool != nullptr ? Asked::Found : Asked::Refused;
    if (state.asked[target] != Asked::Not &&
        (state.asked[target] != now || state.pools[target] != pool))
        run.failure.record("target %d: thread %d was given another answer", target, state.index);
    state.asked[target] = now;
    state.pools[target] = pool;
    return pool;
}

Pool* pool_of(Run& run, ThreadState& state, int target) {
    if (state.asked[target] == Asked::Not) return find(run, state, target);
    return state.pools[target];
}

enum class Bits : uint8_t { Waiter, Idle };

// One more or one fewer waiting client (or idle server) of the pool on a worker; the
// worker's bit is marked on the first and cleared on the last, as pool/pool.cc does.
void count_on_worker(Run& run, Pool& pool, Bits bits, uint32_t worker, int& count, int change) {
    bool first = change > 0 && count++ == 0;
    bool last = change < 0 && --count == 0;
    if (bits == Bits::Waiter) {
        if (first) pool.mark_waiter_worker(worker);
        if (last) pool.clear_waiter_worker(worker);
    } else {
        if (first) pool.mark_idle_worker(worker);
        if (last) pool.clear_idle_worker(worker);
    }
    bool set = worker_bit(bits == Bits::Waiter ? pool.waiter_workers : pool.idle_workers, worker);
    if (set != (count > 0))
        run.failure.record("worker %u: %s bit is %d with %d there", worker,
                           bits == Bits::Waiter ? "waiter" : "idle", int(set), count);
}

void toggle_idle(Run& run, ThreadState& state, Lease& lease) {
    Pool& pool = *state.pools[lease.target];
    uint32_t local = lease.worker / thread_count;
    lease.idle = !lease.idle;
    count_on_worker(run, pool, Bits::Idle, lease.worker,
                    count_at(state.idle_counts, local, lease.target), lease.idle ? 1 : -1);
}

void release(Run& run, ThreadState& state, size_t index) {
    Lease lease = state.leases[index];
    state.leases.erase(state.leases.begin() + long(index));
    if (lease.idle) toggle_idle(run, state, lease);
    run.shadows[lease.target].in_use.fetch_sub(1, std::memory_order_seq_cst);
    state.pools[lease.target]->release_server();
}

void reserve(Run& run, ThreadState& state, int target, uint32_t local) {
    Pool* pool = pool_of(run, state, target);
    if (pool == nullptr) return;
    if (state.leases.size() == leases_per_thread_max) return release(run, state, 0);
    if (!pool->try_reserve_server()) return;
    run.shadows[target].in_use.fetch_add(1, std::memory_order_seq_cst);
    audit(run, target, *pool);
    state.leases.push_back({target, worker_of(state, local), false});
}

void wait_or_stop_waiting(Run& run, ThreadState& state, int target, uint32_t local) {
    Pool* pool = pool_of(run, state, target);
    if (pool == nullptr) return;
    int& count = count_at(state.waiter_counts, local, target);
    int change = count == 0 ? 1 : -1;
    pool->waiting.fetch_add(change, std::memory_order_acq_rel);
    count_on_worker(run, *pool, Bits::Waiter, worker_of(state, local), count, change);
}

// Lowers the ceiling to what the pool can still reach: its limit, or the servers it holds
// now if more (they drain; none are added above the limit).
void tighten(Run& run, int target, Pool& pool) {
    Shadow& shadow = run.shadows[target];
    int bound = std::max(shadow.size_limit, pool.servers());
    if (bound < Ceiling::bound(shadow.ceiling.word())) shadow.ceiling.set(bound);
}

// What a reload does to one pool: a new size limit, larger or smaller.
void resize(Run& run, int target, Pool& pool, int size_limit) {
    Shadow& shadow = run.shadows[target];
    if (size_limit > Ceiling::bound(shadow.ceiling.word())) shadow.ceiling.set(size_limit);
    pool.set_size_limit(size_limit);
    shadow.size_limit = size_limit;
    tighten(run, target, pool);
    audit(run, target, pool);
}

void step(Run& run, ThreadState& state) {
    const Mix& mix = run.mixes[state.index];
    uint64_t draw = state.random();
    int kind = int(draw % 100);
    bool hot = (draw >> 8) & 1;
    int target = int((draw >> 9) % uint64_t(hot ? mix.hot_targets : mix.targets));
    uint32_t local = uint32_t((draw >> 24) % workers_per_thread);
    uint32_t argument = uint32_t(draw >> 32);
    if (kind < mix.find) {
        find(run, state, target);
    } else if (kind < mix.reserve) {
        reserve(run, state, target, local);
    } else if (kind < mix.release) {
        if (!state.leases.empty()) release(run, state, argument % state.leases.size());
    } else if (kind < mix.idle) {
        if (!state.leases.empty())
            toggle_idle(run, state, state.leases[argument % state.leases.size()]);
    } else if (kind < mix.wait) {
        wait_or_stop_waiting(run, state, target, local);
    } else {
        Pool* pool = pool_of(run, state, target);
        if (pool == nullptr) return;
        if (!owns(state, target))
            audit(run, target, *pool);
        else if (kind < 97)
            resize(run, target, *pool, size_limits[argument % size_limits.size()]);
        else
            tighten(run, target, *pool);
    }
}

void run_thread(Run& run, ThreadState& state) {
    while (!run.go.load(std::memory_order_acquire)) {
    }
    for (int i = 0; i < operations_per_thread && !run.failure.happened(); ++i) step(run, state);
}

// What the threads were told of each target, the same for every thread that asked.
struct Answer {
    Asked asked = Asked::Not;
    Pool* pool = nullptr;
};

std::vector<Answer> agreed_answers(Run& run, const std::vector<ThreadState>& states) {
    std::vector<Answer> answers(target_count);
    for (int target = 0; target < target_count; ++target) {
        Answer& answer = answers[target];
        for (const ThreadState& state : states) {
            if (state.asked[target] == Asked::Not) continue;
            if (answer.asked != Asked::Not && state.pools[target] != answer.pool)
                run.failure.record("target %d: threads were given different answers", target);
            answer = {state.asked[target], state.pools[target]};
        }
    }
    return answers;
}

// Each target asked for has one pool, in a slot of its own, until the table is full; the
// table refuses the rest, and its pools are intact.
void check_table(Run& run, const std::vector<Answer>& answers) {
    uint32_t asked = 0;
    uint32_t found = 0;
    std::vector<int> target_of_id(table_capacity, -1);
    for (int target = 0; target < target_count; ++target) {
        Pool* pool = answers[target].pool;
        if (answers[target].asked == Asked::Not) continue;
        ++asked;
        if (run.table.find_or_create(run.targets[target]) != pool)
            run.failure.record("target %d: asked again, another answer", target);
        if (pool == nullptr) continue;
        ++found;
        check_found(run, target, pool);
        if (pool->id >= table_capacity || target_of_id[pool->id] != -1)
            run.failure.record("target %d: id %u is out of range or shared", target, pool->id);
        else
            target_of_id[pool->id] = target;
    }
    for (uint32_t id = 0; id < table_capacity; ++id)
        if (target_of_id[id] == -1 && run.table.by_id(id) != nullptr)
            run.failure.record("id %u: by_id has a pool no target maps to", id);
    if (found != std::min(asked, table_capacity) || run.table.count() != found)
        run.failure.record("%u targets asked, %u pools found, count() %u, capacity %u", asked,
                           found, run.table.count(), table_capacity);
    if (found == table_capacity && run.table.find_or_create(target(target_count)) != nullptr)
        run.failure.record("a full table took one more pool");
}

// The pool counters and worker bits are exactly what the threads left behind.
void check_pool(Run& run, const std::vector<ThreadState>& states, int target, Pool& pool) {
    int servers = 0;
    int waiting = 0;
    std::array<uint64_t, waiter_mask_words> waiters{};
    std::array<uint64_t, waiter_mask_words> idle{};
    for (const ThreadState& state : states) {
        for (const Lease& lease : state.leases) servers += lease.target == target;
        for (uint32_t local = 0; local < workers_per_thread; ++local) {
            uint32_t worker = worker_of(state, local);
            size_t at = local * target_count + uint32_t(target);
            waiting += state.waiter_counts[at];
            if (state.waiter_counts[at] > 0) waiters[worker / 64] |= uint64_t(1) << worker % 64;
            if (state.idle_counts[at] > 0) idle[worker / 64] |= uint64_t(1) << worker % 64;
        }
    }
    if (pool.servers() != servers || run.shadows[target].in_use.load() != servers)
        run.failure.record("target %d: %d servers, %d in use, %d leases held", target,
                           pool.servers(), run.shadows[target].in_use.load(), servers);
    if (pool.waiting.load() != waiting)
        run.failure.record("target %d: waiting %d, %d waiters", target, pool.waiting.load(),
                           waiting);
    for (uint32_t word = 0; word < waiter_mask_words; ++word)
        if (pool.waiter_workers[word].load() != waiters[word] ||
            pool.idle_workers[word].load() != idle[word])
            run.failure.record("target %d: worker bits of word %u differ", target, word);
    audit(run, target, pool);
}

// Gives back every place and stops every wait, as the workers would on shutdown.
void drain(Run& run, std::vector<ThreadState>& states) {
    for (ThreadState& state : states) {
        while (!state.leases.empty()) release(run, state, state.leases.size() - 1);
        for (uint32_t local = 0; local < workers_per_thread; ++local)
            for (int target = 0; target < target_count; ++target)
                if (count_at(state.waiter_counts, local, target) > 0)
                    wait_or_stop_waiting(run, state, target, local);
    }
}

void run_threads(Run& run, std::vector<ThreadState>& states) {
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_count; ++t) {
        states[t].index = t;
        states[t].random.seed(run.seed + uint64_t(t));
        threads.emplace_back([&run, &state = states[t]] { run_thread(run, state); });
    }
    run.go.store(true, std::memory_order_release);
    for (auto& thread : threads) thread.join();
}

// Runs the threads, then checks the table and every pool, before and after giving back
// every place and stopping every wait.
void run_and_check(const Mixes& mixes) {
    Run run(mixes);
    std::vector<ThreadState> states(thread_count);
    run_threads(run, states);
    if (!run.failure.happened()) {
        std::vector<Answer> answers = agreed_answers(run, states);
        check_table(run, answers);
        for (int target = 0; target < target_count; ++target)
            if (answers[target].pool != nullptr)
                check_pool(run, states, target, *answers[target].pool);
        drain(run, states);
        for (int target = 0; target < target_count; ++target)
            if (answers[target].pool != nullptr)
                check_pool(run, states, target, *answers[target].pool);
    }
    cr_assert(!run.failure.happened(), "seed %" PRIu64 " (PGPLEX_SEED=%" PRIu64 " replays): %s",
              run.seed, run.seed, run.failure.text());
}

}  // namespace

Test(pool_table_seeded, concurrent_leases_returns_and_reloads_keep_every_pool_consistent) {
    run_and_check(everything_everywhere);
}

Test(pool_table_seeded, a_pool_shrunk_under_load_grants_no_place_above_its_new_limit) {
    run_and_check(shrinks_under_load);
}
