// What an admin user sees in the "pgplex" database: SHOW NODES, SHOW SERVICES and the rest
// answered from a hand-built config and topology, read back from the bytes pgplex would
// send (protocol-message-formats.html), as psql would read them.
#include <criterion/criterion.h>

#include "../support.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/admin/console.h"
#include "pgplex/admin/show.h"
#include "pgplex/proto/message.h"

using namespace pgplex;
using proto::BackendMessage;

namespace {

// --- reading the reply -----------------------------------------------------------------------

using Value = std::optional<std::string>;

struct Result {
    std::vector<std::string> columns;
    std::vector<uint32_t> types;
    std::vector<std::vector<Value>> rows;
    std::string tag;                     // CommandComplete
    std::map<char, std::string> error;   // ErrorResponse fields by their tag byte
    std::map<char, std::string> notice;  // NoticeResponse fields by their tag byte
    bool empty_query = false;            // EmptyQueryResponse

    // The value in `column` of the row whose first columns match `keys`.
    Value at(std::vector<std::string> keys, std::string_view column) const;
};

struct Cursor {
    const uint8_t* at;
    const uint8_t* end;

    uint32_t int32() {
        cr_assert(end - at >= 4);
        uint32_t value =
            uint32_t(at[0]) << 24 | uint32_t(at[1]) << 16 | uint32_t(at[2]) << 8 | at[3];
        at += 4;
        return value;
    }
    uint16_t int16() {
        cr_assert(end - at >= 2);
        uint16_t value = uint16_t(at[0] << 8 | at[1]);
        at += 2;
        return value;
    }
    std::string cstring() {
        const uint8_t* nul = at;
        while (nul < end && *nul != 0) ++nul;
        cr_assert(nul < end, "unterminated string");
        std::string out(at, nul);
        at = nul + 1;
        return out;
    }
    std::string bytes(uint32_t size) {
        cr_assert(uint32_t(end - at) >= size);
        std::string out(at, at + size);
        at += size;
        return out;
    }
};

void read_row_description(Cursor body, Result& result) {
    uint16_t count = body.int16();
    for (uint16_t i = 0; i < count; ++i) {
        result.columns.push_back(body.cstring());
        cr_assert_eq(body.int32(), 0u);  // table oid
        cr_assert_eq(body.int16(), 0u);  // column number
        result.types.push_back(body.int32());
        body.int16();                             // type size
        cr_assert_eq(body.int32(), 0xFFFFFFFFu);  // type modifier -1
        cr_assert_eq(body.int16(), 0u);           // text format
    }
    cr_assert_eq(body.at, body.end);
}

void read_data_row(Cursor body, Result& result) {
    uint16_t count = body.int16();
    cr_assert_eq(count, result.columns.size());
    std::vector<Value> row;
    for (uint16_t i = 0; i < count; ++i) {
        uint32_t size = body.int32();
        row.push_back(size == 0xFFFFFFFFu ? Value() : Value(body.bytes(size)));
    }
    cr_assert_eq(body.at, body.end);
    result.rows.push_back(std::move(row));
}

void read_error(Cursor body, Result& result) {
    while (body.at < body.end && *body.at != 0) {
        char field = char(*body.at++);
        result.error[field] = body.cstring();
    }
    cr_assert_eq(body.end - body.at, 1);
}

void read_notice(Cursor body, Result& result) {
    while (body.at < body.end && *body.at != 0) {
        char field = char(*body.at++);
        result.notice[field] = body.cstring();
    }
}

// Splits a reply into one Result per command. Every message must be well framed; a reply
// never holds ReadyForQuery (the caller sends that).
std::vector<Result> read_reply(const std::vector<uint8_t>& bytes) {
    std::vector<Result> results(1);
    Cursor cursor{bytes.data(), bytes.data() + bytes.size()};
    while (cursor.at < cursor.end) {
        auto type = BackendMessage(*cursor.at++);
        uint32_t length = cursor.int32();
        cr_assert(length >= 4 && length - 4 <= uint32_t(cursor.end - cursor.at));
        Cursor body{cursor.at, cursor.at + length - 4};
        cursor.at = body.end;
        Result& result = results.back();
        if (type == BackendMessage::RowDescription)
            read_row_description(body, result);
        else if (type == BackendMessage::DataRow)
            read_data_row(body, result);
        else if (type == BackendMessage::ErrorResponse)
            read_error(body, result);
        else if (type == BackendMessage::CommandComplete)
            result.tag = body.cstring();
        else if (type == BackendMessage::EmptyQueryResponse)
            result.empty_query = true;
        else if (type == BackendMessage::NoticeResponse)
            read_notice(body, result);
        else
            cr_assert_fail("unexpected message %c", char(type));
        if (type != BackendMessage::RowDescription && type != BackendMessage::DataRow &&
            type != BackendMessage::NoticeResponse)
            results.emplace_back();
    }
    cr_assert(results.back().columns.empty(), "a reply ends with a complete result");
    results.pop_back();
    return results;
}

Value Result::at(std::vector<std::string> keys, std::string_view column) const {
    size_t index = 0;
    while (index < columns.size() && columns[index] != column) ++index;
    cr_assert(index < columns.size(), "no column %s", std::string(column).c_str());
    for (const std::vector<Value>& row : rows) {
        bool match = true;
        for (size_t k = 0; k < keys.size(); ++k) match = match && row[k] == keys[k];
        if (match) return row[index];
    }
    cr_assert_fail("no row %s", keys.back().c_str());
    return Value();
}

// --- the cluster -----------------------------------------------------------------------------

constexpr const char* primary_name = "127.0.0.1:25432";
constexpr const char* replica_name = "127.0.0.1:25433";
constexpr const char* offline_name = "127.0.0.1:25434";
constexpr int64_t now_ms = 1'000'000;

config::Endpoint endpoint(const std::string& host, uint16_t port) {
    config::Endpoint out;
    out.host = host;
    out.port = port;
    return out;
}

config::Service service(std::string name, uint16_t port, std::string selector, std::string backup,
                        config::Dest dest) {
    config::Service out;
    out.name = std::move(name);
    out.cluster = "pg-test";
    out.listen = {endpoint("127.0.0.1", port)};
    out.selector = std::move(selector);
    out.backup = std::move(backup);
    out.dest = dest;
    return out;
}

// pg-test: a primary, a replica and a dedicated offline replica, with the spec's default
// services.
config::Config test_config() {
    config::Config config;
    config::Cluster cluster;
    cluster.name = "pg-test";
    for (const char* name : {primary_name, replica_name, offline_name})
        cluster.nodes.push_back(config::Node{name, endpoint("127.0.0.1", 0), {}});
    cluster.nodes[2].options.offline = true;
    cluster.services = {
        service("primary", 5433, "primary", "", config::Dest::Pool),
        service("replica", 5434, "replica && !offline && !delayed",
                "primary || (replica && offline)", config::Dest::Pool),
        service("default", 5436, "primary", "", config::Dest::Direct),
        service("offline", 5438, "replica && (offline || offline_query) && !delayed",
                "replica && !offline && !offline_query && !delayed", config::Dest::Direct),
    };
    config.clusters.push_back(std::move(cluster));
    return config;
}

cluster::NodeStatus status(const config::Node& node, cluster::Role role) {
    cluster::NodeStatus out;
    out.name = node.name;
    out.endpoint = node.endpoint;
    out.options = node.options;
    out.healthy = true;
    out.role = role;
    out.max_connections = 100;
    out.free_slots = 90;
    out.checked_ms = now_ms - 250;
    out.check_us = 1'200;
    return out;
}

cluster::Topology test_topology(const config::Config& config) {
    const config::Cluster& cluster = config.clusters[0];
    cluster::ClusterStatus status_of_cluster{"pg-test", {}, 0, 3};
    cluster::NodeStatus primary = status(cluster.nodes[0], cluster::Role::Primary);
    primary.current_lsn = primary.replay_lsn = 0x16B374D848;
    primary.lag_bytes = primary.lag_ms = 0;
    cluster::NodeStatus replica = status(cluster.nodes[1], cluster::Role::Replica);
    replica.sync = true;
    replica.receive_lsn = 0x16B374D848;
    replica.replay_lsn = 0x16B3740000;
    replica.lag_bytes = 0xD848;
    replica.lag_ms = 12;
    cluster::NodeStatus offline = status(cluster.nodes[2], cluster::Role::Replica);
    offline.receive_lsn = offline.replay_lsn = 0xA0;  // lag not measured yet
    status_of_cluster.nodes = {primary, replica, offline};
    cluster::Topology topology;
    topology.generation = 7;
    topology.clusters.push_back(std::move(status_of_cluster));
    return topology;
}

void set_healthy(cluster::Topology& topology, const char* node, bool healthy) {
    for (cluster::NodeStatus& status : topology.clusters[0].nodes)
        if (status.name == node) status.healthy = healthy;
}

std::vector<Result> ask(std::string_view sql, const config::Config& config,
                        const cluster::Topology* topology) {
    std::vector<uint8_t> out;
    admin::answer(sql, admin::Context{config, topology, now_ms}, out);
    return read_reply(out);
}

Result ask_one(std::string_view sql, const config::Config& config,
               const cluster::Topology* topology) {
    std::vector<Result> results = ask(sql, config, topology);
    cr_assert_eq(results.size(), 1u, "%s: %zu results", std::string(sql).c_str(), results.size());
    return results[0];
}

// "carriers carried_by" of a service.
std::string carried(const Result& services, const char* service) {
    return *services.at({"pg-test", service}, "carriers") + " " +
           *services.at({"pg-test", service}, "carried_by");
}

}  // namespace

