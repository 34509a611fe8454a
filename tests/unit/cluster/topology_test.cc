// Selectors (what compiles, what an error says, how operators bind) and which nodes carry
// each of the spec's default services: members, else backups, within max_lag, never a node
// that is down or whose role is not known yet.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/topology.h"

using namespace pgplex::cluster;

namespace {

Selector compiled(std::string_view text) {
    Selector selector;
    std::string reason;
    cr_assert(Selector::compile(text, selector, reason), "%s: %s", std::string(text).c_str(),
              reason.c_str());
    cr_assert(reason.empty());
    return selector;
}

std::string compile_error(std::string_view text) {
    Selector selector;
    std::string reason;
    cr_assert_not(Selector::compile(text, selector, reason), "%s compiled",
                  std::string(text).c_str());
    cr_assert_not(reason.empty());
    return reason;
}

NodeStatus node(std::string name, Role role) {
    NodeStatus out;
    out.name = std::move(name);
    out.role = role;
    out.healthy = true;
    out.lag_bytes = 0;
    out.lag_ms = 0;
    return out;
}

ServiceRule rule(std::string_view selector, std::string_view backup = {}) {
    ServiceRule out;
    out.selector = compiled(selector);
    out.backup = compiled(backup);
    return out;
}

// The spec's default services and the two other well-known names.
ServiceRule primary_service() {
    return rule("primary");
}
ServiceRule replica_service() {
    return rule("replica && !offline && !delayed", "primary || (replica && offline)");
}
ServiceRule default_service() {
    return rule("primary");
}
ServiceRule offline_service() {
    return rule("replica && (offline || offline_query) && !delayed",
                "replica && !offline && !offline_query && !delayed");
}
ServiceRule standby_service() {
    return rule("sync", "primary");
}
ServiceRule delayed_service() {
    return rule("delayed");
}

// p: primary; r: sync replica; o: dedicated offline replica; q: replica taking offline
// queries; d: replica an hour behind on purpose.
ClusterStatus test_cluster() {
    ClusterStatus cluster;
    cluster.name = "pg-test";
    cluster.nodes.push_back(node("p", Role::Primary));
    cluster.nodes.push_back(node("r", Role::Replica));
    cluster.nodes.back().sync = true;
    cluster.nodes.push_back(node("o", Role::Replica));
    cluster.nodes.back().options.offline = true;
    cluster.nodes.push_back(node("q", Role::Replica));
    cluster.nodes.back().options.offline_query = true;
    cluster.nodes.push_back(node("d", Role::Replica));
    cluster.nodes.back().apply_delay_ms = 3'600'000;
    cluster.primary = 0;
    return cluster;
}

NodeStatus& named(ClusterStatus& cluster, std::string_view name) {
    for (NodeStatus& status : cluster.nodes)
        if (status.name == name) return status;
    cr_assert_fail("no node %s", std::string(name).c_str());
    return cluster.nodes[0];
}

void set_down(ClusterStatus& cluster, std::initializer_list<std::string_view> names) {
    for (std::string_view name : names) named(cluster, name).healthy = false;
}

// "p,o" for members p and o; "backup:p" when the backups carry it; "" for nobody.
std::string carried(const ServiceRule& service, const ClusterStatus& cluster) {
    Carriers carriers = pgplex::cluster::carriers(service, cluster);
    std::string out = carriers.backup ? "backup:" : "";
    for (size_t i = 0; i < carriers.nodes.size(); ++i) {
        if (i > 0) out += ',';
        out += cluster.nodes[size_t(carriers.nodes[i])].name;
    }
    if (carriers.backup) cr_assert_not(carriers.nodes.empty());
    return out;
}

bool selects(std::string_view text, const NodeStatus& status) {
    return matches(compiled(text), status);
}

}  // namespace

// --- compiling -------------------------------------------------------------------------------

Test(selector, an_unknown_predicate_is_named_with_its_offset) {
    std::string reason = compile_error("primary && master");
    cr_assert(reason.find("unknown predicate \"master\"") != std::string::npos, "%s",
              reason.c_str());
    cr_assert(reason.find("at offset 11") != std::string::npos, "%s", reason.c_str());
}

