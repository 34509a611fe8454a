// /metrics and the health paths from a hand-built snapshot: every line is a comment or a
// sample in the text format 0.0.4, values follow the stats, and /health, /primary and
// /replica answer as a load balancer needs.
#include <criterion/criterion.h>

#include "../support.h"

#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "pgplex/cluster/topology.h"
#include "pgplex/metrics/endpoints.h"
#include "pgplex/metrics/exposition.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/worker/worker.h"

using namespace pgplex;
using namespace pgplex::metrics;

namespace {

std::shared_ptr<const cluster::Topology> topology(bool primary_up) {
    auto t = std::make_shared<cluster::Topology>();
    cluster::ClusterStatus c;
    c.name = "main";
    cluster::NodeStatus a, b;
    a.name = "10.0.0.1:5432";
    a.role = cluster::Role::Primary;
    a.healthy = primary_up;
    a.lag_bytes = 0;
    b.name = "10.0.0.2:5432";
    b.role = cluster::Role::Replica;
    b.healthy = true;
    b.lag_bytes = 4096;
    c.nodes = {a, b};
    c.primary = primary_up ? 0 : -1;
    c.epoch = 7;
    t->clusters.push_back(c);
    return t;
}

struct Fixture {
    std::unique_ptr<worker::WorkerStats[]> stats = std::make_unique<worker::WorkerStats[]>(2);
    pool::PoolTable pools{64};
    Snapshot snapshot;

    Fixture() {
        snapshot.stats = stats.get();
        snapshot.workers = 2;
        snapshot.pools = &pools;
        snapshot.topology = topology(true);
        snapshot.started = true;
    }
};

Response get(const std::string& path, const Snapshot& snapshot, Method method = Method::Get) {
    Request request;
    request.method = method;
    request.path = path;
    return respond(request, snapshot);
}

}  // namespace

Test(exposition, every_line_is_help_type_or_a_well_formed_sample) {
    Fixture f;
    f.stats[0].clients_in[size_t(client::ClientState::Active)] = 3;
    f.stats[1].clients_in[size_t(client::ClientState::Active)] = 2;
    f.stats[1].auth_failures = 9;
    pool::Target target;
    target.alias = "app\"db";
    target.user = "app";
    cr_assert_not_null(f.pools.find_or_create(target));
    std::string text = render(f.snapshot);
    std::regex sample(
        R"(^[a-zA-Z_:][a-zA-Z0-9_:]*)"
        R"((\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*",?)*\})? -?[0-9.e+]+(NaN)?$)");
    std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line))
        cr_assert(std::regex_match(line, sample) || std::regex_match(line, comment), "%s",
                  line.c_str());
    cr_assert(text.find("pgplex_clients{state=\"active\"} 5\n") != std::string::npos);
    cr_assert(text.find("pgplex_auth_failures_total 9\n") != std::string::npos);
    cr_assert(text.find("database=\"app\\\"db\"") != std::string::npos);
    cr_assert(text.find("pgplex_node_lag_bytes{cluster=\"main\",node=\"10.0.0.2:5432\"} 4096") !=
              std::string::npos);
    cr_assert(text.find("pgplex_cluster_epoch{cluster=\"main\"} 7\n") != std::string::npos);
}

Test(exposition, health_is_503_before_start_and_once_shutting_down) {
    Fixture f;
    cr_assert_eq(get("/health", f.snapshot).status, 200);
    f.snapshot.shutting_down = true;
    cr_assert_eq(get("/health", f.snapshot).status, 503);
    f.snapshot.shutting_down = false;
    f.snapshot.started = false;
    cr_assert_eq(get("/health", f.snapshot).status, 503);
}

Test(exposition, primary_and_replica_follow_the_topology) {
    Fixture f;
    cr_assert_eq(get("/primary", f.snapshot).status, 200);
    cr_assert_eq(get("/primary/main", f.snapshot).status, 200);
    cr_assert_eq(get("/replica/main", f.snapshot).status, 200);
    cr_assert_eq(get("/primary/other", f.snapshot).status, 404);
    f.snapshot.topology = topology(false);
    cr_assert_eq(get("/primary/main", f.snapshot).status, 503);
    cr_assert_eq(get("/replica", f.snapshot).status, 200);
}

Test(exposition, options_unknown_paths_and_other_methods) {
    Fixture f;
    Response options = get("/metrics", f.snapshot, Method::Options);
    cr_assert_eq(options.status, 204);
    assert_text(options.allow, "GET, HEAD, OPTIONS");
    cr_assert_eq(get("*", f.snapshot, Method::Options).status, 204);
    cr_assert_eq(get("/nope", f.snapshot).status, 404);
    cr_assert_eq(get("/metrics", f.snapshot, Method::Other).status, 405);
    Response metrics = get("/metrics", f.snapshot);
    assert_text(metrics.content_type, "text/plain; version=0.0.4; charset=utf-8");
}

