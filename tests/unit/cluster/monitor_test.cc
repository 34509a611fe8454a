// The node monitors: rise/fall health and its check intervals, LSN text, and whole monitors
// watching an unreachable node, a node whose health comes from a (fake) Patroni, and a real
// PostgreSQL 15 primary with a streaming replica (scripts/pgcluster.sh; needs root).
#include <criterion/criterion.h>

#include "../support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/cluster/derive.h"
#include "pgplex/cluster/monitor.h"

using namespace pgplex;
using namespace pgplex::cluster;

namespace {

config::Cluster test_cluster() {
    config::Cluster cluster;
    cluster.name = "pg-test";
    cluster.inter_ms = 1000;
    cluster.fastinter_ms = 200;
    cluster.downinter_ms = 5000;
    cluster.rise = 2;
    cluster.fall = 3;
    return cluster;
}

// Feeds a sequence of checks ('+' good, '-' failed) and returns `up` after each.
std::string run_checks(Health& health, const char* checks, int rise, int fall) {
    std::string ups;
    for (const char* check = checks; *check != '\0'; ++check) {
        health.observe(*check == '+', rise, fall);
        ups += health.up ? 'U' : 'D';
    }
    return ups;
}

// Remembers the latest Topology the monitor published and lets a test wait for one.
struct Published {
    std::mutex mutex;
    std::condition_variable changed;
    std::shared_ptr<const Topology> latest;
    int count = 0;

    Monitor::Publish callback() {
        return [this](std::shared_ptr<const Topology> topology) {
            std::lock_guard<std::mutex> lock(mutex);
            latest = std::move(topology);
            ++count;
            changed.notify_all();
        };
    }

    // The latest published topology once it satisfies `done`, or whatever was published last
    // when `timeout_ms` passes first.
    std::shared_ptr<const Topology> wait_for(const std::function<bool(const Topology&)>& done,
                                             int timeout_ms) {
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                         [&] { return latest != nullptr && done(*latest); });
        return latest;
    }
};

config::Node make_node(const std::string& text) {
    config::Node node;
    node.name = text;
    std::string reason;
    cr_assert(config::parse_endpoint(text, node.endpoint, reason), "%s: %s", text.c_str(),
              reason.c_str());
    return node;
}

std::shared_ptr<config::Config> config_of(const std::vector<std::string>& nodes,
                                          uint16_t patroni_port = 0) {
    auto config = std::make_shared<config::Config>();
    config::Cluster cluster;
    cluster.name = "pg-test";
    cluster.monitor_user = "postgres";
    cluster.inter_ms = 100;
    cluster.fastinter_ms = 100;
    cluster.downinter_ms = 100;
    cluster.check_timeout_ms = 2000;
    cluster.patroni_port = patroni_port;
    for (const std::string& text : nodes) cluster.nodes.push_back(make_node(text));
    config->clusters.push_back(std::move(cluster));
    return config;
}

bool checked(const ClusterStatus& cluster, size_t node) {
    return cluster.nodes.size() > node && cluster.nodes[node].checked_ms > 0;
}

// A fake Patroni on 127.0.0.1: answers 200 on `ok_paths`, 503 on any other path, or
// `raw` bytes to every request when set. Real Patroni (tests/integration/test_patroni.py)
// covers what Patroni does; the fake stays only for what the real one cannot be made to do
// on demand: answer while PostgreSQL's port is unreachable from pgplex (a network split
// between the two; every test here points the SQL side at port 1), stop leading with no
// successor for longer than switchover_timeout while staying up, answer garbage, or accept
// a request and never answer.
class FakePatroni {
  public:
    explicit FakePatroni(std::vector<std::string> ok_paths) : ok_paths_(std::move(ok_paths)) {
        listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t bytes = sizeof address;
        cr_assert_eq(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), bytes), 0);
        cr_assert_eq(::listen(listener_.get(), 16), 0);
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &bytes);
        port_ = ntohs(address.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakePatroni() {
        stopping_ = true;
        thread_.join();
    }
    uint16_t port() const { return port_; }
    void set_ok_paths(std::vector<std::string> ok_paths) {
        std::lock_guard<std::mutex> lock(mutex_);
        ok_paths_ = std::move(ok_paths);
    }
    void set_raw(std::string raw) {
        std::lock_guard<std::mutex> lock(mutex_);
        raw_ = std::move(raw);
    }

  private:
    void serve() {
        while (!stopping_) {
            pollfd ready{listener_.get(), POLLIN, 0};
            if (::poll(&ready, 1, 50) != 1) continue;
            base::UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (client.valid()) answer(client.get());
        }
    }
    void answer(int client) {
        std::string request;
        char buffer[512];
        while (request.find("\r\n\r\n") == std::string::npos) {
            ssize_t got = ::recv(client, buffer, sizeof buffer, 0);
            if (got <= 0) return;
            request.append(buffer, size_t(got));
        }
        bool ok = false;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& path : ok_paths_)
            ok = ok || request.starts_with("GET " + path + " ");
        std::string response =
            ok ? "HTTP/1.0 200 OK\r\n\r\n{}" : "HTTP/1.0 503 Unavailable\r\n\r\n";
        if (!raw_.empty()) response = raw_;
        ssize_t sent = ::send(client, response.data(), response.size(), MSG_NOSIGNAL);
        (void)sent;
    }

    std::mutex mutex_;  // guards ok_paths_ and raw_
    std::vector<std::string> ok_paths_;
    std::string raw_;
    base::UniqueFd listener_;
    uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace

// --- health -------------------------------------------------------------------------------

Test(monitor, a_node_with_no_history_goes_up_on_its_first_good_check) {
    Health health;
    cr_assert(health.observe(true, 2, 3));
    cr_assert(health.known && health.up);
}

Test(monitor, a_node_with_no_history_is_down_after_its_first_failed_check) {
    Health health;
    cr_assert_not(health.observe(false, 2, 3));  // up did not change: it was never up
    cr_assert(health.known);
    cr_assert_not(health.up);
}

Test(monitor, an_up_node_goes_down_after_fall_failed_checks_in_a_row) {
    Health health;
    assert_text(run_checks(health, "+--+---", 2, 3), "UUUUUUD");
}

Test(monitor, a_down_node_comes_up_after_rise_good_checks_in_a_row) {
    Health health;
    assert_text(run_checks(health, "-+-++", 2, 3), "DDDDU");
}

Test(monitor, observe_reports_only_the_checks_that_change_up) {
    Health health;
    cr_assert(health.observe(true, 1, 1));
    cr_assert_not(health.observe(true, 1, 1));
    cr_assert(health.observe(false, 1, 1));
    cr_assert_not(health.observe(false, 1, 1));
    cr_assert(health.observe(true, 1, 1));
}

Test(monitor, the_interval_is_inter_while_steady_fastinter_while_counting_downinter_while_down) {
    config::Cluster cluster = test_cluster();
    Health health;
    health.observe(true, 2, 3);
    cr_assert_eq(health.next_interval_ms(cluster), 1000);  // up and steady
    health.observe(false, 2, 3);
    cr_assert_eq(health.next_interval_ms(cluster), 200);  // counting towards down
    health.observe(false, 2, 3);
    health.observe(false, 2, 3);
    cr_assert_not(health.up);
    cr_assert_eq(health.next_interval_ms(cluster), 5000);  // down
    health.observe(true, 2, 3);
    cr_assert_eq(health.next_interval_ms(cluster), 200);  // counting towards up
    health.observe(true, 2, 3);
    cr_assert(health.up);
    cr_assert_eq(health.next_interval_ms(cluster), 1000);
}

// --- LSNs ---------------------------------------------------------------------------------

Test(monitor, lsn_text_is_read_as_postgresql_prints_it) {
    uint64_t lsn = 0;
    cr_assert(parse_lsn("16/B374D848", lsn));
    cr_assert_eq(lsn, 0x16B374D848ull);
    cr_assert(parse_lsn("0/0", lsn));
    cr_assert_eq(lsn, 0u);
    cr_assert(parse_lsn("ffffffff/ffffffff", lsn));
    cr_assert_eq(lsn, UINT64_MAX);
    cr_assert(parse_lsn("0/3000148", lsn));
    cr_assert_eq(lsn, 0x3000148ull);
}

Test(monitor, malformed_lsn_text_is_refused) {
    const char* bad[] = {"",     "16",   "16/",  "/B374D848", "1/2/3", "G/1", "123456789/0",
                         " 1/2", "1/2 ", "-1/2", "0x1/2"};
    for (const char* text : bad) {
        uint64_t lsn = 7;
        cr_assert_not(parse_lsn(text, lsn), "accepted \"%s\"", text);
        cr_assert_eq(lsn, 7u);
    }
}