Test(selector, an_unclosed_parenthesis_is_reported_at_the_end) {
    assert_text(compile_error("(primary || replica"), "expected ) at offset 19");
    assert_text(compile_error("((replica && sync)"), "expected ) at offset 18");
}

Test(selector, text_after_a_whole_selector_is_reported_where_it_starts) {
    assert_text(compile_error("primary)"), "unexpected text at offset 7");
    assert_text(compile_error("primary replica"), "unexpected text at offset 8");
    assert_text(compile_error("primary & replica"), "unexpected text at offset 8");
    assert_text(compile_error("primary | replica"), "unexpected text at offset 8");
}

Test(selector, a_missing_operand_is_reported) {
    assert_text(compile_error("primary &&"), "expected a predicate at offset 10");
    assert_text(compile_error("!"), "expected a predicate at offset 1");
    assert_text(compile_error("()"), "expected a predicate at offset 1");
    assert_text(compile_error("|| replica"), "expected a predicate at offset 0");
}

Test(selector, predicates_are_whole_lower_case_words) {
    cr_assert(compile_error("Primary").find("unknown predicate \"Primary\"") == 0);
    cr_assert(compile_error("primary_x").find("unknown predicate \"primary_x\"") == 0);
    cr_assert(compile_error("offline-query").find("unexpected text at offset 7") == 0);
}

Test(selector, nesting_deeper_than_the_limit_is_refused) {
    std::string deep = std::string(63, '(') + "primary" + std::string(63, ')');
    compiled(deep);
    std::string deeper = std::string(64, '(') + "primary" + std::string(64, ')');
    cr_assert(compile_error(deeper).find("too deeply nested") == 0);
    cr_assert(compile_error(std::string(200, '!') + "any").find("too deeply nested") == 0);
}

Test(selector, an_empty_selector_selects_nothing) {
    cr_assert(compiled("").empty());
    cr_assert(compiled(" \t\n").empty());
    cr_assert_not(matches(compiled(""), node("p", Role::Primary)));
}

Test(selector, a_failed_compile_leaves_an_empty_selector) {
    Selector selector = compiled("primary");
    std::string reason;
    cr_assert_not(Selector::compile("replica && (", selector, reason));
    cr_assert(selector.empty());
    cr_assert_not(matches(selector, node("r", Role::Replica)));
}

// --- matching --------------------------------------------------------------------------------

Test(selector, not_binds_tighter_than_and) {
    NodeStatus primary = node("p", Role::Primary);
    NodeStatus replica = node("r", Role::Replica);
    // (!primary) && replica, not !(primary && replica)
    cr_assert_not(selects("!primary && replica", primary));
    cr_assert(selects("!primary && replica", replica));
    cr_assert(selects("!(primary && replica)", primary));
}

Test(selector, and_binds_tighter_than_or) {
    NodeStatus primary = node("p", Role::Primary);
    NodeStatus replica = node("r", Role::Replica);
    // primary || (replica && offline), not (primary || replica) && offline
    cr_assert(selects("primary || replica && offline", primary));
    cr_assert_not(selects("primary || replica && offline", replica));
    cr_assert_not(selects("(primary || replica) && offline", primary));
    cr_assert(selects("replica && offline || primary", primary));
    replica.options.offline = true;
    cr_assert(selects("primary || replica && offline", replica));
}

Test(selector, not_applies_to_a_parenthesised_group_and_stacks) {
    NodeStatus replica = node("r", Role::Replica);
    cr_assert(selects("!(primary || offline)", replica));
    cr_assert(selects("!!replica", replica));
    cr_assert_not(selects("!!!replica", replica));
    cr_assert(selects("  ( replica&&!offline )  ", replica));
}

