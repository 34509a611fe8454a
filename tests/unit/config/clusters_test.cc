// Loading [clusters] (nodes, monitor settings, node_options, services), [[rules]],
// [[rewrites]], aliases that route over a cluster, admin_users and read_only_functions:
// every value read right, Pigsty's default services filled in, and each mistake reported
// as exactly "file:line: reason".
#include <arpa/inet.h>
#include <criterion/criterion.h>

#include <netinet/in.h>
#include "../support.h"

#include <string>
#include <vector>

#include "pgplex/config/config.h"

using config_test::assert_refused;
using config_test::load_text;
using config_test::loaded;
using config_test::TempDir;
using pgplex::config::Balance;
using pgplex::config::Cluster;
using pgplex::config::Config;
using pgplex::config::Dest;
using pgplex::config::LoadResult;
using pgplex::config::Service;

namespace {

// Lines 1-3; a TCP and a Unix listen address, so services show which they take.
const std::string head =
    "[pgplex]\nlisten = [\"127.0.0.1:6432\", \"/tmp:6432\"]\nauth_type = \"trust\"\n";
// Lines 4-5, so settings of cluster c added after it start at line 6.
const std::string cluster_c = "[clusters.c]\nnodes = [\"127.0.0.1:25432\", \"127.0.0.1:25433\"]\n";

const std::string lag_reason =
    "max_lag must be a duration (\"500ms\", \"10s\") or a size (\"0B\", \"64kB\", \"16MB\")";

std::vector<std::string> listen_of(const Service& service) {
    std::vector<std::string> out;
    for (const pgplex::config::Endpoint& endpoint : service.listen)
        out.push_back(endpoint.to_string());
    return out;
}

void assert_lag(const std::string& value, int64_t ms, int64_t bytes) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c + "max_lag = " + value + "\n");
    const Cluster& cluster = loaded(result).clusters.at(0);
    cr_assert_eq(cluster.max_lag_ms, ms, "%s: %ld ms", value.c_str(), long(cluster.max_lag_ms));
    cr_assert_eq(cluster.max_lag_bytes, bytes, "%s: %ld bytes", value.c_str(),
                 long(cluster.max_lag_bytes));
}

// The service of that name (services come in toml++'s order, by name, not the file's).
const Service& service_named(const Cluster& cluster, const std::string& name) {
    for (const Service& service : cluster.services)
        if (service.name == name) return service;
    cr_assert_fail("no service %s", name.c_str());
    return cluster.services.at(0);
}

// Checks one of Pigsty's default services as load_cluster.cc's table gives it.
void assert_default_service(const Service& service, const char* name, const char* port,
                            const char* selector, const char* backup, Dest dest) {
    assert_text(service.name, name);
    assert_text(service.cluster, "c");
    cr_assert_eq(service.line, 4u, "%s", name);
    assert_text(service.selector, selector);
    assert_text(service.backup, backup);
    cr_assert_eq(service.dest, dest, "%s", name);
    cr_assert_eq(service.balance, Balance::RoundRobin);
    cr_assert_eq(service.maxconn, 0);
    cr_assert_eq(service.maxqueue, 0);
    cr_assert_eq(service.weight, 100);
    cr_assert_eq(service.slowstart_ms, 0);
    // Every TCP host of [pgplex] listen, never its Unix socket.
    std::vector<std::string> expected = {std::string("127.0.0.1:") + port,
                                         std::string("[::1]:") + port};
    cr_assert(listen_of(service) == expected, "%s", name);
}

}  // namespace