// --- SHOW NODES ------------------------------------------------------------------------------

Test(show, nodes_lists_roles_health_and_flags_in_config_order) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    set_healthy(topology, offline_name, false);
    Result nodes = ask_one("SHOW NODES", config, &topology);
    assert_text(nodes.tag, "SHOW");
    cr_assert_eq(nodes.rows.size(), 3u);
    assert_text(*nodes.rows[0][1], primary_name);
    assert_text(*nodes.rows[2][1], offline_name);
    assert_text(*nodes.at({"pg-test", primary_name}, "role"), "primary");
    assert_text(*nodes.at({"pg-test", replica_name}, "role"), "replica");
    assert_text(*nodes.at({"pg-test", offline_name}, "role"), "replica");
    assert_text(*nodes.at({"pg-test", primary_name}, "health"), "up");
    assert_text(*nodes.at({"pg-test", offline_name}, "health"), "down");
    assert_text(*nodes.at({"pg-test", replica_name}, "sync"), "t");
    assert_text(*nodes.at({"pg-test", offline_name}, "sync"), "f");
    assert_text(*nodes.at({"pg-test", offline_name}, "offline"), "t");
    assert_text(*nodes.at({"pg-test", replica_name}, "offline"), "f");
    assert_text(*nodes.at({"pg-test", replica_name}, "delayed"), "f");
    assert_text(*nodes.at({"pg-test", replica_name}, "weight"), "100");
}