Test(selector, each_predicate_reads_its_fact) {
    NodeStatus primary = node("p", Role::Primary);
    NodeStatus replica = node("r", Role::Replica);
    primary.sync = true;  // never set on a primary; sync still means a sync replica
    cr_assert_not(selects("sync", primary));
    cr_assert_not(selects("sync", replica));
    replica.sync = true;
    cr_assert(selects("sync", replica));
    cr_assert_not(selects("delayed", replica));
    replica.apply_delay_ms = 1;
    cr_assert(selects("delayed", replica));
    primary.apply_delay_ms = 1;  // recovery_min_apply_delay means nothing on a primary
    cr_assert_not(selects("delayed", primary));
    replica.options.offline_query = true;
    cr_assert(selects("offline_query && !offline", replica));
    cr_assert(selects("any", node("u", Role::Unknown)));
    cr_assert_not(selects("primary || replica", node("u", Role::Unknown)));
}

Test(selector, long_chains_of_operators_evaluate) {
    std::string chain = "primary";
    for (int i = 0; i < 300; ++i) chain += i % 2 ? " || replica" : " && !offline";
    cr_assert(selects(chain, node("r", Role::Replica)));
}

// --- carriers of the default services --------------------------------------------------------

Test(carriers, the_primary_and_default_services_go_to_the_primary_only) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(primary_service(), cluster), "p");
    assert_text(carried(default_service(), cluster), "p");
    set_down(cluster, {"p"});
    assert_text(carried(primary_service(), cluster), "");
    assert_text(carried(default_service(), cluster), "");
}

Test(carriers, the_replica_service_takes_online_replicas_including_offline_query_ones) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(replica_service(), cluster), "r,q");
    set_down(cluster, {"r"});
    assert_text(carried(replica_service(), cluster), "q");
}

Test(carriers, the_replica_service_falls_back_to_the_primary_and_offline_replicas) {
    ClusterStatus cluster = test_cluster();
    set_down(cluster, {"r", "q"});
    assert_text(carried(replica_service(), cluster), "backup:p,o");
    set_down(cluster, {"o"});
    assert_text(carried(replica_service(), cluster), "backup:p");
    set_down(cluster, {"p"});
    assert_text(carried(replica_service(), cluster), "");  // d is delayed: never a backup
}

Test(carriers, the_offline_service_takes_offline_replicas_then_online_ones) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(offline_service(), cluster), "o,q");
    set_down(cluster, {"o"});
    assert_text(carried(offline_service(), cluster), "q");
    set_down(cluster, {"q"});
    assert_text(carried(offline_service(), cluster), "backup:r");
}

Test(carriers, the_offline_service_never_falls_back_to_the_primary) {
    ClusterStatus cluster = test_cluster();
    set_down(cluster, {"r", "o", "q", "d"});
    assert_text(carried(offline_service(), cluster), "");
    assert_text(carried(primary_service(), cluster), "p");
}

Test(carriers, the_standby_service_takes_sync_replicas_then_the_primary) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(standby_service(), cluster), "r");
    set_down(cluster, {"r"});
    assert_text(carried(standby_service(), cluster), "backup:p");
}

Test(carriers, the_delayed_service_has_no_backup) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(delayed_service(), cluster), "d");
    set_down(cluster, {"d"});
    assert_text(carried(delayed_service(), cluster), "");
}

Test(carriers, a_replica_patroni_keeps_out_of_load_balancing_carries_no_service) {
    // Patroni's noloadbalance tag: 503 on /replica, /read-only and /sync, so HAProxy's
    // checks give it no service; nor does pgplex, though it stays a healthy replica.
    ClusterStatus cluster = test_cluster();
    named(cluster, "r").noloadbalance = true;
    assert_text(carried(replica_service(), cluster), "q");
    assert_text(carried(standby_service(), cluster), "backup:p");
    assert_text(carried(primary_service(), cluster), "p");
    named(cluster, "q").noloadbalance = true;
    assert_text(carried(replica_service(), cluster), "backup:p,o");
}

// --- lag limits and health -------------------------------------------------------------------