Test(monitor, lsns_are_printed_in_upper_case_hex_and_read_back) {
    assert_text(format_lsn(0x16B374D848ull), "16/B374D848");
    assert_text(format_lsn(0), "0/0");
    assert_text(format_lsn(UINT64_MAX), "FFFFFFFF/FFFFFFFF");
    uint64_t lsn = 0;
    cr_assert(parse_lsn(format_lsn(0xABCDEF0123456789ull), lsn));
    cr_assert_eq(lsn, 0xABCDEF0123456789ull);
}

// --- whole monitors -------------------------------------------------------------------------

Test(monitor, a_monitor_without_clusters_publishes_an_empty_topology_and_stops) {
    Published published;
    Monitor monitor(published.callback());
    monitor.start(std::make_shared<config::Config>());
    auto topology = published.wait_for([](const Topology&) { return true; }, 5000);
    cr_assert_not_null(topology.get());
    cr_assert_eq(topology->generation, 1u);
    cr_assert(topology->clusters.empty());
    monitor.stop();
}

Test(monitor, an_unreachable_node_stays_unhealthy_with_its_error) {
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({"127.0.0.1:1"}));
    auto topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 0); },
        10000);
    cr_assert_not_null(topology.get());
    const ClusterStatus& cluster = topology->clusters[0];
    assert_text(cluster.name, "pg-test");
    cr_assert(checked(cluster, 0));
    const NodeStatus& node = cluster.nodes[0];
    cr_assert_not(node.healthy);
    cr_assert_eq(node.role, Role::Unknown);
    cr_assert(!node.last_error.empty());
    cr_assert_eq(node.lag_bytes, -1);
    cr_assert_eq(node.free_slots, -1);
    cr_assert_eq(cluster.primary, -1);
    cr_assert_eq(cluster.epoch, 0u);
}

Test(monitor, patroni_decides_health_and_role_when_configured) {
    FakePatroni patroni({"/primary"});
    Published published;
    Monitor monitor(published.callback());
    // The SQL side fails (nothing listens on port 1); Patroni's 200 on /primary is enough.
    monitor.start(config_of({"127.0.0.1:1"}, patroni.port()));
    auto topology = published.wait_for(
        [](const Topology& seen) {
            return !seen.clusters.empty() && seen.clusters[0].primary == 0;
        },
        10000);
    cr_assert_not_null(topology.get());
    const ClusterStatus& cluster = topology->clusters[0];
    cr_assert_eq(cluster.primary, 0);
    cr_assert_eq(cluster.epoch, 1u);
    const NodeStatus& node = cluster.nodes[0];
    cr_assert(node.healthy);
    cr_assert_eq(node.role, Role::Primary);
    cr_assert_not(node.sync);
    assert_text(node.source, "patroni");
    cr_assert(node.last_error.empty());
}

Test(monitor, writes_are_held_while_patroni_gives_up_the_leader_and_released_after_the_timeout) {
    FakePatroni patroni({"/primary"});
    Published published;
    Monitor monitor(published.callback());
    auto config = config_of({"127.0.0.1:1"}, patroni.port());
    config->clusters[0].switchover_timeout_ms = 1500;
    config->clusters[0].fall = 100;  // the node stays primary while its Patroni answers 503
    monitor.start(config);
    auto led = published.wait_for(
        [](const Topology& seen) {
            return !seen.clusters.empty() && seen.clusters[0].primary == 0;
        },
        10000);
    cr_assert_not_null(led.get());
    cr_assert_not(led->clusters[0].hold_writes);
    patroni.set_ok_paths({});  // alive, but no longer the leader: a switchover starts
    auto held = published.wait_for(
        [](const Topology& seen) { return seen.clusters[0].hold_writes; }, 10000);
    cr_assert_not_null(held.get());
    cr_assert(held->clusters[0].failover_state.find("patroni") != std::string::npos);
    auto released = published.wait_for(
        [](const Topology& seen) { return !seen.clusters[0].hold_writes; }, 10000);
    cr_assert_not_null(released.get());
}