Test(show, nodes_prints_lsns_as_postgresql_does_and_null_where_a_node_has_none) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    Result nodes = ask_one("SHOW NODES", config, &topology);
    assert_text(*nodes.at({"pg-test", primary_name}, "current_lsn"), "16/B374D848");
    assert_text(*nodes.at({"pg-test", primary_name}, "replay_lsn"), "16/B374D848");
    cr_assert_not(nodes.at({"pg-test", primary_name}, "receive_lsn"));
    cr_assert_not(nodes.at({"pg-test", replica_name}, "current_lsn"));
    assert_text(*nodes.at({"pg-test", replica_name}, "receive_lsn"), "16/B374D848");
    assert_text(*nodes.at({"pg-test", replica_name}, "replay_lsn"), "16/B3740000");
    assert_text(*nodes.at({"pg-test", offline_name}, "replay_lsn"), "0/A0");
}

Test(show, nodes_prints_lag_and_check_times_and_null_when_unknown) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    topology.clusters[0].nodes[1].last_error = "";
    topology.clusters[0].nodes[2].last_error = "connection refused";
    topology.clusters[0].nodes[1].load1 = 0.5;
    topology.clusters[0].nodes[1].cpus = 2;
    Result nodes = ask_one("SHOW NODES", config, &topology);
    assert_text(*nodes.at({"pg-test", replica_name}, "load1"), "0.50");
    assert_text(*nodes.at({"pg-test", replica_name}, "cpus"), "2");
    cr_assert_not(nodes.at({"pg-test", primary_name}, "load1"), "no pgplex schema there");
    assert_text(*nodes.at({"pg-test", primary_name}, "lag_bytes"), "0");
    assert_text(*nodes.at({"pg-test", replica_name}, "lag_bytes"), "55368");
    assert_text(*nodes.at({"pg-test", replica_name}, "lag_ms"), "12");
    cr_assert_not(nodes.at({"pg-test", offline_name}, "lag_bytes"));
    cr_assert_not(nodes.at({"pg-test", offline_name}, "lag_ms"));
    assert_text(*nodes.at({"pg-test", replica_name}, "checked_ms_ago"), "250");
    assert_text(*nodes.at({"pg-test", replica_name}, "check_us"), "1200");
    assert_text(*nodes.at({"pg-test", replica_name}, "free_slots"), "90");
    assert_text(*nodes.at({"pg-test", replica_name}, "max_connections"), "100");
    assert_text(*nodes.at({"pg-test", replica_name}, "source"), "monitor");
    assert_text(*nodes.at({"pg-test", offline_name}, "last_error"), "connection refused");
}

Test(show, nodes_types_its_columns_text_int8_and_bool) {
    config::Config config = test_config();
    Result nodes = ask_one("SHOW NODES", config, nullptr);
    std::map<std::string, uint32_t> types;
    for (size_t i = 0; i < nodes.columns.size(); ++i) types[nodes.columns[i]] = nodes.types[i];
    cr_assert_eq(nodes.columns.size(), 24u);
    cr_assert_eq(types["fenced"], 16u);
    cr_assert_eq(types["node"], 25u);
    cr_assert_eq(types["load1"], 25u);
    cr_assert_eq(types["cpus"], 20u);
    cr_assert_eq(types["sync"], 16u);
    cr_assert_eq(types["offline_query"], 16u);
    cr_assert_eq(types["lag_bytes"], 20u);
    cr_assert_eq(types["checked_ms_ago"], 20u);
    cr_assert_eq(types["replay_lsn"], 25u);
}

Test(show, nodes_before_the_first_check_are_unknown_and_down) {
    config::Config config = test_config();
    Result nodes = ask_one("SHOW NODES", config, nullptr);
    cr_assert_eq(nodes.rows.size(), 3u);
    assert_text(*nodes.at({"pg-test", offline_name}, "role"), "unknown");
    assert_text(*nodes.at({"pg-test", offline_name}, "health"), "down");
    assert_text(*nodes.at({"pg-test", offline_name}, "offline"), "t");
    cr_assert_not(nodes.at({"pg-test", offline_name}, "checked_ms_ago"));
    cr_assert_not(nodes.at({"pg-test", offline_name}, "replay_lsn"));
    cr_assert_not(nodes.at({"pg-test", offline_name}, "max_connections"));
    cr_assert_not(nodes.at({"pg-test", offline_name}, "load1"));
    cr_assert_not(nodes.at({"pg-test", offline_name}, "cpus"));
}

// --- SHOW SERVICES ---------------------------------------------------------------------------

Test(show, services_lists_each_default_service_with_its_carriers) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    Result services = ask_one("SHOW SERVICES", config, &topology);
    cr_assert_eq(services.rows.size(), 4u);
    assert_text(carried(services, "primary"), "127.0.0.1:25432 members");
    assert_text(carried(services, "replica"), "127.0.0.1:25433 members");
    assert_text(carried(services, "default"), "127.0.0.1:25432 members");
    assert_text(carried(services, "offline"), "127.0.0.1:25434 members");
    assert_text(*services.at({"pg-test", "replica"}, "listen"), "127.0.0.1:5434");
    assert_text(*services.at({"pg-test", "replica"}, "dest"), "pool");
    assert_text(*services.at({"pg-test", "offline"}, "dest"), "direct");
    assert_text(*services.at({"pg-test", "offline"}, "balance"), "roundrobin");
    assert_text(*services.at({"pg-test", "replica"}, "selector"),
                "replica && !offline && !delayed");
    assert_text(*services.at({"pg-test", "replica"}, "backup"), "primary || (replica && offline)");
    assert_text(*services.at({"pg-test", "primary"}, "backup"), "");
}