Test(config_clusters, a_cluster_reads_its_nodes_and_monitor_settings) {
    TempDir dir;
    LoadResult result = load_text(dir, head +
                                           "[clusters.pg-test]\n"
                                           "nodes = [\"127.0.0.1:25432\", \"[::1]:25433\"]\n"
                                           "monitor_user = \"monitor\"\n"
                                           "monitor_password = \"pw\"\n"
                                           "monitor_dbname = \"meta\"\n"
                                           "inter = \"2s\"\n"
                                           "fastinter = \"500ms\"\n"
                                           "downinter = \"1m\"\n"
                                           "rise = 5\n"
                                           "fall = 1\n"
                                           "check_timeout = 3\n"
                                           "max_lag = \"10s\"\n"
                                           "patroni_port = 8008\n");
    const Config& c = loaded(result);
    cr_assert_eq(c.clusters.size(), 1u);
    const Cluster& cluster = c.clusters[0];
    cr_assert_eq(c.find_cluster("pg-test"), &cluster);
    cr_assert_null(c.find_cluster("pg"));
    assert_text(cluster.name, "pg-test");
    cr_assert_eq(cluster.line, 4u);
    cr_assert_eq(cluster.nodes.size(), 2u);
    assert_text(cluster.nodes[0].name, "127.0.0.1:25432");
    assert_text(cluster.nodes[0].endpoint.to_string(), "127.0.0.1:25432");
    cr_assert_eq(cluster.nodes[0].endpoint.address.ss_family, AF_INET);
    assert_text(cluster.nodes[1].name, "[::1]:25433");
    cr_assert_eq(cluster.nodes[1].endpoint.address.ss_family, AF_INET6);
    cr_assert_eq(cluster.find_node("[::1]:25433"), &cluster.nodes[1]);
    cr_assert_null(cluster.find_node("127.0.0.1:1"));
    assert_text(cluster.monitor_user, "monitor");
    assert_text(cluster.monitor_password, "pw");
    assert_text(cluster.monitor_dbname, "meta");
    cr_assert_eq(cluster.inter_ms, 2'000);
    cr_assert_eq(cluster.fastinter_ms, 500);
    cr_assert_eq(cluster.downinter_ms, 60'000);
    cr_assert_eq(cluster.rise, 5);
    cr_assert_eq(cluster.fall, 1);
    cr_assert_eq(cluster.check_timeout_ms, 3'000);
    cr_assert_eq(cluster.max_lag_ms, 10'000);
    cr_assert_eq(cluster.max_lag_bytes, -1);
    cr_assert_eq(cluster.patroni_port, 8008);
}

Test(config_clusters, monitor_settings_left_out_keep_their_defaults) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c);
    const Cluster& cluster = loaded(result).clusters.at(0);
    assert_text(cluster.monitor_user, "postgres");
    assert_text(cluster.monitor_password, "");
    assert_text(cluster.monitor_dbname, "postgres");
    cr_assert_eq(cluster.inter_ms, 1'000);
    cr_assert_eq(cluster.fastinter_ms, 1'000);
    cr_assert_eq(cluster.downinter_ms, 1'000);
    cr_assert_eq(cluster.rise, 2);
    cr_assert_eq(cluster.fall, 3);
    cr_assert_eq(cluster.check_timeout_ms, 2'000);
    cr_assert_eq(cluster.max_lag_ms, -1);
    cr_assert_eq(cluster.max_lag_bytes, -1);
    cr_assert_eq(cluster.patroni_port, 0);
    for (const pgplex::config::Node& node : cluster.nodes) {
        cr_assert_not(node.options.offline);
        cr_assert_not(node.options.offline_query);
        cr_assert_eq(node.options.weight, 100);
    }
}

Test(config_clusters, fastinter_and_downinter_default_to_inter) {
    TempDir dir;
    LoadResult both = load_text(dir, head + cluster_c + "inter = \"3s\"\n");
    const Cluster& a = loaded(both).clusters.at(0);
    cr_assert_eq(a.inter_ms, 3'000);
    cr_assert_eq(a.fastinter_ms, 3'000);
    cr_assert_eq(a.downinter_ms, 3'000);
    // Written before inter, fastinter still keeps its own value.
    LoadResult one = load_text(dir, head + cluster_c + "fastinter = \"100ms\"\ninter = \"4s\"\n");
    const Cluster& b = loaded(one).clusters.at(0);
    cr_assert_eq(b.inter_ms, 4'000);
    cr_assert_eq(b.fastinter_ms, 100);
    cr_assert_eq(b.downinter_ms, 4'000);
}

Test(config_clusters, max_lag_is_a_duration_or_a_size) {
    assert_lag("\"500ms\"", 500, -1);
    assert_lag("\"10s\"", 10'000, -1);
    assert_lag("10", 10'000, -1);
    assert_lag("\"0\"", 0, -1);
    assert_lag("\"16MB\"", -1, 16 << 20);
    assert_lag("\"0B\"", -1, 0);
    assert_lag("\"64kB\"", -1, 64 << 10);
    assert_lag("\"2GB\"", -1, int64_t(2) << 30);
    assert_lag("\"8589934591GB\"", -1, int64_t(8589934591) << 30);  // the largest that fits
}

Test(config_clusters, a_bad_max_lag_is_an_error) {
    for (const char* bad : {"\"16 MB\"", "\"1TB\"", "\"MB\"", "\"-1\"", "-1", "\"soon\"", "true",
                            "\"1234567890123MB\"", "\"999999999999GB\"", "\"8589934592GB\""}) {
        assert_refused(head + cluster_c + "max_lag = " + bad + "\n",
                       "DIR/pgplex.toml:6: " + lag_reason);
    }
}

Test(config_clusters, monitor_settings_out_of_range_are_errors) {
    const std::string at = "DIR/pgplex.toml:6: ";
    assert_refused(head + cluster_c + "rise = 0\n", at + "rise must be between 1 and 100");
    assert_refused(head + cluster_c + "fall = 101\n", at + "fall must be between 1 and 100");
    assert_refused(head + cluster_c + "rise = \"2\"\n", at + "rise must be an integer");
    assert_refused(head + cluster_c + "patroni_port = 0\n",
                   at + "patroni_port must be between 1 and 65535");
    assert_refused(head + cluster_c + "patroni_port = 65536\n",
                   at + "patroni_port must be between 1 and 65535");
    assert_refused(head + cluster_c + "check_timeout = \"0ms\"\n",
                   at + "check_timeout must be more than zero");
    assert_refused(head + cluster_c + "check_timeout = \"2 s\"\n",
                   at + "check_timeout must be a duration such as \"250ms\", \"600s\", \"10m\" "
                        "or \"1h\", or a whole number of seconds");
    assert_refused(head + cluster_c + "inter = -1\n", at + "inter must not be negative");
    assert_refused(head + cluster_c + "monitor_user = 1\n", at + "monitor_user must be a string");
    const std::string zero =
        "DIR/pgplex.toml:4: [clusters.c]: inter, fastinter and downinter must be more than zero";
    assert_refused(head + cluster_c + "inter = 0\n", zero);
    assert_refused(head + cluster_c + "inter = \"1s\"\nfastinter = \"0s\"\n", zero);
    assert_refused(head + cluster_c + "downinter = 0\n", zero);
}

Test(config_clusters, a_bad_cluster_table_is_an_error) {
    const std::string at = "DIR/pgplex.toml:5: ";
    assert_refused(head + "[clusters.c]\nmonitor_user = \"m\"\n",
                   "DIR/pgplex.toml:4: [clusters.c] needs nodes");
    assert_refused(head + "[clusters.c]\nnodes = []\n", at + "nodes must name at least one node");
    assert_refused(head + "[clusters.c]\nnodes = \"127.0.0.1:1\"\n",
                   at + "nodes must be an array of strings");
    assert_refused(head + "[clusters.c]\nnodes = [\"127.0.0.1:1\",\n  2]\n",
                   "DIR/pgplex.toml:6: nodes must hold strings");
    assert_refused(head + "[clusters.c]\nnodes = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
                   at + "nodes names \"127.0.0.1:1\" twice");
    assert_refused(head + "[clusters.c]\nnodes = [\"127.0.0.1\"]\n",
                   at + "nodes has a bad node \"127.0.0.1\": expected host:port");
    std::string many = "[clusters.c]\nnodes = [\"127.0.0.1:1000\"";
    for (int port = 1001; port <= 1064; port++)
        many += ", \"127.0.0.1:" + std::to_string(port) + "\"";
    assert_refused(head + many + "]\n", at + "nodes may name at most 64");
    assert_refused(head + cluster_c + "role = \"primary\"\n",
                   "DIR/pgplex.toml:6: unknown setting \"role\" in [clusters.c]");
    assert_refused(head + cluster_c + "node_options = 1\n",
                   "DIR/pgplex.toml:6: node_options must be a table of tables, one per node");
    assert_refused(head + cluster_c + "services = [1]\n",
                   "DIR/pgplex.toml:6: services must be a table of tables, one per service");
    assert_refused("clusters = 1\n" + head, "DIR/pgplex.toml:1: clusters must be a table");
    assert_refused(head + "[clusters]\nc = 1\n", at + "[clusters.c] must be a table");
    assert_refused(head + "[clusters.\"c@x\"]\nnodes = [\"127.0.0.1:1\"]\n",
                   "DIR/pgplex.toml:4: cluster name must be 1 to 63 bytes long, without '@'");
    assert_refused(head + "[clusters.\"\"]\nnodes = [\"127.0.0.1:1\"]\n",
                   "DIR/pgplex.toml:4: cluster name must be 1 to 63 bytes long, without '@'");
}

Test(config_clusters, node_options_set_offline_offline_query_and_weight) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "[clusters.c.node_options.\"127.0.0.1:25433\"]\n"
                                           "offline = true\n"
                                           "offline_query = true\n"
                                           "weight = 0\n");
    const Cluster& cluster = loaded(result).clusters.at(0);
    const pgplex::config::NodeOptions& plain = cluster.nodes.at(0).options;
    cr_assert_not(plain.offline);
    cr_assert_not(plain.offline_query);
    cr_assert_eq(plain.weight, 100);
    const pgplex::config::NodeOptions& options = cluster.nodes.at(1).options;
    cr_assert(options.offline);
    cr_assert(options.offline_query);
    cr_assert_eq(options.weight, 0);
    LoadResult inline_table = load_text(
        dir, head + cluster_c +
                 "node_options = { \"127.0.0.1:25432\" = { weight = 256, offline = false } }\n");
    cr_assert_eq(loaded(inline_table).clusters.at(0).nodes.at(0).options.weight, 256);
}

Test(config_clusters, bad_node_options_are_errors) {
    const std::string options = "[clusters.c.node_options.\"127.0.0.1:25433\"]\n";
    assert_refused(head + cluster_c + options + "weight = 257\n",
                   "DIR/pgplex.toml:7: weight must be between 0 and 256");
    assert_refused(head + cluster_c + options + "offline = \"yes\"\n",
                   "DIR/pgplex.toml:7: offline must be true or false");
    assert_refused(head + cluster_c + options + "role = \"offline\"\n",
                   "DIR/pgplex.toml:7: unknown setting \"role\" in "
                   "[clusters.c.node_options.\"127.0.0.1:25433\"]");
    assert_refused(head + cluster_c + "[clusters.c.node_options]\n\"127.0.0.1:25433\" = 1\n",
                   "DIR/pgplex.toml:7: [clusters.c.node_options.\"127.0.0.1:25433\"] must be a "
                   "table");
}

Test(config_clusters, node_options_for_a_node_not_in_nodes_is_an_error_on_its_line) {
    assert_refused(head + cluster_c + "\n[clusters.c.node_options.\"127.0.0.1:9\"]\nweight = 1\n",
                   "DIR/pgplex.toml:7: [clusters.c.node_options.\"127.0.0.1:9\"] names a node "
                   "that is not in nodes");
    assert_refused(head + cluster_c +
                       "[clusters.c.node_options]\n"
                       "\"127.0.0.1:25432\" = { offline = true }\n"
                       "\"localhost:25433\" = { offline = true }\n",
                   "DIR/pgplex.toml:8: [clusters.c.node_options.\"localhost:25433\"] names a "
                   "node that is not in nodes");
}

Test(config_clusters, a_cluster_without_services_gets_pigstys_four) {
    TempDir dir;
    LoadResult result = load_text(dir,
                                  "[pgplex]\n"
                                  "listen = [\"127.0.0.1:6432\", \"/tmp:6432\", \"[::1]:6432\"]\n"
                                  "auth_type = \"trust\"\n" +
                                      cluster_c + "max_lag = \"16MB\"\n");
    const Cluster& cluster = loaded(result).clusters.at(0);
    cr_assert_eq(cluster.services.size(), 4u);
    assert_default_service(cluster.services[0], "primary", "5433", "primary", "", Dest::Pool);
    assert_default_service(cluster.services[1], "replica", "5434",
                           "replica && !offline && !delayed", "primary || (replica && offline)",
                           Dest::Pool);
    assert_default_service(cluster.services[2], "default", "5436", "primary", "", Dest::Direct);
    assert_default_service(cluster.services[3], "offline", "5438",
                           "replica && (offline || offline_query) && !delayed",
                           "replica && !offline && !offline_query && !delayed", Dest::Direct);
    for (const Service& service : cluster.services) {
        cr_assert_eq(service.max_lag_ms, -1);  // the cluster's max_lag
        cr_assert_eq(service.max_lag_bytes, 16 << 20);
    }
}

Test(config_clusters, default_services_on_a_star_listen_take_every_address) {
    TempDir dir;
    LoadResult result =
        load_text(dir, "[pgplex]\nlisten = \"*:6432\"\nauth_type = \"trust\"\n" + cluster_c);
    const Service& primary = loaded(result).clusters.at(0).services.at(0);
    cr_assert(listen_of(primary) == std::vector<std::string>{"*:5433"});
    const auto* address = reinterpret_cast<const sockaddr_in*>(&primary.listen[0].address);
    cr_assert_eq(address->sin_family, AF_INET);
    cr_assert_eq(address->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_assert_eq(ntohs(address->sin_port), 5433);
}

Test(config_clusters, a_service_without_a_host_needs_a_tcp_listen_address) {
    const std::string unix_only = "[pgplex]\nlisten = \"/tmp:6432\"\nauth_type = \"trust\"\n";
    assert_refused(unix_only + cluster_c,
                   "DIR/pgplex.toml:4: service c.primary needs a host: [pgplex] listen has no "
                   "TCP address");
    assert_refused(unix_only + cluster_c + "[clusters.c.services.primary]\nport = 7000\n",
                   "DIR/pgplex.toml:6: service c.primary needs a host: [pgplex] listen has no "
                   "TCP address");
    TempDir dir;
    LoadResult result =
        load_text(dir, unix_only + cluster_c +
                           "[clusters.c.services.primary]\nport = 7000\nhost = \"/tmp\"\n");
    const Service& service = loaded(result).clusters.at(0).services.at(0);
    cr_assert(listen_of(service) == std::vector<std::string>{"/tmp/.s.PGSQL.7000"});
}

Test(config_clusters, well_known_service_names_bring_their_selector_backup_and_dest) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "[clusters.c.services.standby]\nport = 7001\n"
                                           "[clusters.c.services.delayed]\nport = 7002\n"
                                           "[clusters.c.services.default]\nport = 7003\n"
                                           "[clusters.c.services.replica]\nport = 7004\n"
                                           "selector = \"replica\"\n");
    const Cluster& cluster = loaded(result).clusters.at(0);
    cr_assert_eq(cluster.services.size(), 4u, "configured services replace the defaults");
    const Service& standby = service_named(cluster, "standby");
    cr_assert_eq(standby.line, 6u);
    assert_text(standby.selector, "sync");
    assert_text(standby.backup, "primary");
    cr_assert_eq(standby.dest, Dest::Pool);
    cr_assert(listen_of(standby) == std::vector<std::string>{"127.0.0.1:7001"});
    const Service& delayed = service_named(cluster, "delayed");
    cr_assert_eq(delayed.line, 8u);
    assert_text(delayed.selector, "delayed");
    assert_text(delayed.backup, "");
    cr_assert_eq(delayed.dest, Dest::Pool);
    const Service& direct = service_named(cluster, "default");
    assert_text(direct.selector, "primary");
    assert_text(direct.backup, "");
    cr_assert_eq(direct.dest, Dest::Direct);
    // A selector of its own: the well-known backup is not implied.
    const Service& replica = service_named(cluster, "replica");
    assert_text(replica.selector, "replica");
    assert_text(replica.backup, "");
    cr_assert_eq(replica.dest, Dest::Pool);
}

Test(config_clusters, a_custom_service_needs_a_port_and_a_selector) {
    assert_refused(head + cluster_c + "[clusters.c.services.reports]\nport = 7000\n",
                   "DIR/pgplex.toml:6: service c.reports needs a selector (only primary, "
                   "replica, default, offline, standby and delayed have one by default)");
    assert_refused(head + cluster_c + "[clusters.c.services.primary]\ndest = \"direct\"\n",
                   "DIR/pgplex.toml:6: service c.primary needs a port");
    assert_refused(head + cluster_c + "[clusters.c.services]\nreports = 7000\n",
                   "DIR/pgplex.toml:7: [clusters.c.services.reports] must be a table");
}

Test(config_clusters, a_bad_selector_names_the_service_the_selector_and_the_offset) {
    const std::string service = "[clusters.c.services.reports]\nport = 7000\n";
    assert_refused(head + cluster_c + service + "selector = \"replica && bogus\"\n",
                   "DIR/pgplex.toml:8: service c.reports: selector \"replica && bogus\": unknown "
                   "predicate \"bogus\" (primary, replica, sync, delayed, offline, offline_query, "
                   "any) at offset 11");
    assert_refused(head + cluster_c + service + "selector = \"replica && (offline\"\n",
                   "DIR/pgplex.toml:8: service c.reports: selector \"replica && (offline\": "
                   "expected ) at offset 19");
    assert_refused(head + cluster_c + service + "selector = \"any\"\nbackup = \"primary ||\"\n",
                   "DIR/pgplex.toml:9: service c.reports: backup \"primary ||\": expected a "
                   "predicate at offset 10");
    assert_refused(
        head + cluster_c + "[clusters.c.services.replica]\nport = 7000\n" + "backup = \"(\"\n",
        "DIR/pgplex.toml:8: service c.replica: backup \"(\": expected a predicate at "
        "offset 1");
    assert_refused(head + cluster_c + service + "selector = 1\n",
                   "DIR/pgplex.toml:8: selector must be a string");
}

Test(config_clusters, a_service_reads_every_setting) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c + "max_lag = \"16MB\"\n" +
                                           "[clusters.c.services.reports]\n"
                                           "port = 7000\n"
                                           "host = \"127.0.0.2\"\n"
                                           "selector = \"replica && !offline\"\n"
                                           "backup = \"primary\"\n"
                                           "dest = \"direct\"\n"
                                           "balance = \"leastconn\"\n"
                                           "max_lag = \"500ms\"\n"
                                           "maxconn = 100000\n"
                                           "maxqueue = 1000000\n"
                                           "weight = 0\n"
                                           "slowstart = \"30s\"\n");
    const Service& service = loaded(result).clusters.at(0).services.at(0);
    assert_text(service.name, "reports");
    assert_text(service.cluster, "c");
    cr_assert_eq(service.line, 7u);
    cr_assert(listen_of(service) == std::vector<std::string>{"127.0.0.2:7000"});
    assert_text(service.selector, "replica && !offline");
    assert_text(service.backup, "primary");
    cr_assert_eq(service.dest, Dest::Direct);
    cr_assert_eq(service.balance, Balance::LeastConn);
    cr_assert_eq(service.max_lag_ms, 500);  // its own, not the cluster's 16MB
    cr_assert_eq(service.max_lag_bytes, -1);
    cr_assert_eq(service.maxconn, 100000);
    cr_assert_eq(service.maxqueue, 1000000);
    cr_assert_eq(service.weight, 0);
    cr_assert_eq(service.slowstart_ms, 30'000);
    assert_text(pgplex::config::to_string(service.dest), "direct");
    assert_text(pgplex::config::to_string(service.balance), "leastconn");
    assert_text(pgplex::config::to_string(Balance::Load), "load");
    assert_text(pgplex::config::to_string(Balance::RoundRobin), "roundrobin");
    assert_text(pgplex::config::to_string(Dest::Pool), "pool");
}

Test(config_clusters, a_service_max_lag_defaults_to_the_clusters) {
    TempDir dir;
    const std::string services =
        "[clusters.c.services.primary]\nport = 7000\n"
        "[clusters.c.services.replica]\nport = 7001\nmax_lag = \"0B\"\n";
    LoadResult result = load_text(dir, head + cluster_c + "max_lag = \"5s\"\n" + services);
    const Cluster& with_lag = loaded(result).clusters.at(0);
    cr_assert_eq(service_named(with_lag, "primary").max_lag_ms, 5'000);
    cr_assert_eq(service_named(with_lag, "primary").max_lag_bytes, -1);
    cr_assert_eq(service_named(with_lag, "replica").max_lag_ms, -1);
    cr_assert_eq(service_named(with_lag, "replica").max_lag_bytes, 0);
    LoadResult none = load_text(dir, head + cluster_c + services);
    const Service& unlimited = service_named(loaded(none).clusters.at(0), "primary");
    cr_assert_eq(unlimited.max_lag_ms, -1);
    cr_assert_eq(unlimited.max_lag_bytes, -1);
    cr_assert_eq(unlimited.balance, Balance::RoundRobin);
}

Test(config_clusters, service_values_out_of_range_are_errors) {
    const std::string service = "[clusters.c.services.primary]\nport = 7000\n";
    const std::string at = "DIR/pgplex.toml:8: ";
    auto refused_with = [&](const std::string& line, const std::string& reason) {
        assert_refused(head + cluster_c + service + line + "\n", at + reason);
    };
    refused_with("dest = \"proxy\"", "dest must be one of \"pool\", \"direct\"");
    refused_with("balance = \"random\"",
                 "balance must be one of \"roundrobin\", \"leastconn\", \"load\"");
    refused_with("maxconn = -1", "maxconn must be between 0 and 100000");
    refused_with("maxconn = 100001", "maxconn must be between 0 and 100000");
    refused_with("maxqueue = 1000001", "maxqueue must be between 0 and 1000000");
    refused_with("weight = 257", "weight must be between 0 and 256");
    refused_with("weight = -1", "weight must be between 0 and 256");
    refused_with("slowstart = \"1 m\"",
                 "slowstart must be a duration such as \"250ms\", \"600s\", \"10m\" or \"1h\", "
                 "or a whole number of seconds");
    refused_with("max_lag = \"16 MB\"", lag_reason);
    refused_with("host = 1", "host must be a string");
    refused_with("host = \"\"", "service c.primary: host is empty");
    refused_with("listen = \"127.0.0.1:7000\"",
                 "unknown setting \"listen\" in [clusters.c.services.primary]");
    assert_refused(head + cluster_c + "[clusters.c.services.primary]\nport = 65536\n",
                   "DIR/pgplex.toml:7: port must be between 1 and 65535");
    assert_refused(head + cluster_c + "[clusters.c.services.primary]\nport = 0\n",
                   "DIR/pgplex.toml:7: port must be between 1 and 65535");
}

Test(config_clusters, two_clusters_with_default_services_clash_on_their_ports) {
    // Clusters are checked in toml++'s order (by name): b's service is the one reported.
    assert_refused(head + "[clusters.b]\nnodes = [\"127.0.0.1:1\"]\n" +
                       "[clusters.a]\nnodes = [\"127.0.0.1:2\"]\n",
                   "DIR/pgplex.toml:4: service b.primary and service a.primary both listen on "
                   "127.0.0.1:5433 (give one of them another port)");
    TempDir dir;
    LoadResult result = load_text(dir, head + "[clusters.b]\nnodes = [\"127.0.0.1:1\"]\n" +
                                           "[clusters.a]\nnodes = [\"127.0.0.1:2\"]\n" +
                                           "[clusters.a.services.primary]\nport = 6433\n");
    const Config& c = loaded(result);
    cr_assert_eq(c.clusters.size(), 2u);
    cr_assert_eq(c.find_cluster("a")->services.size(), 1u);
    cr_assert_eq(c.find_cluster("b")->services.size(), 4u);
}

Test(config_clusters, a_service_on_an_address_already_taken_is_an_error) {
    assert_refused(head + cluster_c + "[clusters.c.services.primary]\nport = 6432\n",
                   "DIR/pgplex.toml:6: service c.primary and [pgplex] listen both listen on "
                   "127.0.0.1:6432 (give one of them another port)");
    // Checked by name (default before primary): the clash is reported on primary.
    assert_refused(head + cluster_c +
                       "[clusters.c.services.primary]\nport = 7000\n"
                       "[clusters.c.services.default]\nport = 7000\nhost = \"127.0.0.1\"\n",
                   "DIR/pgplex.toml:6: service c.primary and service c.default both listen on "
                   "127.0.0.1:7000 (give one of them another port)");
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "[clusters.c.services.primary]\nport = 7000\n"
                                           "[clusters.c.services.default]\nport = 7000\n"
                                           "host = \"127.0.0.2\"\n");
    cr_assert_eq(loaded(result).clusters.at(0).services.size(), 2u, "another host is no clash");
}

Test(config_clusters, an_alias_may_route_over_a_cluster) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "[databases.app]\ncluster = \"c\"\ndbname = \"appdb\"\n"
                                           "[databases.reports]\ncluster = \"c\"\n"
                                           "read_your_writes = false\n"
                                           "default_route = \"replica\"\n"
                                           "[databases.plain]\nhost = \"127.0.0.1\"\n");
    const Config& c = loaded(result);
    const pgplex::config::Alias& app = c.aliases.at(0);
    assert_text(app.cluster, "c");
    assert_text(app.dbname, "appdb");
    cr_assert(app.read_your_writes);
    assert_text(app.default_route, "primary");
    const pgplex::config::Alias& reports = c.aliases.at(1);
    assert_text(reports.cluster, "c");
    cr_assert_not(reports.read_your_writes);
    assert_text(reports.default_route, "replica");
    const pgplex::config::Alias& plain = c.aliases.at(2);
    assert_text(plain.cluster, "");
    assert_text(plain.server.to_string(), "127.0.0.1:5432");
}

Test(config_clusters, default_route_takes_each_route_name) {
    for (const char* route : {"primary", "replica", "standby", "offline", "delayed"}) {
        TempDir dir;
        LoadResult result = load_text(dir, head + cluster_c + "[databases.app]\ncluster = \"c\"\n" +
                                               "default_route = \"" + route + "\"\n");
        assert_text(loaded(result).aliases.at(0).default_route, route);
    }
}

Test(config_clusters, a_bad_alias_cluster_setting_is_an_error) {
    assert_refused(head + cluster_c + "[databases.app]\ncluster = \"nope\"\n",
                   "DIR/pgplex.toml:6: alias \"app\" names cluster \"nope\", which has no "
                   "[clusters] table");
    assert_refused(head + "[databases.\"*\"]\ncluster = \"c\"\n",
                   "DIR/pgplex.toml:4: alias \"*\" names cluster \"c\", which has no [clusters] "
                   "table");
    assert_refused(head + cluster_c + "[databases.app]\nhost = \"127.0.0.1\"\ncluster = \"c\"\n",
                   "DIR/pgplex.toml:8: an alias names either a cluster or a host, not both");
    assert_refused(head + cluster_c + "[databases.app]\ncluster = \"c\"\nhost = \"127.0.0.1\"\n",
                   "DIR/pgplex.toml:7: an alias names either a cluster or a host, not both");
    assert_refused(
        head + cluster_c + "[databases.app]\ncluster = \"c\"\n" + "default_route = \"any\"\n",
        "DIR/pgplex.toml:8: default_route must be one of \"primary\", \"replica\", "
        "\"standby\", \"offline\", \"delayed\"");
    assert_refused(
        head + cluster_c + "[databases.app]\ncluster = \"c\"\n" + "read_your_writes = \"yes\"\n",
        "DIR/pgplex.toml:8: read_your_writes must be true or false");
    assert_refused(head + cluster_c + "[databases.app]\ncluster = 1\n",
                   "DIR/pgplex.toml:7: cluster must be a string");
}

Test(config_clusters, rules_route_by_pattern_and_conditions_in_file_order) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "[[rules]]\n"
                                           "pattern = '(?i)^\\s*select\\b.*\\bfrom\\s+reports\\b'\n"
                                           "route = \"replica\"\n"
                                           "user = \"app\"\n"
                                           "database = \"appdb\"\n"
                                           "application_name = \"psql\"\n"
                                           "[[rules]]\n"
                                           "pattern = \"^UPDATE\"\n"
                                           "node = \"127.0.0.1:25433\"\n");
    const std::vector<pgplex::config::Rule>& rules = loaded(result).rules;
    cr_assert_eq(rules.size(), 2u);
    cr_assert_eq(rules[0].line, 6u);
    assert_text(rules[0].pattern, "(?i)^\\s*select\\b.*\\bfrom\\s+reports\\b");
    assert_text(rules[0].route, "replica");
    assert_text(rules[0].node, "");
    assert_text(rules[0].user, "app");
    assert_text(rules[0].database, "appdb");
    assert_text(rules[0].application_name, "psql");
    cr_assert_eq(rules[1].line, 12u);
    assert_text(rules[1].pattern, "^UPDATE");
    assert_text(rules[1].route, "");
    assert_text(rules[1].node, "127.0.0.1:25433");
    assert_text(rules[1].user, "");
    assert_text(rules[1].database, "");
    assert_text(rules[1].application_name, "");
}

Test(config_clusters, rules_may_be_an_inline_array_or_empty) {
    TempDir dir;
    LoadResult result = load_text(dir,
                                  "rules = [{ pattern = \"x\", route = \"offline\" },\n"
                                  "  { pattern = \"y\", route = \"delayed\" }]\n" +
                                      head);
    const Config& c = loaded(result);
    cr_assert_eq(c.rules.size(), 2u);
    cr_assert_eq(c.rules[1].line, 2u);
    assert_text(c.rules[1].route, "delayed");
    LoadResult empty = load_text(dir, "rules = []\nrewrites = []\n" + head);
    cr_assert(loaded(empty).rules.empty());
    cr_assert(loaded(empty).rewrites.empty());
}

Test(config_clusters, a_rule_needs_one_of_route_and_node) {
    const std::string rule = "[[rules]]\npattern = \"x\"\n";
    assert_refused(head + cluster_c + rule, "DIR/pgplex.toml:6: a rule needs either route or node");
    assert_refused(head + cluster_c + rule + "route = \"primary\"\nnode = \"127.0.0.1:25432\"\n",
                   "DIR/pgplex.toml:6: a rule needs either route or node");
    assert_refused(head + cluster_c + rule + "node = \"127.0.0.1:9\"\n",
                   "DIR/pgplex.toml:6: rule node \"127.0.0.1:9\" is in no cluster's nodes");
    assert_refused(head + rule + "node = \"127.0.0.1:25432\"\n",
                   "DIR/pgplex.toml:4: rule node \"127.0.0.1:25432\" is in no cluster's nodes");
    assert_refused(head + cluster_c + rule + "route = \"any\"\n",
                   "DIR/pgplex.toml:8: route must be one of \"primary\", \"replica\", "
                   "\"standby\", \"offline\", \"delayed\"");
    assert_refused(head + cluster_c + rule + "node = 25432\n",
                   "DIR/pgplex.toml:8: node must be a string");
}

Test(config_clusters, a_bad_rule_pattern_is_an_error_with_its_offset) {
    assert_refused(head + "[[rules]]\nroute = \"primary\"\npattern = \"select (a\"\n",
                   "DIR/pgplex.toml:6: rules[0]: bad pattern at offset 9: missing closing "
                   "parenthesis");
    assert_refused(head + "[[rules]]\npattern = \"x\"\nroute = \"primary\"\n" +
                       "[[rules]]\npattern = \"a)\"\nroute = \"replica\"\n",
                   "DIR/pgplex.toml:8: rules[1]: bad pattern at offset 1: unmatched closing "
                   "parenthesis");
    assert_refused(head + "[[rules]]\nroute = \"primary\"\n",
                   "DIR/pgplex.toml:4: rules[0] needs a pattern");
    assert_refused(head + "[[rules]]\nroute = \"primary\"\npattern = \"\"\n",
                   "DIR/pgplex.toml:6: rules[0] needs a pattern");
}

Test(config_clusters, a_rule_with_an_unknown_key_or_the_wrong_shape_is_an_error) {
    assert_refused(head + "[[rules]]\npattern = \"x\"\nroute = \"primary\"\nweight = 1\n",
                   "DIR/pgplex.toml:7: unknown setting \"weight\" in [[rules]]");
    assert_refused(head + "[rules]\npattern = \"x\"\nroute = \"primary\"\n",
                   "DIR/pgplex.toml:4: rules must be written [[rules]]");
    assert_refused("rules = [\"x\"]\n" + head,
                   "DIR/pgplex.toml:1: rules must be written [[rules]]");
    assert_refused("rules = \"x\"\n" + head, "DIR/pgplex.toml:1: rules must be written [[rules]]");
}

Test(config_clusters, rewrites_read_pattern_replacement_and_conditions) {
    TempDir dir;
    LoadResult result = load_text(dir, head +
                                           "[[rewrites]]\n"
                                           "pattern = '\\bFROM\\s+old_table\\b'\n"
                                           "replacement = \"FROM new_table\"\n"
                                           "user = \"app\"\n"
                                           "database = \"appdb\"\n"
                                           "application_name = \"etl\"\n"
                                           "[[rewrites]]\n"
                                           "pattern = \"/\\\\*.*?\\\\*/\"\n");
    const std::vector<pgplex::config::Rewrite>& rewrites = loaded(result).rewrites;
    cr_assert_eq(rewrites.size(), 2u);
    cr_assert_eq(rewrites[0].line, 4u);
    assert_text(rewrites[0].pattern, "\\bFROM\\s+old_table\\b");
    assert_text(rewrites[0].replacement, "FROM new_table");
    assert_text(rewrites[0].user, "app");
    assert_text(rewrites[0].database, "appdb");
    assert_text(rewrites[0].application_name, "etl");
    cr_assert_eq(rewrites[1].line, 10u);
    assert_text(rewrites[1].pattern, "/\\*.*?\\*/");
    assert_text(rewrites[1].replacement, "");  // matches are removed
    assert_text(rewrites[1].user, "");
}

Test(config_clusters, a_bad_rewrite_is_an_error) {
    assert_refused(head + "[[rewrites]]\nreplacement = \"y\"\npattern = \"[a-\"\n",
                   "DIR/pgplex.toml:6: rewrites[0]: bad pattern at offset 3: missing terminating "
                   "] for character class");
    assert_refused(head + "[[rewrites]]\nreplacement = \"y\"\n",
                   "DIR/pgplex.toml:4: rewrites[0] needs a pattern");
    assert_refused(head + "[[rewrites]]\npattern = \"x\"\nroute = \"primary\"\n",
                   "DIR/pgplex.toml:6: unknown setting \"route\" in [[rewrites]]");
    assert_refused(head + "[[rewrites]]\npattern = \"x\"\nreplacement = 1\n",
                   "DIR/pgplex.toml:6: replacement must be a string");
    assert_refused(head + "[rewrites]\npattern = \"x\"\n",
                   "DIR/pgplex.toml:4: rewrites must be written [[rewrites]]");
}

Test(config_clusters, admin_users_and_read_only_functions_are_lists_of_strings) {
    TempDir dir;
    LoadResult result = load_text(dir, head +
                                           "admin_users = [\"payam\", \"Ops\"]\n"
                                           "read_only_functions = [\"My_Report_Fn\", \"lower\"]\n");
    const Config& c = loaded(result);
    cr_assert(c.admin_users == (std::vector<std::string>{"payam", "Ops"}), "kept as written");
    cr_assert(c.read_only_functions == (std::vector<std::string>{"my_report_fn", "lower"}));
    LoadResult plain = load_text(dir, head);
    cr_assert(loaded(plain).admin_users.empty());
    cr_assert(loaded(plain).read_only_functions.empty());
}

Test(config_clusters, a_non_string_in_admin_users_or_read_only_functions_is_an_error) {
    assert_refused(head + "admin_users = [\"payam\",\n  1]\n",
                   "DIR/pgplex.toml:5: admin_users must hold strings");
    assert_refused(head + "read_only_functions = [true]\n",
                   "DIR/pgplex.toml:4: read_only_functions must hold strings");
    assert_refused(head + "admin_users = \"payam\"\n",
                   "DIR/pgplex.toml:4: admin_users must be an array of strings");
    assert_refused(head + "read_only_functions = 1\n",
                   "DIR/pgplex.toml:4: read_only_functions must be an array of strings");
}

Test(config_clusters, failover_defaults_to_follow_with_a_one_megabyte_lag_limit) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c);
    const Cluster& cluster = loaded(result).clusters.at(0);
    cr_assert_eq(cluster.failover, pgplex::config::Failover::Follow);
    cr_assert_eq(cluster.max_failover_lag_bytes, 1 << 20);
    cr_assert_eq(cluster.switchover_timeout_ms, 10'000);
}

Test(config_clusters, failover_promote_takes_a_size_as_its_lag_limit) {
    TempDir dir;
    LoadResult result = load_text(dir, head + cluster_c +
                                           "failover = \"promote\"\nmax_failover_lag = \"64kB\"\n"
                                           "switchover_timeout = \"3s\"\n");
    const Cluster& cluster = loaded(result).clusters.at(0);
    cr_assert_eq(cluster.failover, pgplex::config::Failover::Promote);
    cr_assert_eq(cluster.max_failover_lag_bytes, 64 << 10);
    cr_assert_eq(cluster.switchover_timeout_ms, 3'000);
    LoadResult plain = load_text(dir, head + cluster_c + "max_failover_lag = 0\n");
    cr_assert_eq(loaded(plain).clusters.at(0).max_failover_lag_bytes, 0);
}

Test(config_clusters, bad_failover_settings_are_errors_with_their_line) {
    const std::string at = "DIR/pgplex.toml:6: ";
    assert_refused(head + cluster_c + "failover = \"elect\"\n",
                   at + "failover must be one of \"follow\", \"promote\"");
    assert_refused(head + cluster_c + "max_failover_lag = \"10s\"\n",
                   at + "max_failover_lag must be a size in bytes (\"0B\", \"512kB\", \"1MB\")");
    assert_refused(head + cluster_c + "max_failover_lag = \"lots\"\n",
                   at + "max_failover_lag must be a size in bytes (\"0B\", \"512kB\", \"1MB\")");
    assert_refused(head + cluster_c + "switchover_timeout = \"0s\"\n",
                   at + "switchover_timeout must be more than zero");
    assert_refused(head + cluster_c + "failover = \"promote\"\npatroni_port = 8008\n",
                   "DIR/pgplex.toml:4: [clusters.c]: failover = \"promote\" cannot be used with "
                   "patroni_port: Patroni promotes, pgplex follows");
}

Test(clusters, failover_wait_timeout_defaults_to_30s_and_a_cluster_may_override_it) {
    TempDir dir;
    LoadResult result = load_text(
        dir, head + "failover_wait_timeout = \"5s\"\n" + cluster_c +
                 "failover_wait_timeout = 0\n[clusters.d]\nnodes = [\"127.0.0.1:25434\"]\n"
                 "[clusters.d.services.w]\nport = 7001\nselector = \"primary\"\n");
    const Config& config = loaded(result);
    cr_assert_eq(config.failover_wait_timeout_ms, 5000);
    cr_assert_eq(config.failover_wait_timeout_of(config.find_cluster("c")), 0);
    cr_assert_eq(config.failover_wait_timeout_of(config.find_cluster("d")), 5000);
    cr_assert_eq(config.failover_wait_timeout_of(nullptr), 5000);
    TempDir plain;
    LoadResult plain_result = load_text(plain, head + cluster_c);
    const Config& defaults = loaded(plain_result);
    cr_assert_eq(defaults.failover_wait_timeout_of(defaults.find_cluster("c")), 30000);
}

Test(clusters, a_bad_failover_wait_timeout_is_refused_with_its_line) {
    assert_refused(head + cluster_c + "failover_wait_timeout = \"soon\"\n",
                   "DIR/pgplex.toml:6: failover_wait_timeout must be a duration such as "
                   "\"250ms\", \"600s\", \"10m\" or \"1h\", or a whole number of seconds");
    assert_refused(head + cluster_c + "failover_wait_timeout = -1\n",
                   "DIR/pgplex.toml:6: failover_wait_timeout must not be negative");
}