Test(monitor, patroni_names_a_sync_replica) {
    FakePatroni patroni({"/replica", "/sync"});
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({"127.0.0.1:1"}, patroni.port()));
    auto topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 0); },
        10000);
    cr_assert(topology != nullptr && checked(topology->clusters[0], 0));
    const ClusterStatus& cluster = topology->clusters[0];
    const NodeStatus& node = cluster.nodes[0];
    cr_assert(node.healthy);
    cr_assert_eq(node.role, Role::Replica);
    cr_assert(node.sync);
    cr_assert_eq(node.lag_bytes, -1);  // no primary to measure against
    cr_assert_eq(cluster.primary, -1);
    cr_assert_eq(cluster.epoch, 0u);
}

Test(monitor, under_patroni_a_promotion_request_is_refused) {
    // The appliances' decider or an operator asks: Patroni promotes, pgplex never does.
    FakePatroni patroni({"/replica"});
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({"127.0.0.1:1"}, patroni.port()));
    auto replica = published.wait_for(
        [](const Topology& seen) {
            return !seen.clusters.empty() && seen.clusters[0].nodes[0].healthy;
        },
        10000);
    cr_assert(replica != nullptr && replica->clusters[0].nodes[0].role == Role::Replica);
    cr_assert(monitor.promote("pg-test", "127.0.0.1:1"));
    auto after = published.wait_for(
        [](const Topology& seen) { return !seen.clusters[0].failover_state.empty(); }, 1000);
    cr_assert(after->clusters[0].failover_state.empty(), "%s",
              after->clusters[0].failover_state.c_str());
    cr_assert_eq(after->clusters[0].primary, -1);
}

Test(monitor, a_patroni_that_answers_garbage_marks_its_node_down_and_says_why) {
    FakePatroni patroni({"/primary"});
    patroni.set_raw("SSH-2.0-OpenSSH_9.2\r\n");
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({"127.0.0.1:1"}, patroni.port()));
    auto topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 0); },
        10000);
    cr_assert(topology != nullptr && checked(topology->clusters[0], 0));
    const NodeStatus& node = topology->clusters[0].nodes[0];
    cr_assert_not(node.healthy);
    cr_assert(node.last_error.find("/primary not an HTTP answer") != std::string::npos, "%s",
              node.last_error.c_str());
    cr_assert_eq(topology->clusters[0].primary, -1);
}

Test(monitor, a_patroni_that_never_answers_fails_the_check_at_check_timeout) {
    // A listening socket nobody accepts on: the GET is sent and no status line comes.
    base::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t bytes = sizeof address;
    cr_assert_eq(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), bytes), 0);
    cr_assert_eq(::listen(listener.get(), 16), 0);
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &bytes);
    auto config = config_of({"127.0.0.1:1"}, ntohs(address.sin_port));
    config->clusters[0].check_timeout_ms = 300;
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config);
    auto topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 0); },
        10000);
    cr_assert(topology != nullptr && checked(topology->clusters[0], 0));
    const NodeStatus& node = topology->clusters[0].nodes[0];
    cr_assert_not(node.healthy);
    cr_assert(node.last_error.find("/primary check timed out after 300 ms") != std::string::npos,
              "%s", node.last_error.c_str());
}

Test(monitor, a_node_that_accepts_and_never_answers_fails_its_check_at_check_timeout) {
    // A listening socket nobody accepts on: the kernel completes the TCP handshake and
    // libpq waits for an answer to its first packet that never comes.
    base::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t bytes = sizeof address;
    cr_assert_eq(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), bytes), 0);
    cr_assert_eq(::listen(listener.get(), 16), 0);
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &bytes);
    auto config = config_of({"127.0.0.1:" + std::to_string(ntohs(address.sin_port))});
    config->clusters[0].check_timeout_ms = 300;
    Published published;
    Monitor monitor(published.callback());
    auto started = std::chrono::steady_clock::now();
    monitor.start(config);
    auto topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 0); },
        10000);
    auto waited = std::chrono::steady_clock::now() - started;
    cr_assert(topology != nullptr && checked(topology->clusters[0], 0));
    const NodeStatus& node = topology->clusters[0].nodes[0];
    cr_assert_not(node.healthy);
    assert_text(node.last_error, "check timed out after 300 ms");
    cr_assert_geq(waited, std::chrono::milliseconds(300));
    cr_assert_lt(waited, std::chrono::milliseconds(2000));
}

// --- a real primary and replica -------------------------------------------------------------

