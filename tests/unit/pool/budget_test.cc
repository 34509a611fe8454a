// Budgets shared by pools (max_db_connections, max_user_connections, a node's budget) and
// the share of a node's budget each appliance takes through gossip.
#include <criterion/criterion.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/pool/budget.h"
#include "pgplex/pool/pool_table.h"

using pgplex::pool::BudgetKind;
using pgplex::pool::Demand;
using pgplex::pool::Pool;
using pgplex::pool::PoolTable;
using pgplex::pool::Target;

namespace {

Target target(const std::string& user, const std::string& database, uint16_t port = 5432) {
    Target t;
    t.alias = database;
    t.database = database;
    t.endpoint.host = "127.0.0.1";
    t.endpoint.port = port;
    t.dbname = database;
    t.user = user;
    return t;
}

int sum(const std::vector<int>& values) {
    int total = 0;
    for (int value : values) total += value;
    return total;
}

}  // namespace

Test(budget, max_db_connections_holds_over_every_pool_of_the_database) {
    PoolTable table(64);
    Pool* alice = table.find_or_create(target("alice", "app"));
    Pool* bob = table.find_or_create(target("bob", "app"));
    Pool* other = table.find_or_create(target("bob", "other"));
    for (Pool* pool : {alice, bob, other}) pool->set_size_limit(10);
    cr_assert_eq(alice->database_budget, bob->database_budget);
    alice->database_budget->servers.set_limit(3);
    cr_assert(alice->try_reserve_server());
    cr_assert(alice->try_reserve_server());
    cr_assert(bob->try_reserve_server());
    cr_assert_not(bob->try_reserve_server(), "a fourth server of database app was granted");
    cr_assert_not(alice->try_reserve_server());
    cr_assert_eq(bob->servers(), 1, "a refused place stayed taken in the pool");
    cr_assert(other->try_reserve_server(), "another database was held by app's limit");
    alice->release_server();
    cr_assert(bob->try_reserve_server(), "a freed place of the database was not granted");
    cr_assert_eq(alice->database_budget->servers.count(), 3);
}

Test(budget, max_user_connections_holds_over_databases_and_a_refusal_takes_nothing) {
    PoolTable table(64);
    Pool* first = table.find_or_create(target("app", "one"));
    Pool* second = table.find_or_create(target("app", "two"));
    first->set_size_limit(10);
    second->set_size_limit(10);
    first->user_budget->servers.set_limit(2);
    cr_assert(first->try_reserve_server());
    cr_assert(second->try_reserve_server());
    cr_assert_not(second->try_reserve_server());
    cr_assert_eq(second->database_budget->servers.count(), 1,
                 "the database's place was kept though the user's was refused");
    cr_assert_eq(second->node_budget->servers.count(), 2);
    first->user_budget->servers.set_limit(pgplex::pool::no_limit);
    cr_assert(second->try_reserve_server());
}

Test(budget, lowering_a_limit_below_the_count_grants_nothing_until_below_it) {
    pgplex::pool::Counted counted;
    counted.set_limit(3);
    for (int i = 0; i < 3; ++i) cr_assert(counted.try_take());
    counted.set_limit(1);
    cr_assert_eq(counted.count(), 3);
    counted.give_back();
    cr_assert_not(counted.try_take());
    counted.give_back();
    counted.give_back();
    cr_assert(counted.try_take());
    cr_assert_not(counted.try_take());
    counted.set_limit(0);
    counted.give_back();
    cr_assert_not(counted.try_take(), "a limit of 0 granted a place");
}

