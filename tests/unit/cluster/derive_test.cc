// The promotion decision of failover = "promote" (derive.h): when pgplex promotes, which
// replica it picks, and fencing of the primary it replaces. Pure: nodes are NodeStates set by
// hand, no connection and no clock.
#include <criterion/criterion.h>

#include <memory>
#include <string>
#include <vector>

#include "pgplex/cluster/derive.h"

using namespace pgplex;
using namespace pgplex::cluster;

namespace {

struct Fixture {
    config::Cluster settings;
    std::vector<std::unique_ptr<NodeState>> owned;
    std::vector<NodeState*> nodes;
    Derivation derived;

    Fixture() {
        settings.name = "pg-test";
        settings.failover = config::Failover::Promote;
        settings.max_failover_lag_bytes = 1 << 20;
        add("a:1", Role::Primary, 0x5000000);
        add("b:2", Role::Replica, 0x4ff0000);
        add("c:3", Role::Replica, 0x4f00000);
        for (NodeState* node : nodes) node->health.observe(true, 1, 1);
        derive(settings, derived, nodes);
    }
    NodeState& add(const std::string& name, Role role, uint64_t lsn) {
        owned.push_back(std::make_unique<NodeState>());
        NodeState& node = *owned.back();
        node.config.name = name;
        node.status.name = name;
        node.status.healthy = true;
        node.status.role = role;
        node.status.replay_lsn = lsn;
        node.status.current_lsn = role == Role::Primary ? lsn : 0;
        nodes.push_back(&node);
        return node;
    }
    void set_down(int index) {
        NodeState& node = *nodes[size_t(index)];
        node.health.observe(false, 1, 1);
        node.status.healthy = node.health.up;
    }
    int candidate(std::string& why) { return choose_candidate(settings, derived, nodes, why); }
};

}  // namespace

Test(derive, a_healthy_primary_is_never_replaced) {
    Fixture f;
    cr_assert_eq(f.derived.primary, 0);
    cr_assert_not(promotion_due(f.settings, f.derived, f.nodes));
}

Test(derive, a_down_primary_with_promote_is_replaced_by_the_most_advanced_replica) {
    Fixture f;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    cr_assert_eq(f.derived.primary, -1);
    cr_assert(promotion_due(f.settings, f.derived, f.nodes));
    std::string why;
    cr_assert_eq(f.candidate(why), 1, "%s", why.c_str());
}

Test(derive, follow_mode_never_promotes) {
    Fixture f;
    f.settings.failover = config::Failover::Follow;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    cr_assert_not(promotion_due(f.settings, f.derived, f.nodes));
}

Test(derive, nothing_is_promoted_before_a_primary_was_ever_seen) {
    Fixture f;
    Derivation fresh;
    f.set_down(0);
    derive(f.settings, fresh, f.nodes);
    fresh.last_primary.clear();
    cr_assert_not(promotion_due(f.settings, fresh, f.nodes));
}

Test(derive, a_replica_that_already_claims_primary_stops_the_promotion) {
    Fixture f;
    f.set_down(0);
    f.nodes[2]->status.role = Role::Primary;
    derive(f.settings, f.derived, f.nodes);
    cr_assert_eq(f.derived.primary, 2);
    cr_assert_not(promotion_due(f.settings, f.derived, f.nodes));
}

Test(derive, delayed_paused_offline_and_fenced_replicas_are_never_candidates) {
    Fixture f;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    f.nodes[1]->status.apply_delay_ms = 3'600'000;
    std::string why;
    cr_assert_eq(f.candidate(why), 2);
    f.nodes[2]->status.replay_paused = true;
    cr_assert_eq(f.candidate(why), -1);
    cr_assert(why.find("b:2 delayed") != std::string::npos, "%s", why.c_str());
    cr_assert(why.find("c:3 replay paused") != std::string::npos, "%s", why.c_str());
    f.nodes[2]->status.replay_paused = false;
    f.nodes[2]->status.options.offline = true;
    cr_assert_eq(f.candidate(why), -1);
    f.nodes[2]->status.options.offline = false;
    f.nodes[2]->status.fenced = true;
    cr_assert_eq(f.candidate(why), -1);
    cr_assert(why.find("c:3 fenced") != std::string::npos, "%s", why.c_str());
}

Test(derive, a_replica_beyond_max_failover_lag_is_not_promoted) {
    Fixture f;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    f.settings.max_failover_lag_bytes = 0x8000;  // b:2 is 0x10000 behind
    std::string why;
    cr_assert_eq(f.candidate(why), -1);
    cr_assert(why.find("max_failover_lag") != std::string::npos, "%s", why.c_str());
    cr_assert_eq(choose_candidate(f.settings, f.derived, f.nodes, why, false), 1);
}

Test(derive, the_old_primary_is_fenced_when_another_node_becomes_primary) {
    Fixture f;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    uint64_t epoch = f.derived.epoch;
    f.nodes[1]->status.role = Role::Primary;
    derive(f.settings, f.derived, f.nodes);
    cr_assert_eq(f.derived.primary, 1);
    cr_assert_eq(f.derived.epoch, epoch + 1);
    cr_assert(f.nodes[0]->status.fenced);
    // Back from the dead, still saying primary: never chosen again.
    f.nodes[0]->health.observe(true, 1, 1);
    f.nodes[0]->status.healthy = true;
    f.nodes[0]->became_primary_us = 1'000'000'000;
    f.set_down(1);
    derive(f.settings, f.derived, f.nodes);
    cr_assert_eq(f.derived.primary, -1);
}

Test(derive, a_primary_that_restarts_in_place_is_not_fenced) {
    Fixture f;
    f.set_down(0);
    derive(f.settings, f.derived, f.nodes);
    f.nodes[0]->health.observe(true, 1, 1);
    f.nodes[0]->status.healthy = true;
    derive(f.settings, f.derived, f.nodes);
    cr_assert_eq(f.derived.primary, 0);
    cr_assert_not(f.nodes[0]->status.fenced);
}