namespace {

// The test binary sits in the build directory, where __FILE__ is relative to.
std::string repository_root() {
    std::filesystem::path file(__FILE__);
    std::filesystem::path root = file.parent_path().parent_path().parent_path().parent_path();
    if (root.is_relative())
        root = std::filesystem::read_symlink("/proc/self/exe").parent_path() / root;
    return root.lexically_normal().string();
}

bool port_free(uint16_t port) {
    base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
}

struct PgCluster {
    std::string script;
    std::string directory;
    uint16_t port = 0;
};

PgCluster pg_cluster;

void stop_pg_cluster() {
    if (pg_cluster.directory.empty()) return;
    std::string command = pg_cluster.script + " stop " + pg_cluster.directory + " >/dev/null";
    cr_log_info("stop: exit %d", std::system(command.c_str()));
    std::error_code ignored;
    std::filesystem::remove_all(pg_cluster.directory, ignored);
    pg_cluster.directory.clear();
}

// Starts a primary and one replica on the first free pair of ports from 27432.
bool start_pg_cluster() {
    pg_cluster.script = repository_root() + "/scripts/pgcluster.sh";
    char directory[] = "/tmp/pgplex-monitor-XXXXXX";
    if (::mkdtemp(directory) == nullptr) return false;
    pg_cluster.directory = directory;
    uint16_t port = uint16_t(27432 + (::getpid() % 64) * 2);
    for (int tries = 0; tries < 100 && !(port_free(port) && port_free(uint16_t(port + 1))); ++tries)
        port = uint16_t(port + 2);
    pg_cluster.port = port;
    std::string command = pg_cluster.script + " start " + pg_cluster.directory + " " +
                          std::to_string(port) + " 1 >/dev/null";
    return std::system(command.c_str()) == 0;
}

// "DIR:PORT" of the instance at port + offset: 0 the primary, 1 the replica.
std::string pg_node(int offset) {
    return pg_cluster.directory + ":" + std::to_string(pg_cluster.port + offset);
}

// Runs pg_ctl as postgres on one instance ("primary", "replica1") of the test cluster.
void pg_ctl(const std::string& instance, const std::string& action) {
    std::string data = pg_cluster.directory + "/" + instance;
    std::string command = "cd / && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl " +
                          action + " -w -t 60 -D " + data + " -l " + data + ".log >/dev/null";
    cr_assert_eq(std::system(command.c_str()), 0, "pg_ctl %s %s failed", action.c_str(),
                 instance.c_str());
}

bool primary_and_replica_seen(const Topology& seen) {
    if (seen.clusters.empty() || seen.clusters[0].nodes.size() < 2) return false;
    const ClusterStatus& cluster = seen.clusters[0];
    const NodeStatus& primary = cluster.nodes[0];
    const NodeStatus& replica = cluster.nodes[1];
    return cluster.primary == 0 && primary.healthy && primary.role == Role::Primary &&
           replica.healthy && replica.role == Role::Replica && replica.replay_lsn > 0 &&
           replica.lag_bytes >= 0;
}

}  // namespace

Test(monitor, a_primary_and_its_streaming_replica_are_seen_with_roles_lsns_and_lag,
     .fini = stop_pg_cluster, .timeout = 150) {
    if (::geteuid() != 0) cr_skip_test("needs root to run PostgreSQL as postgres");
    cr_assert(start_pg_cluster(), "scripts/pgcluster.sh start failed");
    std::string primary = pg_node(0);
    std::string replica = pg_node(1);
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({primary, replica}));
    auto topology = published.wait_for(primary_and_replica_seen, 15000);
    cr_assert(topology != nullptr && primary_and_replica_seen(*topology));
    const ClusterStatus& cluster = topology->clusters[0];
    cr_assert_geq(cluster.epoch, 1u);
    const NodeStatus& first = cluster.nodes[0];
    cr_assert_gt(first.current_lsn, 0u);
    cr_assert_eq(first.lag_bytes, 0);
    cr_assert_eq(first.max_connections, 300);  // pgcluster.sh's setting
    cr_assert_gt(first.free_slots, 0);
    cr_assert(first.last_error.empty());
    cr_assert_geq(first.check_us, 0);
    const NodeStatus& second = cluster.nodes[1];
    assert_text(second.application_name, "replica1");  // pgcluster.sh names its replicas
    cr_assert_not(second.sync);                        // no synchronous_standby_names
    cr_assert_not(second.delayed());
    cr_assert_geq(second.lag_ms, -1);
    uint64_t epoch = cluster.epoch;
    int64_t up_since_ms = first.up_since_ms;

    // A third node that nothing answers on joins by a reload; the others keep their state.
    monitor.reconfigure(config_of({primary, replica, "127.0.0.1:1"}));
    topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters.empty() && checked(seen.clusters[0], 2); },
        15000);
    cr_assert(topology != nullptr && checked(topology->clusters[0], 2));
    const ClusterStatus& grown = topology->clusters[0];
    cr_assert_not(grown.nodes[2].healthy);
    cr_assert(!grown.nodes[2].last_error.empty());
    cr_assert_eq(grown.nodes[2].role, Role::Unknown);
    cr_assert(grown.nodes[0].healthy && grown.nodes[1].healthy);
    cr_assert_eq(grown.nodes[0].up_since_ms, up_since_ms);
    cr_assert_eq(grown.primary, 0);
    cr_assert_eq(grown.epoch, epoch);
    monitor.stop();
}