Test(show, services_shows_the_replica_service_falling_back_to_its_backups) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    set_healthy(topology, replica_name, false);
    Result services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "replica"), "127.0.0.1:25432,127.0.0.1:25434 backup");
    set_healthy(topology, offline_name, false);
    services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "replica"), "127.0.0.1:25432 backup");
}

Test(show, services_never_lists_the_primary_for_the_offline_service) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    set_healthy(topology, offline_name, false);
    Result services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "offline"), "127.0.0.1:25433 backup");
    set_healthy(topology, replica_name, false);  // the primary is the only healthy node
    services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "offline"), " none");
    assert_text(carried(services, "primary"), "127.0.0.1:25432 members");
}

Test(show, services_keep_replicas_beyond_max_lag_out) {
    config::Config config = test_config();
    config.clusters[0].max_lag_bytes = 1'000;  // the replica is 55368 bytes behind
    cluster::Topology topology = test_topology(config);
    Result services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "replica"), "127.0.0.1:25432 backup");  // offline: unknown lag
    config.clusters[0].services[1].max_lag_bytes = 100'000;  // the service's own limit wins
    services = ask_one("SHOW SERVICES", config, &topology);
    assert_text(carried(services, "replica"), "127.0.0.1:25433 members");
}

Test(show, services_before_the_first_check_are_carried_by_none) {
    config::Config config = test_config();
    Result services = ask_one("SHOW SERVICES", config, nullptr);
    cr_assert_eq(services.rows.size(), 4u);
    assert_text(carried(services, "primary"), " none");
}

// --- SHOW CLUSTERS, VERSION, HELP ------------------------------------------------------------

Test(show, clusters_counts_nodes_healthy_nodes_and_services) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    set_healthy(topology, offline_name, false);
    Result clusters = ask_one("SHOW CLUSTERS", config, &topology);
    cr_assert_eq(clusters.rows.size(), 1u);
    assert_text(*clusters.at({"pg-test"}, "nodes"), "3");
    assert_text(*clusters.at({"pg-test"}, "healthy"), "2");
    assert_text(*clusters.at({"pg-test"}, "primary"), primary_name);
    assert_text(*clusters.at({"pg-test"}, "epoch"), "3");
    assert_text(*clusters.at({"pg-test"}, "services"), "4");
    assert_text(*clusters.at({"pg-test"}, "writes"), "routed");
    topology.clusters[0].writable = false;
    topology.clusters[0].primary = -1;
    clusters = ask_one("SHOW CLUSTERS", config, &topology);
    assert_text(*clusters.at({"pg-test"}, "writes"), "held: no majority lease on the epoch");
    topology.membership.quorum = false;
    clusters = ask_one("SHOW CLUSTERS", config, &topology);
    assert_text(*clusters.at({"pg-test"}, "writes"), "held: no quorum");
    clusters = ask_one("SHOW CLUSTERS", config, nullptr);
    assert_text(*clusters.at({"pg-test"}, "healthy"), "0");
    assert_text(*clusters.at({"pg-test"}, "primary"), "");
}

Test(show, version_says_pgbouncer_first_for_exporters_then_pgplex_and_its_version) {
    config::Config config = test_config();
    Result version = ask_one("SHOW VERSION", config, nullptr);
    cr_assert_eq(version.columns.size(), 1u);
    assert_text(version.columns[0], "version");
    assert_text(*version.rows[0][0], "PgBouncer 1.25.0 (pgplex " PGPLEX_VERSION ")");
}

Test(show, help_lists_every_command) {
    config::Config config = test_config();
    Result help = ask_one("SHOW HELP", config, nullptr);
    cr_assert_eq(help.rows.size(), 33u);
    assert_text(*help.rows[0][0], "SHOW CLUSTERS");
    assert_text(*help.rows[2][0], "SHOW SERVICES");
    assert_text(*help.rows[3][0], "SHOW MEMBERS");
    assert_text(*help.rows[4][0], "SHOW CLIENTS");
    assert_text(*help.rows[5][0], "SHOW STATE");
    assert_text(*help.rows[6][0], "SHOW WORKERS");
    assert_text(*help.rows[7][0], "SHOW MEM");
    assert_text(*help.rows[9][0], "SHOW HELP");
    assert_text(*help.rows[10][0], "SHOW DATABASES");
    assert_text(*help.rows[21][0], "UNFENCE cluster node");
    assert_text(*help.rows[22][0], "SWITCHOVER cluster [TO node]");
    assert_text(*help.rows[23][0], "PAUSE [db]");
    assert_text(*help.rows[25][0], "SUSPEND");
}

Test(show, members_lists_the_appliances_and_who_reaches_a_majority) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    Result members = ask_one("SHOW MEMBERS", config, &topology);
    cr_assert_eq(members.rows.size(), 0u, "no [gossip]: no members");
    topology.membership.enabled = true;
    topology.membership.members = {{"127.0.0.1:7946", true, "alive", 3, -1},
                                   {"127.0.0.2:7946", false, "suspect", 1, 0}};
    members = ask_one("SHOW MEMBERS", config, &topology);
    cr_assert_eq(members.rows.size(), 2u);
    assert_text(*members.at({"127.0.0.1:7946"}, "state"), "alive");
    assert_text(*members.at({"127.0.0.1:7946"}, "incarnation"), "3");
    assert_text(*members.at({"127.0.0.1:7946"}, "quorum"), "t");
    cr_assert_not(members.at({"127.0.0.1:7946"}, "heard_ms_ago").has_value());
    assert_text(*members.at({"127.0.0.2:7946"}, "state"), "suspect");
    assert_text(*members.at({"127.0.0.2:7946"}, "quorum"), "f");
    topology.membership.forged = 7;
    members = ask_one("SHOW MEMBERS", config, &topology);
    assert_text(*members.at({"127.0.0.1:7946"}, "forged"), "7");
    cr_assert_not(members.at({"127.0.0.2:7946"}, "forged").has_value());
    topology.membership.quorum = false;
    members = ask_one("SHOW MEMBERS", config, &topology);
    assert_text(*members.at({"127.0.0.1:7946"}, "quorum"), "f");
}

