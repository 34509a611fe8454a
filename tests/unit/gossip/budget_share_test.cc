// A node's connection budget shared by the appliances of a site (gossip/budget_share.h):
// whatever each appliance last heard, the limits they keep to never sum above the budget
// once their reports have crossed, and demand moves the places.
#include <criterion/criterion.h>

#include <random>
#include <vector>

#include "pgplex/gossip/budget_share.h"

using pgplex::gossip::appliance_limit;
using pgplex::gossip::ApplianceDemand;
using pgplex::gossip::growth_turn;
using pgplex::gossip::static_share;

Test(budget_share, without_a_majority_an_appliance_keeps_its_static_share) {
    std::vector<ApplianceDemand> alone = {{1, 0, 50, 0}};
    cr_assert_eq(appliance_limit(10, alone, 3, false, 0, true), 3);
    cr_assert_eq(static_share(2, 3, 1), 1);
    cr_assert_eq(static_share(2, 3, 2), 0, "a third appliance took a place of a budget of 2");
}

Test(budget_share, an_appliance_alone_with_demand_takes_what_the_others_leave) {
    // The two others are idle: each keeps its limit of 1 it reported.
    std::vector<ApplianceDemand> demands = {{0, 2, 10, 2}, {1, 0, 0, 1}, {2, 0, 0, 1}};
    cr_assert_eq(appliance_limit(9, demands, 3, true, 2, true), 7);
    cr_assert_eq(appliance_limit(9, demands, 3, true, 2, false), 2, "it grew out of its turn");
}

Test(budget_share, servers_another_appliance_still_holds_are_not_taken_twice) {
    std::vector<ApplianceDemand> demands = {{0, 0, 5, 0}, {1, 7, 0, 3}};
    cr_assert_eq(appliance_limit(10, demands, 2, true, 0, true), 3);
}

Test(budget_share, an_appliance_not_heard_keeps_its_static_share_reserved) {
    std::vector<ApplianceDemand> demands = {{0, 0, 20, 0}, {1, 0, 0, 0}};
    cr_assert_eq(appliance_limit(9, demands, 3, true, 0, true), 6);
}

// Three appliances, each computing from the others' reports as they were after the last
// round (a report is heard before the next turn), all starting at their static shares: the
// limits, and the servers held under them, never sum above the budget, whatever the demands
// do.
Test(budget_share, limits_never_sum_above_the_budget_over_random_rounds) {
    std::mt19937 random(7);
    const int appliances = 3;
    for (int run = 0; run < 300; ++run) {
        int budget = 1 + int(random() % 12);
        std::vector<ApplianceDemand> state(appliances);
        for (int i = 0; i < appliances; ++i) {
            state[size_t(i)] = {uint32_t(i), 0, 0, static_share(budget, appliances, uint32_t(i))};
        }
        for (int round = 0; round < 60; ++round) {
            int turn = round % appliances;
            std::vector<ApplianceDemand> reported = state;
            for (int i = 0; i < appliances; ++i) {
                ApplianceDemand& self = state[size_t(i)];
                self.waiting = int(random() % 8);
                std::vector<ApplianceDemand> view = {self};
                for (int j = 0; j < appliances; ++j)
                    if (j != i) view.push_back(reported[size_t(j)]);
                self.limit = appliance_limit(budget, view, appliances, true, self.limit, i == turn);
                // Servers: up to the limit if wanted; above it, one closes a round.
                int wanted = self.held + self.waiting;
                if (self.held > self.limit)
                    self.held -= 1;
                else
                    self.held = std::min(wanted, self.limit);
            }
            int limits = 0, held = 0;
            for (const ApplianceDemand& a : state) {
                limits += a.limit;
                held += a.held;
            }
            cr_assert_leq(held, budget, "run %d round %d: %d servers over a budget of %d", run,
                          round, held, budget);
            cr_assert_leq(limits, budget, "run %d round %d: limits %d", run, round, limits);
        }
    }
}

Test(budget_share, each_appliance_gets_a_turn_to_grow) {
    int turns[3] = {0, 0, 0};
    for (int64_t ms = 0; ms < 6000; ms += 10)
        for (uint32_t a = 0; a < 3; ++a) turns[a] += growth_turn(ms, 1000, 3, a) ? 1 : 0;
    for (int a = 0; a < 3; ++a) cr_assert_eq(turns[a], 100, "appliance %d: %d", a, turns[a]);
    cr_assert_not(growth_turn(600, 1000, 3, 0), "a turn ran into its second half");
}