Test(monitor, a_stopped_replica_goes_down_and_comes_back_up_when_restarted, .fini = stop_pg_cluster,
     .timeout = 150) {
    if (::geteuid() != 0) cr_skip_test("needs root to run PostgreSQL as postgres");
    cr_assert(start_pg_cluster(), "scripts/pgcluster.sh start failed");
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({pg_node(0), pg_node(1)}));
    auto topology = published.wait_for(primary_and_replica_seen, 15000);
    cr_assert(topology != nullptr && primary_and_replica_seen(*topology));
    int64_t first_up_ms = topology->clusters[0].nodes[1].up_since_ms;

    pg_ctl("replica1", "stop -m fast");
    topology = published.wait_for(
        [](const Topology& seen) { return !seen.clusters[0].nodes[1].healthy; }, 15000);
    const NodeStatus& down = topology->clusters[0].nodes[1];
    cr_assert_not(down.healthy);
    cr_assert(!down.last_error.empty());
    cr_assert_eq(down.role, Role::Replica);  // the last known role stays
    cr_assert_eq(topology->clusters[0].primary, 0);

    pg_ctl("replica1", "start");
    topology = published.wait_for(primary_and_replica_seen, 15000);
    cr_assert(primary_and_replica_seen(*topology));
    const NodeStatus& up = topology->clusters[0].nodes[1];
    cr_assert(up.last_error.empty());
    cr_assert_gt(up.up_since_ms, first_up_ms);
    monitor.stop();
}

Test(monitor, a_promoted_replica_takes_over_with_a_new_epoch_once_the_old_primary_stops,
     .fini = stop_pg_cluster, .timeout = 150) {
    if (::geteuid() != 0) cr_skip_test("needs root to run PostgreSQL as postgres");
    cr_assert(start_pg_cluster(), "scripts/pgcluster.sh start failed");
    Published published;
    Monitor monitor(published.callback());
    monitor.start(config_of({pg_node(0), pg_node(1)}));
    auto topology = published.wait_for(primary_and_replica_seen, 15000);
    cr_assert(topology != nullptr && primary_and_replica_seen(*topology));
    uint64_t epoch = topology->clusters[0].epoch;

    // Two primaries at once: the current one stays.
    pg_ctl("replica1", "promote");
    topology = published.wait_for(
        [](const Topology& seen) {
            const NodeStatus& node = seen.clusters[0].nodes[1];
            return node.healthy && node.role == Role::Primary;
        },
        15000);
    cr_assert_eq(topology->clusters[0].nodes[1].role, Role::Primary);
    cr_assert_eq(topology->clusters[0].primary, 0);
    cr_assert_eq(topology->clusters[0].epoch, epoch);

    pg_ctl("primary", "stop -m fast");
    topology = published.wait_for(
        [](const Topology& seen) { return seen.clusters[0].primary == 1; }, 15000);
    const ClusterStatus& cluster = topology->clusters[0];
    cr_assert_eq(cluster.primary, 1);
    cr_assert_eq(cluster.epoch, epoch + 1);
    cr_assert_not(cluster.nodes[0].healthy);
    cr_assert_eq(cluster.nodes[1].lag_bytes, 0);
    cr_assert_gt(cluster.nodes[1].current_lsn, 0u);
    monitor.stop();
}