std::vector<admin::WorkerState> two_workers() {
    admin::WorkerState busy;
    busy.worker = 0;
    busy.clients = {{"idle", 3}, {"active", 2}};
    busy.servers = {{"idle", 1}, {"active", 2}};
    busy.pinned = 1;
    busy.ring_in_use = 4, busy.ring_count = 2048, busy.buffer_size = 16384;
    busy.out_in_use = 1, busy.out_count = 8, busy.chunks_in_use = 5, busy.chunk_count = 4096;
    busy.bytes_queued = 70000;
    admin::WorkerState quiet = busy;
    quiet.worker = 1;
    quiet.clients = {{"idle", 0}, {"active", 0}};
    quiet.servers = {{"idle", 2}, {"active", 0}};
    quiet.pinned = quiet.ring_in_use = quiet.out_in_use = quiet.chunks_in_use = 0;
    quiet.bytes_queued = 0;
    return {busy, quiet};
}

Test(show, workers_has_a_row_per_worker_with_its_clients_and_servers_by_state) {
    config::Config config = test_config();
    std::vector<admin::WorkerState> workers = two_workers();
    std::vector<uint8_t> out;
    admin::answer("SHOW WORKERS", admin::Context{config, nullptr, now_ms, &workers}, out);
    std::vector<Result> results = read_reply(out);
    cr_assert_eq(results.size(), 1u);
    const Result& state = results[0];
    cr_assert_eq(state.rows.size(), 2u);
    assert_text(*state.at({"0"}, "cl_active"), "2");
    assert_text(*state.at({"0"}, "sv_idle"), "1");
    assert_text(*state.at({"0"}, "pinned"), "1");
    assert_text(*state.at({"0"}, "bytes_queued"), "70000");
    assert_text(*state.at({"1"}, "sv_idle"), "2");
    assert_text(*state.at({"1"}, "ring_buffers_used"), "0");
}

Test(show, mem_sums_the_workers_buffers_in_pgbouncers_columns) {
    config::Config config = test_config();
    std::vector<admin::WorkerState> workers = two_workers();
    std::vector<uint8_t> out;
    admin::answer("SHOW MEM", admin::Context{config, nullptr, now_ms, &workers}, out);
    std::vector<Result> results = read_reply(out);
    cr_assert_eq(results.size(), 1u);
    const Result& mem = results[0];
    cr_assert_eq(mem.columns.size(), 5u);
    assert_text(mem.columns[4], "memtotal");
    assert_text(*mem.at({"ring_buffers"}, "used"), "4");
    assert_text(*mem.at({"ring_buffers"}, "free"), "4092");
    assert_text(*mem.at({"ring_buffers"}, "memtotal"), std::to_string(4096ull * 16384).c_str());
    assert_text(*mem.at({"chunks"}, "used"), "5");
}

Test(show, workers_and_mem_answer_before_any_worker_published) {
    config::Config config = test_config();
    Result state = ask_one("SHOW WORKERS", config, nullptr);
    cr_assert_eq(state.rows.size(), 0u);
    Result mem = ask_one("SHOW MEM", config, nullptr);
    assert_text(*mem.at({"out_buffers"}, "used"), "0");
}

// PgBouncer's SHOW STATE: key/value, "yes"/"no", one of active, paused, suspended.
Test(show, state_says_active_paused_or_suspended_as_pgbouncer) {
    config::Config config = test_config();
    config.aliases.emplace_back();
    config.aliases.back().name = "payam_db";
    admin::Console console;
    pool::PoolTable pools{16};
    admin::Context context{config, nullptr, now_ms};
    context.may_control = true;
    context.console = &console;
    context.pool_table = &pools;
    auto state = [&context]() {
        std::vector<uint8_t> out;
        admin::answer("SHOW STATE", context, out);
        std::vector<Result> results = read_reply(out);
        cr_assert_eq(results.size(), 1u);
        cr_assert_eq(results[0].columns, (std::vector<std::string>{"key", "value"}));
        std::string flags;
        for (const auto& row : results[0].rows) flags += *row[0] + "=" + *row[1] + " ";
        return flags;
    };
    assert_text(state(), "active=yes paused=no suspended=no ");
    std::vector<uint8_t> out;
    admin::answer("PAUSE", context, out);
    assert_text(state(), "active=no paused=yes suspended=no ");
    admin::answer("SUSPEND", context, out);  // already paused: refused, as PgBouncer
    assert_text(read_reply(out).back().error['M'], "already suspended/paused");
    admin::answer("RESUME", context, out);
    admin::answer("SUSPEND", context, out);
    assert_text(state(), "active=no paused=no suspended=yes ");
    out.clear();
    admin::answer("RESUME payam_db", context, out);
    assert_text(read_reply(out).back().error['M'],
                "pooler is suspended: RESUME without a database first");
    admin::answer("RESUME", context, out);
    assert_text(state(), "active=yes paused=no suspended=no ");
}