Test(budget, a_budget_limit_holds_exactly_across_threads) {
    PoolTable table(64);
    std::vector<Pool*> pools;
    for (const char* user : {"a", "b", "c", "d"}) {
        pools.push_back(table.find_or_create(target(user, "app")));
        pools.back()->set_size_limit(1000);
    }
    pools[0]->node_budget->servers.set_limit(37);
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (Pool* pool : pools)
        threads.emplace_back([pool, &granted] {
            for (int i = 0; i < 1000; ++i)
                if (pool->try_reserve_server()) granted.fetch_add(1);
        });
    for (std::thread& thread : threads) thread.join();
    cr_assert_eq(granted.load(), 37);
    cr_assert_eq(pools[0]->node_budget->servers.count(), 37);
    cr_assert_eq(pools[0]->database_budget->servers.count(), 37);
}

Test(budget, the_same_name_of_another_kind_is_another_budget) {
    pgplex::pool::BudgetTable budgets(16);
    auto* database = budgets.find_or_create(BudgetKind::Database, "app");
    auto* user = budgets.find_or_create(BudgetKind::User, "app");
    cr_assert_neq(database, user);
    cr_assert_eq(budgets.find_or_create(BudgetKind::User, "app"), user);
    cr_assert_eq(budgets.find(BudgetKind::Database, "app"), database);
    cr_assert_null(budgets.find(BudgetKind::Node, "app"));
}

Test(node_share, shares_follow_demand_and_use_the_budget_at_most) {
    std::vector<Demand> demands = {{0, 6, 0}, {1, 2, 0}, {2, 0, 0}};
    std::vector<int> out = pgplex::pool::shares(8, demands);
    cr_assert_eq(out[0], 6);
    cr_assert_eq(out[1], 2);
    cr_assert_eq(out[2], 0, "an appliance without demand kept a share");
}

Test(node_share, each_appliance_with_demand_gets_one_while_the_budget_allows) {
    std::vector<Demand> demands = {{0, 20, 0}, {1, 0, 1}, {2, 1, 0}};
    std::vector<int> out = pgplex::pool::shares(4, demands);
    cr_assert_eq(out[1], 1);
    cr_assert_eq(out[2], 1);
    cr_assert_eq(out[0], 2);
    std::vector<int> tight = pgplex::pool::shares(2, demands);
    cr_assert_eq(sum(tight), 2);
    cr_assert_eq(tight[2], 0, "the later appliance kept its place over the budget");
}

Test(node_share, shares_never_sum_above_the_budget_for_any_demands) {
    std::mt19937 random(12);
    for (int run = 0; run < 20000; ++run) {
        int budget = int(random() % 40);
        std::vector<Demand> demands(1 + random() % 6);
        for (size_t i = 0; i < demands.size(); ++i)
            demands[i] = {uint32_t(i), int(random() % 30), int(random() % 30)};
        std::vector<int> out = pgplex::pool::shares(budget, demands);
        cr_assert_leq(sum(out), budget, "run %d: shares over the budget", run);
        for (size_t i = 0; i < demands.size(); ++i) {
            if (demands[i].total() == 0) cr_assert_eq(out[i], 0);
            if (demands[i].total() > 0 && budget >= int(demands.size()))
                cr_assert_geq(out[i], 1, "run %d: an appliance with demand got nothing", run);
        }
    }
}

Test(node_share, without_a_majority_an_appliance_keeps_budget_over_appliances) {
    std::vector<Demand> alone = {{1, 0, 50}};
    cr_assert_eq(pgplex::pool::node_limit(10, alone, 0, 3, false), 3);
    cr_assert_eq(pgplex::pool::node_limit(2, alone, 0, 3, false), 1);
    std::vector<Demand> last = {{2, 0, 50}};
    cr_assert_eq(pgplex::pool::node_limit(2, last, 0, 3, false), 0);
}

Test(node_share, servers_another_appliance_still_holds_are_not_taken_twice) {
    // The other appliance's share fell to 3 but it still holds 7 servers.
    std::vector<Demand> demands = {{0, 0, 5}, {1, 7, 0}};
    cr_assert_eq(pgplex::pool::shares(10, demands)[0], 4);
    cr_assert_eq(pgplex::pool::node_limit(10, demands, 0, 2, true), 3);
}