Test(carriers, a_replica_further_behind_than_max_lag_bytes_leaves_rotation) {
    ClusterStatus cluster = test_cluster();
    ServiceRule service = replica_service();
    service.max_lag_bytes = 1'000;
    named(cluster, "r").lag_bytes = 1'000;  // at the limit: still in
    named(cluster, "q").lag_bytes = 1'001;
    assert_text(carried(service, cluster), "r");
    named(cluster, "r").lag_bytes = 5'000;
    named(cluster, "o").lag_bytes = 10;
    assert_text(carried(service, cluster), "backup:p,o");
}

Test(carriers, a_replica_further_behind_than_max_lag_ms_leaves_rotation) {
    ClusterStatus cluster = test_cluster();
    ServiceRule service = offline_service();
    service.max_lag_ms = 500;
    named(cluster, "o").lag_ms = 501;
    named(cluster, "q").lag_ms = 500;
    assert_text(carried(service, cluster), "q");
    named(cluster, "q").lag_ms = 10'000;
    named(cluster, "r").lag_ms = 20;
    assert_text(carried(service, cluster), "backup:r");
}

Test(carriers, unknown_lag_counts_as_over_a_limit_and_as_within_none) {
    ClusterStatus cluster = test_cluster();
    named(cluster, "q").lag_bytes = -1;
    named(cluster, "r").lag_ms = -1;
    assert_text(carried(replica_service(), cluster), "r,q");
    ServiceRule by_bytes = replica_service();
    by_bytes.max_lag_bytes = 1 << 20;
    assert_text(carried(by_bytes, cluster), "r");
    ServiceRule by_time = replica_service();
    by_time.max_lag_ms = 10'000;
    assert_text(carried(by_time, cluster), "q");
}

Test(carriers, the_primary_is_never_over_a_lag_limit) {
    ClusterStatus cluster = test_cluster();
    named(cluster, "p").lag_bytes = -1;
    named(cluster, "p").lag_ms = 1'000'000;
    ServiceRule service = primary_service();
    service.max_lag_bytes = 0;
    service.max_lag_ms = 0;
    assert_text(carried(service, cluster), "p");
}

Test(carriers, unhealthy_and_unknown_nodes_never_carry_even_for_any) {
    ClusterStatus cluster = test_cluster();
    cluster.nodes.push_back(node("u", Role::Unknown));  // healthy, role not read yet
    set_down(cluster, {"p", "r"});
    assert_text(carried(rule("any"), cluster), "o,q,d");
    assert_text(carried(rule("!primary && !replica"), cluster), "");
    assert_text(carried(rule("primary", "!replica"), cluster), "");
    set_down(cluster, {"o", "q", "d"});
    assert_text(carried(rule("any", "any"), cluster), "");
}

Test(carriers, members_win_over_backups_even_when_backups_are_more) {
    ClusterStatus cluster = test_cluster();
    assert_text(carried(rule("delayed", "any"), cluster), "d");
    assert_text(carried(rule("", "primary"), cluster), "backup:p");
}

// --- the snapshot ----------------------------------------------------------------------------

Test(topology, clusters_are_found_by_name) {
    Topology topology;
    topology.clusters.push_back(test_cluster());
    topology.clusters.push_back(ClusterStatus{"pg-meta", {}, -1, 0});
    cr_assert_eq(topology.find("pg-meta"), &topology.clusters[1]);
    cr_assert_eq(topology.find("pg-test"), &topology.clusters[0]);
    cr_assert_null(topology.find("pg"));
}

Test(topology, roles_are_named_as_show_nodes_prints_them) {
    assert_text(to_string(Role::Unknown), "unknown");
    assert_text(to_string(Role::Primary), "primary");
    assert_text(to_string(Role::Replica), "replica");
}

Test(selector, the_deepest_selector_that_compiles_still_evaluates) {
    // Every level leaves two values waiting ("primary || replica && (...)"): the evaluation
    // stack must hold what the nesting limit lets through.
    std::string text = "primary || replica && offline";
    for (int i = 0; i < 63; ++i) text = "primary || replica && (" + text + ")";
    NodeStatus replica = node("r", Role::Replica);
    replica.options.offline = true;
    cr_assert(selects(text, replica));
    cr_assert(selects(text, node("p", Role::Primary)));
    cr_assert_not(selects(text, node("q", Role::Replica)));
}