Test(show, a_console_command_in_a_comment_is_told_from_a_routing_hint) {
    std::string_view command;
    bool alone = false;
    cr_assert(admin::comment_command("--!pgplex SHOW POOLS", command, alone));
    assert_text(std::string(command), "SHOW POOLS");
    cr_assert(alone);
    cr_assert(admin::comment_command("  --!pgplex\tpause  mydb ;\n ; \n", command, alone));
    assert_text(std::string(command), "pause  mydb ;");
    cr_assert(alone);
    cr_assert(admin::comment_command("--!pgplex SHOW POOLS\nSELECT 1", command, alone));
    cr_assert_not(alone);
    cr_assert_not(admin::comment_command("--!pgplex route=replica\nSELECT 1", command, alone));
    cr_assert_not(admin::comment_command("--!pgplex max_lag=1s SHOW", command, alone));
    cr_assert_not(admin::comment_command("--!pgplexSHOW POOLS", command, alone));
    cr_assert_not(admin::comment_command("--!pgplex", command, alone));
    cr_assert_not(admin::comment_command("--!pgplex   \nSHOW POOLS", command, alone));
    cr_assert_not(admin::comment_command("SELECT 1 --!pgplex SHOW POOLS", command, alone));
    cr_assert_not(admin::comment_command("/*!pgplex SHOW POOLS */", command, alone));
}

// --- reading commands ------------------------------------------------------------------------

Test(show, commands_ignore_case_whitespace_and_a_trailing_semicolon) {
    config::Config config = test_config();
    assert_text(ask_one("  show\n\tVersion ; ", config, nullptr).columns[0], "version");
    assert_text(ask_one("Show Help;;", config, nullptr).columns[0], "command");
}

Test(show, several_commands_are_answered_in_order) {
    config::Config config = test_config();
    std::vector<Result> results = ask("SHOW VERSION; SHOW CLUSTERS;SHOW HELP", config, nullptr);
    cr_assert_eq(results.size(), 3u);
    assert_text(results[0].columns[0], "version");
    assert_text(results[1].columns[0], "cluster");
    assert_text(results[2].columns[0], "command");
    for (const Result& result : results) assert_text(result.tag, "SHOW");
}

Test(show, an_unknown_command_is_a_syntax_error_with_a_hint) {
    config::Config config = test_config();
    Result error = ask_one("SHOW BOGUS", config, nullptr);
    assert_text(error.error['S'], "ERROR");
    assert_text(error.error['C'], "42601");
    assert_text(error.error['M'], "unknown command: SHOW BOGUS");
    cr_assert(error.error['H'].find("SHOW NODES") != std::string::npos);
    cr_assert(error.columns.empty());
    assert_text(ask_one("SHOW NODES please", config, nullptr).error['C'], "42601");
    assert_text(ask_one("SELECT 1", config, nullptr).error['C'], "42601");
    assert_text(ask_one("SHOW", config, nullptr).error['C'], "42601");
}

Test(show, an_error_ends_the_answer_as_postgresql_abandons_the_rest) {
    config::Config config = test_config();
    std::vector<Result> results = ask("SHOW VERSION; BOGUS; SHOW HELP", config, nullptr);
    cr_assert_eq(results.size(), 2u);
    assert_text(results[0].tag, "SHOW");
    assert_text(results[1].error['M'], "unknown command: BOGUS");
}

