// The pool table: one pool per target, however many threads ask at once, and pool limits
// that hold exactly across threads.
#include <criterion/criterion.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/pool/pool_table.h"

using pgplex::pool::Pool;
using pgplex::pool::PoolTable;
using pgplex::pool::Target;

namespace {

Target target(const std::string& user, const std::string& dbname = "appdb") {
    Target t;
    t.alias = dbname;
    t.endpoint.host = "127.0.0.1";
    t.endpoint.port = 5432;
    t.dbname = dbname;
    t.user = user;
    t.password = "secret";
    return t;
}

}  // namespace

Test(pool_table, the_same_target_always_finds_the_same_pool) {
    PoolTable table(64);
    Pool* first = table.find_or_create(target("app"));
    Pool* again = table.find_or_create(target("app"));
    cr_assert_not_null(first);
    cr_assert_eq(first, again);
    cr_assert_eq(table.by_id(first->id), first);
}

Test(pool_table, targets_that_differ_in_any_field_get_their_own_pools) {
    PoolTable table(64);
    Target base = target("app");
    Target other_db = target("app", "otherdb");
    Target other_password = target("app");
    other_password.password = "changed";
    Target other_options = target("app");
    other_options.startup_parameters.emplace_back("options", "-c default_transaction_read_only=on");
    Pool* pools[] = {table.find_or_create(base), table.find_or_create(other_db),
                     table.find_or_create(other_password), table.find_or_create(other_options)};
    for (int i = 0; i < 4; ++i)
        for (int j = i + 1; j < 4; ++j) cr_assert_neq(pools[i], pools[j]);
}

Test(pool_table, a_full_table_refuses_new_pools_but_still_finds_old_ones) {
    PoolTable table(4);
    std::vector<Pool*> made;
    for (int i = 0; i < 4; ++i)
        made.push_back(table.find_or_create(target("u" + std::to_string(i))));
    for (Pool* pool : made) cr_assert_not_null(pool);
    cr_assert_null(table.find_or_create(target("one-too-many")));
    cr_assert_eq(table.find_or_create(target("u2")), made[2]);
}

Test(pool_table, threads_racing_to_create_one_target_share_one_pool) {
    for (int round = 0; round < 50; ++round) {
        PoolTable table(256);
        std::atomic<bool> go{false};
        std::vector<Pool*> seen(8, nullptr);
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t)
            threads.emplace_back([&, t] {
                while (!go.load()) {
                }
                seen[t] = table.find_or_create(target("racer"));
            });
        go.store(true);
        for (auto& thread : threads) thread.join();
        for (int t = 1; t < 8; ++t) cr_assert_eq(seen[t], seen[0]);
        cr_assert_eq(table.by_id(seen[0]->id), seen[0]);
    }
}

Test(pool_table, threads_racing_to_create_pools_fill_every_slot) {
    for (int round = 0; round < 200; ++round) {
        PoolTable table(4);
        std::atomic<bool> go{false};
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t)
            threads.emplace_back([&, t] {
                while (!go.load()) {
                }
                for (int i = 0; i < 4; ++i)
                    table.find_or_create(target("u" + std::to_string((t + i) % 4)));
            });
        go.store(true);
        for (auto& thread : threads) thread.join();
        cr_assert_eq(table.count(), 4u);
        for (int i = 0; i < 4; ++i) {
            Pool* pool = table.find_or_create(target("u" + std::to_string(i)));
            cr_assert_not_null(pool, "round %d: u%d was refused with a slot free", round, i);
            cr_assert_eq(table.by_id(pool->id), pool);
        }
        cr_assert_null(table.find_or_create(target("one-too-many")));
    }
}

Test(pool_table, a_shrunk_pool_grants_no_server_until_it_is_below_the_new_limit) {
    PoolTable table(64);
    Pool* pool = table.find_or_create(target("app"));
    pool->set_size_limit(5);
    for (int i = 0; i < 5; ++i) cr_assert(pool->try_reserve_server());
    pool->set_size_limit(2);
    cr_assert_eq(pool->servers(), 5, "a shrink closes nothing");
    for (int held = 5; held > 2; --held) {
        cr_assert_not(pool->try_reserve_server(), "%d servers, limit 2", held);
        pool->release_server();
    }
    cr_assert_not(pool->try_reserve_server(), "2 servers, limit 2");
    pool->release_server();
    cr_assert(pool->try_reserve_server(), "1 server, limit 2");
    pool->set_size_limit(3);
    cr_assert(pool->try_reserve_server(), "2 servers, limit grown to 3");
    cr_assert_not(pool->try_reserve_server());
    cr_assert_eq(pool->servers(), 3);
    cr_assert_eq(pool->size_limit(), 3);
}

Test(pool_table, server_reservations_never_exceed_the_pool_size_across_threads) {
    PoolTable table(64);
    Pool* pool = table.find_or_create(target("app"));
    pool->set_size_limit(20);
    std::atomic<int> granted{0};
    std::atomic<int> peak{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                if (!pool->try_reserve_server()) continue;
                int now = granted.fetch_add(1) + 1;
                int high = peak.load();
                while (now > high && !peak.compare_exchange_weak(high, now)) {
                }
                granted.fetch_sub(1);
                pool->release_server();
            }
        });
    for (auto& thread : threads) thread.join();
    cr_assert_leq(peak.load(), 20);
    cr_assert_eq(pool->servers(), 0);
}

Test(pool_table, the_reserve_adds_exactly_reserve_pool_size_places_across_threads) {
    PoolTable table(64);
    Pool* pool = table.find_or_create(target("app"));
    pool->set_size_limit(5);
    pool->reserve_limit.store(2);
    std::atomic<int> ordinary{0};
    std::atomic<int> extra{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 1000; ++i) {
                if (t % 2 == 0 && pool->try_reserve_server()) ordinary.fetch_add(1);
                if (t % 2 == 1 && pool->try_reserve_extra()) extra.fetch_add(1);
            }
        });
    for (auto& thread : threads) thread.join();
    cr_assert_eq(pool->servers(), 7);
    cr_assert_eq(ordinary.load() + extra.load(), 7);
    cr_assert_leq(ordinary.load(), 5);
    cr_assert_not(pool->try_reserve_server());
    cr_assert_not(pool->try_reserve_extra());
}

Test(pool_table, releases_above_a_floor_never_take_the_pool_below_it_across_threads) {
    PoolTable table(64);
    Pool* pool = table.find_or_create(target("app"));
    pool->set_size_limit(40);
    for (int i = 0; i < 40; ++i) cr_assert(pool->try_reserve_server());
    std::atomic<int> released{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (pool->try_release_above(3)) released.fetch_add(1);
        });
    for (auto& thread : threads) thread.join();
    cr_assert_eq(pool->servers(), 3);
    cr_assert_eq(released.load(), 37);
    cr_assert_not(pool->try_release_above(3));
    cr_assert(pool->try_release_above(2));
}
