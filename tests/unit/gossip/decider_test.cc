// The decider (gossip/decider.h) on hand-built scenarios: appliances agree on one primary
// per epoch and become writable; a minority view never moves the primary; an isolated
// appliance loses its lease within lease_ms while the majority keeps writing; promote mode
// promotes the most advanced replica within the lag limit; simultaneous proposers still
// choose one primary per epoch (Net::run checks it after every step).
#include <criterion/criterion.h>

#include "harness.h"

using namespace pgplex::gossip;
using gossip_test::Net;
using gossip_test::Role;

Test(gossip_decider, lone_appliance_decides_alone) {
    Net net(1, false);
    net.run(3000);
    Decision d = net.decision(0);
    cr_assert_gt(d.epoch, 0u);
    cr_assert_str_eq(d.primary.c_str(), "db0:5432");
    cr_assert(d.writable);
    cr_assert(net.engines[0]->quorum(net.now));
}

Test(gossip_decider, three_appliances_agree_and_become_writable) {
    Net net(3, false);
    net.run(5000);
    for (size_t i = 0; i < 3; ++i) {
        Decision d = net.decision(i);
        cr_assert_eq(d.epoch, net.decision(0).epoch);
        cr_assert_str_eq(d.primary.c_str(), "db0:5432");
        cr_assert(d.writable, "appliance %zu not writable", i);
    }
}

Test(gossip_decider, minority_view_never_moves_the_primary) {
    Net net(3, true);
    net.run(5000);
    uint64_t epoch = net.decision(0).epoch;
    net.set_node(0, 0, false, Role::Primary);  // only appliance 0 sees db0 down
    net.run(8000);
    cr_assert_eq(net.decision(0).epoch, epoch);
    cr_assert(net.promotions.empty());
    cr_assert(net.decision(1).writable);
}

Test(gossip_decider, isolated_appliance_loses_writes_within_lease) {
    Net net(3, false);
    net.run(5000);
    cr_assert(net.decision(0).writable);
    net.isolate(0);
    net.run(1000 + 20);  // lease_ms, plus one step of slack for the last grant in flight
    cr_assert_not(net.decision(0).writable, "still writable after lease_ms in a minority");
    cr_assert(net.decision(1).writable);
    cr_assert(net.decision(2).writable);
    cr_assert_not(net.engines[0]->quorum(net.now + 2000));
}

Test(gossip_decider, promote_mode_promotes_most_advanced_replica) {
    Net net(3, true, 500);
    net.run(5000);
    uint64_t epoch = net.decision(0).epoch;
    // db2 is 1000 bytes behind db0's last LSN: beyond max_failover_lag_bytes = 500.
    net.set_everywhere(0, false, Role::Primary);
    net.run(10000);
    Decision d = net.decision(1);
    cr_assert_gt(d.epoch, epoch);
    cr_assert_str_eq(d.primary.c_str(), "db1:5432");
    // Concurrent proposers meet in one Paxos instance: one node, one epoch promoted.
    cr_assert_geq(net.promotions.size(), 1u);
    for (const Promotion& promotion : net.promotions) {
        cr_assert_str_eq(promotion.node.c_str(), "db1:5432");
        cr_assert_eq(promotion.epoch, d.epoch);
    }
    // Until db1 reports primary, writes follow the decision; none go to db0.
    net.set_everywhere(1, true, Role::Primary);
    net.run(3000);
    for (size_t i = 0; i < 3; ++i) cr_assert(net.decision(i).writable);
}

Test(gossip_decider, promotion_failure_moves_on_to_the_next_replica) {
    Net net(3, true);
    net.run(5000);
    net.set_everywhere(0, false, Role::Primary);
    net.run(10000);
    cr_assert_geq(net.promotions.size(), 1u);
    Promotion failed = net.promotions[0];
    for (size_t i = 0; i < 3; ++i) net.engines[i]->promotion_failed(failed, net.now);
    net.run(10000);
    Decision d = net.decision(0);
    cr_assert_gt(d.epoch, failed.epoch);
    cr_assert_str_neq(d.primary.c_str(), failed.node.c_str());
}

Test(gossip_decider, follow_mode_follows_an_external_promotion) {
    Net net(5, false);
    net.run(5000);
    uint64_t epoch = net.decision(0).epoch;
    // Every appliance sees the manager's promotion at the same moment: all may propose.
    net.set_everywhere(0, false, Role::Primary);
    net.set_everywhere(2, true, Role::Primary);
    net.run(10000);
    for (size_t i = 0; i < 5; ++i) {
        Decision d = net.decision(i);
        cr_assert_gt(d.epoch, epoch);
        cr_assert_str_eq(d.primary.c_str(), "db2:5432");
        cr_assert(d.writable);
    }
    cr_assert(net.promotions.empty(), "follow mode never promotes");
}

Test(gossip_decider, partitioned_minority_cannot_choose) {
    Net net(5, false);
    net.run(5000);
    uint64_t epoch = net.decision(0).epoch;
    // Appliances 0 and 1 are cut off from 2, 3, 4 and alone see a new primary.
    for (size_t a : {0u, 1u})
        for (size_t b : {2u, 3u, 4u}) {
            net.cut.insert({a, b});
            net.cut.insert({b, a});
        }
    for (size_t a : {0u, 1u}) {
        net.set_node(a, 0, false, Role::Primary);
        net.set_node(a, 1, true, Role::Primary);
    }
    net.run(10000);
    for (size_t i = 0; i < 5; ++i) cr_assert_eq(net.decision(i).epoch, epoch);
    cr_assert_not(net.decision(0).writable);
    cr_assert(net.decision(3).writable);
}

// What a failover costs once a majority sees the primary down: view spread (lease_ms/4),
// rank and back-off (up to 2 probe intervals here), the fence wait (lease_ms * 1.1 after the
// last grant on the old epoch), a few round trips, and one lease request on the new epoch.
Test(gossip_decider, failover_is_writable_again_within_bound) {
    for (bool promote : {false, true}) {
        Net net(3, promote);
        net.run(5000);
        int64_t down_at = net.now;
        net.set_everywhere(0, false, Role::Primary);
        if (!promote) net.set_everywhere(1, true, Role::Primary);
        uint64_t epoch = net.decision(0).epoch;
        while (net.now - down_at < 10000) {
            net.run(10);
            Decision d = net.decision(1);
            if (d.epoch > epoch && d.writable) break;
        }
        int64_t took = net.now - down_at;
        cr_log_info("failover (%s): writable again after %ld ms", promote ? "promote" : "follow",
                    long(took));
        // 100 ms for the monitors' next round, 250 ms view spread, 1000 ms back-off,
        // 1100 ms fence, 250 ms lease renewal, round trips.
        cr_assert_leq(took, 3500, "took %ld ms", long(took));
    }
}