Test(show, a_long_unknown_command_is_echoed_cut_short) {
    config::Config config = test_config();
    Result error = ask_one("SHOW " + std::string(5'000, 'x'), config, nullptr);
    cr_assert_lt(error.error['M'].size(), 100u);
    cr_assert(error.error['M'].ends_with("..."));
}

Test(show, an_empty_query_is_answered_with_empty_query_response) {
    config::Config config = test_config();
    cr_assert(ask_one("", config, nullptr).empty_query);
    cr_assert(ask_one("  ;\n ; ", config, nullptr).empty_query);
    std::vector<uint8_t> out;
    admin::answer("", admin::Context{config, nullptr, now_ms}, out);
    cr_assert(out == (std::vector<uint8_t>{'I', 0, 0, 0, 4}));
}

std::vector<admin::ClientRow> three_clients() {
    admin::ClientRow waiting;
    waiting.worker = 1;
    waiting.id = 0x10002;
    waiting.user = "app";
    waiting.database = "shop";
    waiting.application_name = "billing";
    waiting.state = "waiting";
    waiting.wait_reason = "pool";
    waiting.connected_ms = now_ms - 60000;
    waiting.request_ms = waiting.wait_since_ms = now_ms - 2500;  // 2.5 s ago
    admin::ClientRow active = waiting;
    active.worker = 0;
    active.id = 7;
    active.state = "active";
    active.wait_reason = "";
    active.server_pid = 4242;
    active.pinned = true;
    active.prepared_statements = 3;
    admin::ClientRow login = waiting;
    login.id = 8;
    login.state = "auth";
    login.wait_reason = "login";
    login.user = login.database = login.application_name = "";
    return {waiting, active, login};
}

// The value in `column` of row `row`.
const Value& cell(const Result& result, size_t row, std::string_view column) {
    for (size_t i = 0; i < result.columns.size(); ++i)
        if (result.columns[i] == column) return result.rows[row][i];
    cr_assert_fail("no column %.*s", int(column.size()), column.data());
    abort();
}

Test(show, clients_has_pgbouncers_columns_first_then_pgplexs) {
    config::Config config = test_config();
    std::vector<admin::ClientRow> clients = three_clients();
    std::vector<uint8_t> out;
    admin::Context context{config, nullptr, now_ms, nullptr, &clients, 1796613011000};
    admin::answer("SHOW CLIENTS", context, out);
    std::vector<Result> results = read_reply(out);
    cr_assert_eq(results.size(), 1u);
    const Result& shown = results[0];
    const char* pgbouncer[] = {"type",
                               "user",
                               "database",
                               "replication",
                               "state",
                               "addr",
                               "port",
                               "local_addr",
                               "local_port",
                               "connect_time",
                               "request_time",
                               "wait",
                               "wait_us",
                               "close_needed",
                               "ptr",
                               "link",
                               "remote_pid",
                               "tls",
                               "application_name",
                               "prepared_statements",
                               "id"};
    for (size_t i = 0; i < std::size(pgbouncer); ++i) assert_text(shown.columns[i], pgbouncer[i]);
    assert_text(shown.columns[std::size(pgbouncer)], "worker");
    cr_assert_eq(shown.rows.size(), 3u);
    assert_text(*cell(shown, 0, "state"), "waiting");
    assert_text(*cell(shown, 0, "wait_reason"), "pool");
    assert_text(*cell(shown, 0, "wait"), "2");
    assert_text(*cell(shown, 0, "wait_us"), "500000");
    assert_text(*cell(shown, 0, "ptr"), "10002");
    assert_text(*cell(shown, 0, "id"), "65538");
    // The wall clock at now_ms, less the age: 2026-12-07 03:10:11 less 60 s and 2.5 s.
    assert_text(*cell(shown, 0, "connect_time"), "2026-12-07 03:09:11 UTC");
    assert_text(*cell(shown, 0, "request_time"), "2026-12-07 03:10:08 UTC");
    cr_assert(!cell(shown, 0, "addr").has_value());
    assert_text(*cell(shown, 1, "state"), "active");
    assert_text(*cell(shown, 1, "wait"), "0");
    assert_text(*cell(shown, 1, "wait_us"), "0");
    assert_text(*cell(shown, 1, "remote_pid"), "4242");
    assert_text(*cell(shown, 1, "pinned"), "t");
    assert_text(*cell(shown, 1, "prepared_statements"), "3");
    assert_text(*cell(shown, 2, "state"), "login");
    assert_text(*cell(shown, 2, "pgplex_state"), "auth");
}

Test(show, only_show_clients_needs_the_workers_clients) {
    cr_assert(admin::needs_clients("show clients"));
    cr_assert(admin::needs_clients("SHOW STATE; SHOW CLIENTS;"));
    cr_assert(!admin::needs_clients("SHOW STATE"));
    cr_assert(!admin::needs_clients("SHOW CLIENTS extra"));  // an error, answered at once
    cr_assert(!admin::needs_clients(""));
}

// --- UNFENCE and SWITCHOVER ---------------------------------------------------------------

Result act(std::string_view sql, const config::Config& config, const cluster::Topology* topology,
           cluster::Requests* requests) {
    std::vector<uint8_t> out;
    admin::Context context{config, topology, now_ms};
    context.requests = requests;
    admin::answer(sql, context, out);
    std::vector<Result> results = read_reply(out);
    cr_assert_eq(results.size(), 1u);
    return results[0];
}

Test(show, unfence_of_a_fenced_replica_reaches_the_monitor) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    topology.clusters[0].nodes[1].fenced = true;
    cluster::Requests requests;
    Result done =
        act(std::string("UNFENCE pg-test '") + replica_name + "'", config, &topology, &requests);
    cr_assert(done.error.empty(), "%s", done.error['M'].c_str());
    cr_assert_eq(done.tag, "UNFENCE");
    std::vector<cluster::Request> taken = requests.take();
    cr_assert_eq(taken.size(), 1u);
    cr_assert_eq(taken[0].kind, cluster::RequestKind::Unfence);
    cr_assert_eq(taken[0].cluster, "pg-test");
    cr_assert_eq(taken[0].node, replica_name);
}

Test(show, unfence_refuses_a_node_that_is_not_fenced_or_does_not_exist) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    cluster::Requests requests;
    Result plain =
        act(std::string("unfence pg-test ") + replica_name, config, &topology, &requests);
    cr_assert_eq(plain.error['C'], "55000");
    Result missing = act("UNFENCE pg-test 10.9.9.9:5432", config, &topology, &requests);
    cr_assert_eq(missing.error['C'], "42601");
    Result usage = act("UNFENCE pg-test", config, &topology, &requests);
    cr_assert(usage.error['M'].find("usage") != std::string::npos);
    cr_assert(requests.take().empty());
}

Test(show, unfence_refuses_a_fenced_node_that_still_says_it_is_primary) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    topology.clusters[0].nodes[2].fenced = true;
    topology.clusters[0].nodes[2].role = cluster::Role::Primary;
    cluster::Requests requests;
    Result refused =
        act(std::string("UNFENCE pg-test ") + offline_name, config, &topology, &requests);
    cr_assert_eq(refused.error['C'], "55000");
    cr_assert(refused.error['H'].find("pg_rewind") != std::string::npos);
    cr_assert(requests.take().empty());
}