Test(exposition, a_fallback_pool_is_labelled_with_the_database_the_client_asked_for) {
    Fixture f;
    pool::Target target;
    target.alias = "*";
    target.dbname = "appdb";
    target.user = "app";
    cr_assert_not_null(f.pools.find_or_create(target));
    std::string text = render(f.snapshot);
    cr_assert(text.find("pgplex_pool_size{database=\"appdb\",user=\"app\"") != std::string::npos,
              "%s", text.c_str());
}

Test(exposition, a_service_path_and_its_metrics_follow_the_nodes_that_carry_it) {
    Fixture f;
    auto config = std::make_shared<config::Config>();
    config::Cluster cluster;
    cluster.name = "main";
    config::Service primary;
    primary.name = "primary";
    primary.selector = "primary";
    cluster.services.push_back(primary);
    config->clusters.push_back(cluster);
    f.snapshot.config = config;
    cr_assert_eq(get("/service/main/primary", f.snapshot).status, 200);
    cr_assert_eq(get("/service/main/nope", f.snapshot).status, 404);
    std::string text = render(f.snapshot);
    cr_assert(text.find("pgplex_service_nodes{cluster=\"main\",service=\"primary\"} 1\n") !=
                  std::string::npos,
              "%s", text.c_str());
    f.snapshot.topology = topology(false);
    cr_assert_eq(get("/service/main/primary", f.snapshot).status, 503);
}

namespace {

// The samples of one family, in the order written, without the HELP and TYPE lines.
std::vector<std::string> lines_of(const std::string& text, const std::string& family) {
    std::vector<std::string> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind(family + "_", 0) == 0) out.push_back(line);
    return out;
}

}  // namespace

Test(exposition, a_pool_s_query_times_are_a_cumulative_histogram_in_seconds) {
    Fixture f;
    pool::Target target;
    target.alias = "appdb";
    target.user = "app";
    pool::Pool* pool = f.pools.find_or_create(target);
    cr_assert_not_null(pool);
    for (uint64_t us : {0, 1'000, 1'000, 30'000, 2'000'000, 60'000'000})
        pool->query_time.observe(us);
    std::string text = render(f.snapshot);
    cr_assert(text.find("# TYPE pgplex_pool_query_duration_seconds histogram\n") !=
              std::string::npos);
    std::vector<std::string> lines = lines_of(text, "pgplex_pool_query_duration_seconds");
    cr_assert_eq(lines.size(), base::histogram_bucket_count + 2, "%s", text.c_str());
    const std::string labels =
        "database=\"appdb\",user=\"app\",node=\"" + target.endpoint.to_string() + "\"";
    const char* expected[] = {
        "0.0005\"} 1", "0.001\"} 3", "0.0025\"} 3", "0.005\"} 3", "0.01\"} 3",
        "0.025\"} 3",  "0.05\"} 4",  "0.1\"} 4",    "0.25\"} 4",  "0.5\"} 4",
        "1\"} 4",      "2.5\"} 5",   "5\"} 5",      "10\"} 5",    "+Inf\"} 6",
    };
    for (size_t i = 0; i < base::histogram_bucket_count; ++i)
        assert_text(lines[i],
                    "pgplex_pool_query_duration_seconds_bucket{" + labels + ",le=\"" + expected[i]);
    assert_text(lines[15], "pgplex_pool_query_duration_seconds_sum{" + labels + "} 62.032");
    assert_text(lines[16], "pgplex_pool_query_duration_seconds_count{" + labels + "} 6");
}

Test(exposition, pools_with_the_same_labels_add_their_histograms_and_empty_ones_show_zeros) {
    Fixture f;
    pool::Target a;
    a.alias = "appdb";
    a.user = "app";
    pool::Target b = a;
    b.password = "other";  // another pool, the same database, user and node
    f.pools.find_or_create(a)->wait_time.observe(0);
    f.pools.find_or_create(b)->wait_time.observe(4'000);
    std::string text = render(f.snapshot);
    std::vector<std::string> wait = lines_of(text, "pgplex_pool_wait_duration_seconds");
    cr_assert_eq(wait.size(), base::histogram_bucket_count + 2, "%s", text.c_str());
    cr_assert(wait[0].ends_with("le=\"0.0005\"} 1"), "%s", wait[0].c_str());
    cr_assert(wait[3].ends_with("le=\"0.005\"} 2"), "%s", wait[3].c_str());
    cr_assert(wait[16].ends_with("} 2"), "%s", wait[16].c_str());
    std::vector<std::string> transaction =
        lines_of(text, "pgplex_pool_transaction_duration_seconds");
    cr_assert_eq(transaction.size(), base::histogram_bucket_count + 2);
    for (const std::string& line : transaction)
        cr_assert(line.ends_with("} 0"), "%s", line.c_str());
}