Test(show, switchover_to_a_healthy_replica_is_handed_to_the_monitor_with_a_notice) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    topology.clusters[0].primary = 0;
    cluster::Requests requests;
    Result done =
        act(std::string("SWITCHOVER pg-test TO ") + replica_name, config, &topology, &requests);
    cr_assert(done.error.empty(), "%s", done.error['M'].c_str());
    cr_assert_eq(done.tag, "SWITCHOVER");
    cr_assert(done.notice['M'].find("switchover of pg-test started") != std::string::npos);
    std::vector<cluster::Request> taken = requests.take();
    cr_assert_eq(taken.size(), 1u);
    cr_assert_eq(taken[0].kind, cluster::RequestKind::Switchover);
    cr_assert_eq(taken[0].node, replica_name);
}

Test(show, switchover_refuses_an_offline_target_a_missing_primary_and_bad_syntax) {
    config::Config config = test_config();
    cluster::Topology topology = test_topology(config);
    topology.clusters[0].primary = 0;
    cluster::Requests requests;
    Result offline =
        act(std::string("SWITCHOVER pg-test TO ") + offline_name, config, &topology, &requests);
    cr_assert(offline.error['M'].find("offline") != std::string::npos);
    Result syntax = act("SWITCHOVER pg-test INTO x", config, &topology, &requests);
    cr_assert_eq(syntax.error['C'], "42601");
    Result nowhere = act("SWITCHOVER nowhere", config, &topology, &requests);
    cr_assert_eq(nowhere.error['C'], "42601");
    topology.clusters[0].primary = -1;
    Result headless = act("SWITCHOVER pg-test", config, &topology, &requests);
    cr_assert(headless.error['M'].find("no primary") != std::string::npos);
    cr_assert(requests.take().empty());
}

// --- PgBouncer's console: stats_users and its tables --------------------------------------

Test(show, a_stats_user_may_show_but_not_control) {
    config::Config config = test_config();
    std::vector<uint8_t> out;
    admin::Context context{config, nullptr, now_ms};
    context.may_control = false;
    admin::answer("SHOW VERSION; SWITCHOVER pg-test", context, out);
    std::vector<Result> results = read_reply(out);
    cr_assert_eq(results.size(), 2u);
    assert_text(results[0].columns[0], "version");
    assert_text(results[1].error['C'], "42501");
}

Test(show, databases_lists_each_alias_with_pgbouncer_columns) {
    config::Config config = test_config();
    Result databases = ask_one("SHOW DATABASES", config, nullptr);
    cr_assert_eq(databases.columns.size(), 17u);
    assert_text(databases.columns[0], "name");
    assert_text(databases.columns[7], "reserve_pool_size");
    assert_text(databases.columns[16], "disabled");
    cr_assert_eq(databases.rows.size(), config.aliases.size());
}

Test(show, lists_and_config_are_key_value_tables) {
    config::Config config = test_config();
    Result lists = ask_one("SHOW LISTS", config, nullptr);
    cr_assert_eq(lists.columns.size(), 2u);
    assert_text(*lists.rows[0][0], "databases");
    Result settings = ask_one("SHOW CONFIG", config, nullptr);
    cr_assert_eq(settings.columns.size(), 4u);
    bool found = false;
    for (const auto& row : settings.rows)
        if (*row[0] == "max_client_conn") found = *row[1] == std::to_string(config.max_client_conn);
    cr_assert(found, "SHOW CONFIG has max_client_conn, as pgbouncer_exporter reads it");
}

Test(show, stats_sums_the_pools_of_a_database_and_averages_over_the_period) {
    config::Config config = test_config();
    std::vector<admin::PoolRow> pools(2);
    pools[0].id = 0, pools[0].database = "payam_db", pools[0].user = "payam";
    pools[1].id = 1, pools[1].database = "payam_db", pools[1].user = "app";
    for (admin::PoolRow& pool : pools) {
        pool.totals[size_t(pool::Stat::Queries)] = 70;  // 60 of them in the last 60 s
        pool.older[size_t(pool::Stat::Queries)] = 10;
        pool.totals[size_t(pool::Stat::QueryUs)] = 7000;
        pool.older[size_t(pool::Stat::QueryUs)] = 1000;
    }
    admin::Context context{config, nullptr, now_ms};
    context.pools = &pools;
    context.stats_since_ms = now_ms - 60'000;
    std::vector<uint8_t> out;
    admin::answer("SHOW STATS", context, out);
    Result stats = read_reply(out)[0];
    cr_assert_eq(stats.columns.size(), 25u);
    cr_assert_eq(stats.types[1], 1700u, "numeric, as PgBouncer's");
    cr_assert_eq(stats.rows.size(), 1u);
    assert_text(*stats.at({"payam_db"}, "total_query_count"), "140");
    assert_text(*stats.at({"payam_db"}, "avg_query_count"), "2");   // 120 in 60 s
    assert_text(*stats.at({"payam_db"}, "avg_query_time"), "100");  // 12000 us / 120
    assert_text(*stats.at({"payam_db"}, "total_client_login_count"), "0");
}

Test(show, kill_client_takes_a_decimal_id_as_pgbouncer) {
    uint32_t id = 0;
    cr_assert(admin::parse_client_id(" 1048577 ", id));
    cr_assert_eq(id, 1048577u);
    cr_assert_not(admin::parse_client_id("", id));
    cr_assert_not(admin::parse_client_id("12 13", id));
    cr_assert_not(admin::parse_client_id("0x1f", id));
    cr_assert_not(admin::parse_client_id("-1", id));
    cr_assert_not(admin::parse_client_id("99999999999", id));
}

Test(show, control_commands_without_a_console_are_refused_and_unknown_ones_are_0a000) {
    config::Config config = test_config();
    assert_text(ask_one("PAUSE", config, nullptr).error['C'], "0A000");
    assert_text(ask_one("SUSPEND", config, nullptr).error['C'], "0A000");
}
