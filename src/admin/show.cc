// See show.h. Every command builds a Table of text values first (the control plane may
// allocate) and one writer turns any Table into RowDescription, DataRow... and
// CommandComplete, so a new SHOW is a function from the snapshots to rows and nothing else.
// Values go out in text format, as PostgreSQL sends a simple Query's results
// (protocol-flow.html#PROTOCOL-FLOW-SIMPLE-QUERY).
#include "pgplex/admin/show.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <optional>

#include "pgplex/admin/console.h"
#include "pgplex/admin/failover_commands.h"
#include "pgplex/admin/words.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"

namespace pgplex::admin {

namespace {

using proto::BackendMessage;

// Type oids from PostgreSQL's pg_type.dat, with their typlen for RowDescription.
struct Type {
    uint32_t oid;
    int16_t length_bytes;  // -1: variable
};
constexpr Type type_bool{16, 1};
constexpr Type type_int4{23, 4};
constexpr Type type_int8{20, 8};
constexpr Type type_text{25, -1};
constexpr Type type_numeric{1700, -1};

// An unknown command is echoed in the error up to this many bytes: enough to recognise it,
// never a whole pasted script.
constexpr size_t echoed_command_bytes_max = 64;

struct Column {
    std::string name;
    Type type;
};

using Value = std::optional<std::string>;  // nullopt: SQL NULL
using Row = std::vector<Value>;

struct Table {
    std::vector<Column> columns;
    std::vector<Row> rows;
};

Value text(std::string value) {
    return value;
}
Value integer(int64_t value) {
    return std::to_string(value);
}
Value boolean(bool value) {
    return value ? "t" : "f";
}
// Negative numbers stand for "not known yet" in NodeStatus; SQL says NULL.
Value integer_or_null(int64_t value) {
    return value < 0 ? Value() : integer(value);
}

// As PostgreSQL's pg_lsn output: the high and low 32 bits in hex ("16/B374D848"). Zero is
// an LSN this node has not reported (the primary has no receive LSN, a replica no
// current one), shown as NULL as PostgreSQL's functions return it.
Value lsn_or_null(uint64_t lsn) {
    if (lsn == 0) return Value();
    char buffer[24];
    snprintf(buffer, sizeof buffer, "%" PRIX32 "/%" PRIX32, uint32_t(lsn >> 32), uint32_t(lsn));
    return std::string(buffer);
}

std::string joined(const std::vector<std::string>& parts) {
    std::string out;
    for (const std::string& part : parts) {
        if (!out.empty()) out += ',';
        out += part;
    }
    return out;
}

// --- writing messages ------------------------------------------------------------------------

void put_int16(std::vector<uint8_t>& out, int16_t value) {
    out.push_back(uint8_t(uint16_t(value) >> 8));
    out.push_back(uint8_t(value));
}

void put_int32(std::vector<uint8_t>& out, int32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(uint32_t(value) >> shift));
}

void put_cstring(std::vector<uint8_t>& out, std::string_view text) {
    out.insert(out.end(), text.begin(), text.end());
    out.push_back(0);
}

// Returns where the length word is, for end_message().
size_t begin_message(std::vector<uint8_t>& out, BackendMessage type) {
    out.push_back(uint8_t(type));
    size_t start = out.size();
    put_int32(out, 0);
    return start;
}

void end_message(std::vector<uint8_t>& out, size_t start) {
    PGPLEX_ASSERT(start >= 1 && start + 4 <= out.size());
    uint32_t length = uint32_t(out.size() - start);
    for (int i = 0; i < 4; ++i) out[start + i] = uint8_t(length >> (24 - 8 * i));
}

// protocol-message-formats.html: RowDescription, one DataRow per row, CommandComplete.
void write_table(const Table& table, std::vector<uint8_t>& out) {
    size_t start = begin_message(out, BackendMessage::RowDescription);
    put_int16(out, int16_t(table.columns.size()));
    for (const Column& column : table.columns) {
        put_cstring(out, column.name);
        put_int32(out, 0);  // not a table's column
        put_int16(out, 0);
        put_int32(out, int32_t(column.type.oid));
        put_int16(out, column.type.length_bytes);
        put_int32(out, -1);  // no type modifier
        put_int16(out, 0);   // text format
    }
    end_message(out, start);
    for (const Row& row : table.rows) {
        PGPLEX_ASSERT(row.size() == table.columns.size());
        start = begin_message(out, BackendMessage::DataRow);
        put_int16(out, int16_t(row.size()));
        for (const Value& value : row) {
            put_int32(out, value ? int32_t(value->size()) : -1);
            if (value) out.insert(out.end(), value->begin(), value->end());
        }
        end_message(out, start);
    }
    start = begin_message(out, BackendMessage::CommandComplete);
    put_cstring(out, "SHOW");  // PgBouncer's tag for its SHOW commands
    end_message(out, start);
}

void write_error_response(std::vector<uint8_t>& out, const char* code, std::string_view message,
                          std::string_view hint) {
    // The fixed fields (severity twice, SQLSTATE, tags, terminators) fit in 64 bytes.
    uint32_t capacity = uint32_t(64 + message.size() + hint.size());
    size_t at = out.size();
    out.resize(at + capacity);
    proto::Writer writer(out.data() + at, capacity);
    proto::write_error(writer, proto::Severity::Error, code, message, {}, hint);
    PGPLEX_ASSERT(writer.ok());
    out.resize(at + writer.size());
}

void write_empty_query_response(std::vector<uint8_t>& out) {
    end_message(out, begin_message(out, BackendMessage::EmptyQueryResponse));
}

// --- what the snapshots say ------------------------------------------------------------------

const cluster::ClusterStatus* status_of(const Context& context, const config::Cluster& cluster) {
    return context.topology != nullptr ? context.topology->find(cluster.name) : nullptr;
}

const cluster::NodeStatus* status_of(const cluster::ClusterStatus* cluster,
                                     std::string_view node_name) {
    if (cluster == nullptr) return nullptr;
    for (const cluster::NodeStatus& node : cluster->nodes)
        if (node.name == node_name) return &node;
    return nullptr;
}

// --- the commands ----------------------------------------------------------------------------

// Whether this appliance routes writes to the cluster's primary now, and if not why.
std::string writes_text(const Context& context, const cluster::ClusterStatus* status) {
    if (status == nullptr) return "unknown";
    if (status->store_unconfirmed) return "held: not confirmed by etcd";
    if (!status->writable) {
        bool quorum = context.topology == nullptr || context.topology->membership.quorum;
        return quorum ? "held: no majority lease on the epoch" : "held: no quorum";
    }
    if (status->hold_writes) return "held: switchover";
    return status->primary >= 0 ? "routed" : "held: no primary";
}

Table clusters_table(const Context& context) {
    Table table{{{"cluster", type_text},
                 {"nodes", type_int8},
                 {"healthy", type_int8},
                 {"primary", type_text},
                 {"epoch", type_int8},
                 {"services", type_int8},
                 {"writes", type_text},
                 {"failover", type_text},
                 {"hold_writes", type_bool},
                 {"failover_state", type_text}},
                {}};
    for (const config::Cluster& cluster : context.config.clusters) {
        const cluster::ClusterStatus* status = status_of(context, cluster);
        int64_t healthy = 0;
        std::string primary;
        if (status != nullptr) {
            healthy = std::count_if(status->nodes.begin(), status->nodes.end(),
                                    [](const cluster::NodeStatus& node) { return node.healthy; });
            if (status->primary >= 0 && size_t(status->primary) < status->nodes.size())
                primary = status->nodes[size_t(status->primary)].name;
        }
        table.rows.push_back(
            {text(cluster.name), integer(int64_t(cluster.nodes.size())), integer(healthy),
             text(primary), integer(status != nullptr ? int64_t(status->epoch) : 0),
             integer(int64_t(cluster.services.size())), text(writes_text(context, status)),
             text(config::to_string(cluster.failover)),
             boolean(status != nullptr && status->hold_writes),
             text(status != nullptr ? status->failover_state : "")});
    }
    return table;
}

Table members_table(const Context& context) {
    Table table{{{"member", type_text},
                 {"self", type_bool},
                 {"state", type_text},
                 {"incarnation", type_int8},
                 {"heard_ms_ago", type_int8},
                 {"quorum", type_bool},
                 {"received", type_int8},
                 {"sent", type_int8},
                 {"forged", type_int8},
                 {"replayed", type_int8},
                 {"malformed", type_int8}},
                {}};
    if (context.topology == nullptr || !context.topology->membership.enabled) return table;
    const cluster::Membership& membership = context.topology->membership;
    for (const cluster::MemberStatus& member : membership.members) {
        Value heard;
        if (member.heard_ms >= 0)
            heard = integer(std::max<int64_t>(0, context.now_ms - member.heard_ms));
        Row row{text(member.address),
                boolean(member.self),
                text(member.state),
                integer(int64_t(member.incarnation)),
                heard,
                boolean(member.self && membership.quorum)};
        // The datagram counters are this appliance's own: on its row only.
        for (uint64_t count : {membership.received, membership.sent, membership.forged,
                               membership.replayed, membership.malformed})
            row.push_back(member.self ? integer(int64_t(count)) : Value());
        table.rows.push_back(std::move(row));
    }
    return table;
}

// A load average as /proc/loadavg writes it: two decimals.
std::string load_text(double load) {
    char buffer[32];
    snprintf(buffer, sizeof buffer, "%.2f", load);
    return buffer;
}

Row node_row(const config::Cluster& cluster, const cluster::NodeStatus& node, int64_t now_ms) {
    Value checked_ms_ago;
    if (node.checked_ms > 0)
        checked_ms_ago = integer(std::max<int64_t>(0, now_ms - node.checked_ms));
    return {
        text(cluster.name),
        text(node.name),
        text(cluster::to_string(node.role)),
        text(node.healthy ? "up" : "down"),
        boolean(node.sync),
        boolean(node.delayed()),
        boolean(node.options.offline),
        boolean(node.options.offline_query),
        integer(node.options.weight),
        integer_or_null(node.lag_bytes),
        integer_or_null(node.lag_ms),
        lsn_or_null(node.current_lsn),
        lsn_or_null(node.receive_lsn),
        lsn_or_null(node.replay_lsn),
        integer_or_null(node.free_slots),
        node.max_connections > 0 ? integer(node.max_connections) : Value(),
        checked_ms_ago,
        integer_or_null(node.check_us),
        text(node.source),
        text(node.last_error),
        node.load1 >= 0 ? text(load_text(node.load1)) : Value(),
        node.cpus > 0 ? integer(node.cpus) : Value(),
        boolean(node.fenced),
        boolean(node.noloadbalance),
    };
}

Table nodes_table(const Context& context) {
    Table table{{{"cluster", type_text},        {"node", type_text},
                 {"role", type_text},           {"health", type_text},
                 {"sync", type_bool},           {"delayed", type_bool},
                 {"offline", type_bool},        {"offline_query", type_bool},
                 {"weight", type_int8},         {"lag_bytes", type_int8},
                 {"lag_ms", type_int8},         {"current_lsn", type_text},
                 {"receive_lsn", type_text},    {"replay_lsn", type_text},
                 {"free_slots", type_int8},     {"max_connections", type_int8},
                 {"checked_ms_ago", type_int8}, {"check_us", type_int8},
                 {"source", type_text},         {"last_error", type_text},
                 {"load1", type_text},          {"cpus", type_int8},
                 {"fenced", type_bool},         {"noloadbalance", type_bool}},
                {}};
    for (const config::Cluster& cluster : context.config.clusters) {
        const cluster::ClusterStatus* status = status_of(context, cluster);
        for (const config::Node& node : cluster.nodes) {
            const cluster::NodeStatus* seen = status_of(status, node.name);
            cluster::NodeStatus unseen;  // not checked yet: unknown and down
            unseen.name = node.name;
            unseen.endpoint = node.endpoint;
            unseen.options = node.options;
            table.rows.push_back(
                node_row(cluster, seen != nullptr ? *seen : unseen, context.now_ms));
        }
    }
    return table;
}

Row service_row(const config::Cluster& cluster, const config::Service& service,
                const cluster::ClusterStatus* status) {
    std::vector<std::string> listen, carrier_names;
    for (const config::Endpoint& endpoint : service.listen) listen.push_back(endpoint.to_string());
    const char* carried_by = "none";
    if (status != nullptr) {
        cluster::Carriers carriers =
            cluster::carriers(cluster::service_rule(cluster, service), *status);
        for (int index : carriers.nodes) carrier_names.push_back(status->nodes[size_t(index)].name);
        if (!carriers.nodes.empty()) carried_by = carriers.backup ? "backup" : "members";
    }
    return {text(cluster.name),
            text(service.name),
            text(joined(listen)),
            text(config::to_string(service.dest)),
            text(config::to_string(service.balance)),
            text(service.selector),
            text(service.backup),
            text(joined(carrier_names)),
            text(carried_by)};
}

Table services_table(const Context& context) {
    Table table{{{"cluster", type_text},
                 {"service", type_text},
                 {"listen", type_text},
                 {"dest", type_text},
                 {"balance", type_text},
                 {"selector", type_text},
                 {"backup", type_text},
                 {"carriers", type_text},
                 {"carried_by", type_text}},
                {}};
    for (const config::Cluster& cluster : context.config.clusters) {
        const cluster::ClusterStatus* status = status_of(context, cluster);
        for (const config::Service& service : cluster.services)
            table.rows.push_back(service_row(cluster, service, status));
    }
    return table;
}

// PgBouncer's SHOW STATE: whether the pooler runs, is PAUSEd (every database) or SUSPENDed,
// as key/value rows ("yes"/"no"). A database PAUSEd by name leaves it "active", as there.
Table state_table(const Context& context) {
    Table table{{{"key", type_text}, {"value", type_text}}, {}};
    bool paused = false, suspended = false;
    if (context.console != nullptr) {
        suspended = context.console->suspended.load(std::memory_order_acquire);
        paused = !suspended && context.console->paused_all.load(std::memory_order_acquire);
    }
    auto yes_no = [](bool value) { return text(value ? "yes" : "no"); };
    table.rows.push_back({text("active"), yes_no(!paused && !suspended)});
    table.rows.push_back({text("paused"), yes_no(paused)});
    table.rows.push_back({text("suspended"), yes_no(suspended)});
    return table;
}

// pgplex's SHOW WORKERS: one row per worker, with its clients and servers by state, pins,
// buffers, queued bytes and its counters.
Table workers_table(const Context& context) {
    Table table{{{"worker", type_int8}}, {}};
    if (context.workers == nullptr || context.workers->empty()) return table;
    const WorkerState& first = context.workers->front();
    for (const auto& [name, count] : first.clients)
        table.columns.push_back({"cl_" + name, type_int8});
    for (const auto& [name, count] : first.servers)
        table.columns.push_back({"sv_" + name, type_int8});
    for (const char* name :
         {"pinned", "ring_buffers_used", "out_buffers_used", "chunks_used", "bytes_queued",
          "tls_failures", "auth_failures", "logins_refused", "protocol_violations", "auth_queries",
          "auth_query_failures", "clients_stalled", "clients_kept", "primary_waiting",
          "primary_wait_timeouts", "requests_rerun"})
        table.columns.push_back({name, type_int8});
    for (const WorkerState& worker : *context.workers) {
        Row row{integer(worker.worker)};
        for (const auto& [name, count] : worker.clients) row.push_back(integer(count));
        for (const auto& [name, count] : worker.servers) row.push_back(integer(count));
        for (uint64_t value :
             {uint64_t(worker.pinned), uint64_t(worker.ring_in_use), uint64_t(worker.out_in_use),
              uint64_t(worker.chunks_in_use), worker.bytes_queued, worker.tls_failures,
              worker.auth_failures, worker.logins_refused, worker.protocol_violations,
              worker.auth_queries, worker.auth_query_failures, worker.clients_stalled,
              worker.clients_kept, uint64_t(worker.primary_waiting), worker.primary_wait_timeouts,
              worker.requests_rerun})
            row.push_back(integer(int64_t(value)));
        table.rows.push_back(std::move(row));
    }
    return table;
}

// PgBouncer's SHOW MEM shape (name, size, used, free, memtotal), summed over the workers:
// the provided buffer rings, the out buffers pgplex writes its own messages into, and the
// chunks of the send queues.
Table mem_table(const Context& context) {
    Table table{{{"name", type_text},
                 {"size", type_int4},
                 {"used", type_int4},
                 {"free", type_int4},
                 {"memtotal", type_int4}},
                {}};
    uint64_t size = 0, ring[2] = {0, 0}, out[2] = {0, 0}, chunks[2] = {0, 0};  // used, count
    if (context.workers != nullptr)
        for (const WorkerState& worker : *context.workers) {
            size = worker.buffer_size;
            ring[0] += worker.ring_in_use, ring[1] += worker.ring_count;
            out[0] += worker.out_in_use, out[1] += worker.out_count;
            chunks[0] += worker.chunks_in_use, chunks[1] += worker.chunk_count;
        }
    auto add = [&table](const char* name, uint64_t item, const uint64_t(&counts)[2]) {
        table.rows.push_back({text(name), integer(int64_t(item)), integer(int64_t(counts[0])),
                              integer(int64_t(counts[1] - counts[0])),
                              integer(int64_t(item * counts[1]))});
    };
    add("ring_buffers", size, ring);
    add("out_buffers", size, out);
    add("chunks", 16, chunks);
    return table;
}

// As PgBouncer prints its timestamps: "2026-12-07 03:10:11 UTC".
Value timestamp(const Context& context, int64_t monotonic_ms) {
    if (monotonic_ms <= 0 || context.wall_ms <= 0) return Value();
    time_t seconds = time_t((context.wall_ms - (context.now_ms - monotonic_ms)) / 1000);
    struct tm parts;
    gmtime_r(&seconds, &parts);
    char buffer[32];
    strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &parts);
    return std::string(buffer);
}

// PgBouncer's names for where a client is: logging in, waiting for a server, or active
// (whether or not it holds one).
const char* pgbouncer_state(std::string_view state) {
    if (state == "startup" || state == "auth") return "login";
    if (state == "waiting" || state == "asking") return "waiting";
    return "active";
}

// PgBouncer's columns first, in its order, so its exporters and scripts read them; then
// pgplex's. wait and wait_us are the seconds and the microseconds beyond them of the current
// wait, whatever its reason (wait_reason); 0 when the client waits for nothing. addr, port,
// local_addr and local_port are NULL: accepted as direct descriptors, pgplex's sockets have
// no address to ask yet.
// PgBouncer's socket columns (its socket_header), with its debug ones for SHOW SOCKETS, then
// pgplex's own.
std::vector<Column> socket_columns(bool debug) {
    std::vector<Column> columns{{"type", type_text},
                                {"user", type_text},
                                {"database", type_text},
                                {"replication", type_text},
                                {"state", type_text},
                                {"addr", type_text},
                                {"port", type_int4},
                                {"local_addr", type_text},
                                {"local_port", type_int4},
                                {"connect_time", type_text},
                                {"request_time", type_text},
                                {"wait", type_int4},
                                {"wait_us", type_int4},
                                {"close_needed", type_int4},
                                {"ptr", type_text},
                                {"link", type_text},
                                {"remote_pid", type_int4},
                                {"tls", type_text},
                                {"application_name", type_text},
                                {"prepared_statements", type_int4},
                                {"id", type_int4}};
    if (debug)
        for (const char* name : {"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain",
                                 "pkt_avail", "send_avail"})
            columns.push_back({name, type_int4});
    for (Column column : std::initializer_list<Column>{{"worker", type_int8},
                                                       {"pgplex_state", type_text},
                                                       {"wait_reason", type_text},
                                                       {"pinned", type_bool},
                                                       {"bytes_queued", type_int8}})
        columns.push_back(std::move(column));
    return columns;
}

// wait and wait_us are the seconds and the microseconds beyond them of the current wait,
// whatever its reason (wait_reason); 0 when the client waits for nothing. A client's
// remote_pid is its server's backend pid (pgplex has none of the client's); a server's, its
// own. ptr is the id in hex; link is NULL (the id of the other side is not kept).
Row socket_row(const Context& context, const ClientRow& client, bool debug) {
    int64_t wait_us = client.wait_reason.empty()
                          ? 0
                          : std::max<int64_t>(0, context.now_ms - client.wait_since_ms) * 1000;
    char ptr[24];
    snprintf(ptr, sizeof ptr, "%x", client.id);
    const char* state =
        client.type == 'S' ? client.pgbouncer_state.c_str() : pgbouncer_state(client.state);
    Row row{text(std::string(1, client.type)),
            text(client.user),
            text(client.database),
            text("none"),
            text(state),
            client.addr.empty() ? Value() : text(client.addr),
            client.port < 0 ? Value() : integer(client.port),
            client.local_addr.empty() ? Value() : text(client.local_addr),
            client.local_port < 0 ? Value() : integer(client.local_port),
            timestamp(context, client.connected_ms),
            timestamp(context, client.request_ms),
            integer(wait_us / 1000000),
            integer(wait_us % 1000000),
            integer(0),
            text(ptr),
            Value(),
            integer(client.server_pid),
            client.tls.empty() ? Value() : text(client.tls),
            text(client.application_name),
            integer(client.prepared_statements),
            integer(client.id)};
    if (debug)
        for (int i = 0; i < 7; ++i) row.push_back(integer(0));  // pgplex keeps no such offsets
    for (Value value : {integer(client.worker), text(client.state), text(client.wait_reason),
                        boolean(client.pinned), integer(int64_t(client.bytes_queued))})
        row.push_back(std::move(value));
    return row;
}

// kinds: the row types listed ("C", "S" or both).
Table sockets_of(const Context& context, std::string_view kinds, bool debug) {
    Table table{socket_columns(debug), {}};
    if (context.clients == nullptr) return table;
    for (const ClientRow& row : *context.clients)
        if (kinds.find(row.type) != std::string_view::npos)
            table.rows.push_back(socket_row(context, row, debug));
    return table;
}

Table clients_table(const Context& context) {
    return sockets_of(context, "C", false);
}

Table servers_table(const Context& context) {
    return sockets_of(context, "S", false);
}

Table sockets_table(const Context& context) {
    return sockets_of(context, "CS", true);
}

Table version_table(const Context&) {
    return Table{{{"version", type_text}}, {{text(version_text)}}};
}

// --- PgBouncer 1.25's tables (its admin.c and doc/usage.md name the columns and types) ------

// How many servers the pools of one alias have now.
int64_t alias_servers(const Context& context, std::string_view alias) {
    int64_t servers = 0;
    if (context.pools != nullptr)
        for (const PoolRow& pool : *context.pools)
            if (pool.database == alias) servers += pool.servers;
    return servers;
}

// A duration in PgBouncer's units: whole seconds.
Value seconds(int64_t ms) {
    return integer(ms / 1000);
}

bool paused(const Context& context, const std::string& database) {
    return context.console != nullptr &&
           (context.console->paused_all.load(std::memory_order_relaxed) ||
            context.console->is_paused(database));
}

const pool::Budget* budget_of(const Context& context, pool::BudgetKind kind,
                              const std::string& name) {
    return context.pool_table != nullptr ? context.pool_table->budgets.find(kind, name) : nullptr;
}

Row database_row(const Context& context, const config::Alias& alias) {
    const config::Config& config = context.config;
    const pool::Budget* budget = budget_of(context, pool::BudgetKind::Database, alias.name);
    std::string host = alias.server.host;
    Value port = integer(alias.server.port);
    if (!alias.cluster.empty()) {  // a cluster: its nodes, as PgBouncer lists several hosts
        std::vector<std::string> nodes;
        if (const config::Cluster* cluster = config.find_cluster(alias.cluster))
            for (const config::Node& node : cluster->nodes) nodes.push_back(node.name);
        host = joined(nodes);
        port = Value();
    }
    return {
        text(alias.name),
        text(host),
        port,
        text(alias.dbname.empty() ? alias.name : alias.dbname),
        alias.user.empty() ? Value() : text(alias.user),
        integer(config.pool_size(alias)),
        integer(config.min_pool_size_of(alias)),
        integer(config.reserve_pool_size_of(alias)),
        seconds(config.server_lifetime_ms),
        alias.pool_mode_set ? text(config::to_string(alias.pool_mode)) : Value(),
        Value(),  // load_balance_hosts: pgplex balances by service (balance)
        integer(config.max_db_connections_of(alias.name)),
        integer(budget != nullptr ? budget->servers.count() : alias_servers(context, alias.name)),
        integer(config.max_db_client_connections_of(alias.name)),
        integer(budget != nullptr ? budget->clients.count() : 0),
        integer(paused(context, alias.name) ? 1 : 0),
        integer(context.console != nullptr && context.console->is_disabled(alias.name))};
}

Table databases_table(const Context& context) {
    Table table{{{"name", type_text},
                 {"host", type_text},
                 {"port", type_int4},
                 {"database", type_text},
                 {"force_user", type_text},
                 {"pool_size", type_int4},
                 {"min_pool_size", type_int4},
                 {"reserve_pool_size", type_int4},
                 {"server_lifetime", type_int4},
                 {"pool_mode", type_text},
                 {"load_balance_hosts", type_text},
                 {"max_connections", type_int4},
                 {"current_connections", type_int4},
                 {"max_client_connections", type_int4},
                 {"current_client_connections", type_int4},
                 {"paused", type_int4},
                 {"disabled", type_int4}},
                {}};
    for (const config::Alias& alias : context.config.aliases)
        table.rows.push_back(database_row(context, alias));
    return table;
}

// [users.NAME] tables, by name. pool_size and reserve_pool_size are text in PgBouncer (empty
// when the user sets none); pgplex sets neither per user.
Table users_table(const Context& context) {
    Table table{{{"name", type_text},
                 {"pool_size", type_text},
                 {"reserve_pool_size", type_text},
                 {"pool_mode", type_text},
                 {"max_user_connections", type_int4},
                 {"current_connections", type_int4},
                 {"max_user_client_connections", type_int4},
                 {"current_client_connections", type_int4}},
                {}};
    std::vector<const config::UserSettings*> users;
    for (const auto& [name, settings] : context.config.user_settings) users.push_back(&settings);
    std::sort(users.begin(), users.end(),
              [](const auto* a, const auto* b) { return a->name < b->name; });
    for (const config::UserSettings* user : users) {
        int64_t servers = 0;
        if (context.pools != nullptr)
            for (const PoolRow& pool : *context.pools)
                if (pool.user == user->name) servers += pool.servers;
        const pool::Budget* budget = budget_of(context, pool::BudgetKind::User, user->name);
        const config::Config& config = context.config;
        table.rows.push_back(
            {text(user->name), text(""), text(""),
             user->pool_mode_set ? text(config::to_string(user->pool_mode)) : Value(),
             integer(config.max_user_connections_of(user->name)),
             integer(budget != nullptr ? budget->servers.count() : servers),
             integer(config.max_user_client_connections_of(user->name)),
             integer(budget != nullptr ? budget->clients.count() : 0)});
    }
    return table;
}

// Clients and servers in one state, over every worker.
int64_t count_in(const Context& context, bool clients,
                 std::initializer_list<std::string_view> states) {
    int64_t count = 0;
    if (context.workers == nullptr) return 0;
    for (const WorkerState& worker : *context.workers)
        for (const auto& [name, in] : clients ? worker.clients : worker.servers)
            if (states.size() == 0 || std::find(states.begin(), states.end(), name) != states.end())
                count += in;
    return count;
}

Table lists_table(const Context& context) {
    Table table{{{"list", type_text}, {"items", type_int4}}, {}};
    int64_t pools = context.pools != nullptr ? int64_t(context.pools->size()) : 0;
    int64_t used_clients = count_in(context, true, {});
    auto add = [&table](const char* name, int64_t items) {
        table.rows.push_back({text(name), integer(items)});
    };
    add("databases", int64_t(context.config.aliases.size()));
    add("users", int64_t(context.config.users.size()));
    add("peers", 0);
    add("pools", pools);
    add("peer_pools", 0);
    add("free_clients", std::max<int64_t>(0, context.config.max_client_conn - used_clients));
    add("used_clients", used_clients);
    add("login_clients", count_in(context, true, {"startup", "auth"}));
    add("free_servers", 0);
    add("used_servers", count_in(context, false, {}));
    for (const char* name : {"dns_names", "dns_zones", "dns_queries", "dns_pending"}) add(name, 0);
    return table;
}

std::string boolean_text(bool value) {
    return value ? "1" : "0";
}

std::string users_text(const std::vector<std::string>& users) {
    return joined(users);
}

// One setting of SHOW CONFIG: its name in pgplex.toml (PgBouncer's where they share one),
// how to print it from a snapshot, and whether a RELOAD (or SET) changes it live.
struct ConfigKey {
    const char* name;
    std::string (*value)(const config::Config&);
    bool changeable;
};

std::string ms_seconds(int64_t ms) {
    return std::to_string(ms / 1000);
}

constexpr ConfigKey config_keys[] = {
    {"admin_users", [](const config::Config& c) { return users_text(c.admin_users); }, true},
    {"auth_file", [](const config::Config& c) { return c.auth_file; }, true},
    {"auth_query", [](const config::Config& c) { return c.auth_query; }, true},
    {"auth_type", [](const config::Config& c) { return std::string(to_string(c.auth_type)); },
     true},
    {"auth_user", [](const config::Config& c) { return c.auth_user; }, true},
    {"client_login_timeout",
     [](const config::Config& c) { return ms_seconds(c.client_login_timeout_ms); }, true},
    {"default_pool_size",
     [](const config::Config& c) { return std::to_string(c.default_pool_size); }, true},
    {"log_connections", [](const config::Config& c) { return boolean_text(c.log_connections); },
     true},
    {"log_disconnections",
     [](const config::Config& c) { return boolean_text(c.log_disconnections); }, true},
    {"max_client_conn", [](const config::Config& c) { return std::to_string(c.max_client_conn); },
     true},
    {"max_db_client_connections",
     [](const config::Config& c) { return std::to_string(c.max_db_client_connections); }, true},
    {"max_db_connections",
     [](const config::Config& c) { return std::to_string(c.max_db_connections); }, true},
    {"max_prepared_statements",
     [](const config::Config& c) { return std::to_string(c.max_prepared_statements); }, true},
    {"max_user_client_connections",
     [](const config::Config& c) { return std::to_string(c.max_user_client_connections); }, true},
    {"max_user_connections",
     [](const config::Config& c) { return std::to_string(c.max_user_connections); }, true},
    {"min_pool_size", [](const config::Config& c) { return std::to_string(c.min_pool_size); },
     true},
    {"pool_mode", [](const config::Config& c) { return std::string(to_string(c.pool_mode)); },
     true},
    {"query_wait_timeout",
     [](const config::Config& c) { return ms_seconds(c.query_wait_timeout_ms); }, true},
    {"reserve_pool_size",
     [](const config::Config& c) { return std::to_string(c.reserve_pool_size); }, true},
    {"reserve_pool_timeout",
     [](const config::Config& c) { return ms_seconds(c.reserve_pool_timeout_ms); }, true},
    {"server_connect_timeout",
     [](const config::Config& c) { return ms_seconds(c.server_connect_timeout_ms); }, true},
    {"server_idle_timeout",
     [](const config::Config& c) { return ms_seconds(c.server_idle_timeout_ms); }, true},
    {"server_lifetime", [](const config::Config& c) { return ms_seconds(c.server_lifetime_ms); },
     true},
    {"server_reset_query", [](const config::Config& c) { return c.server_reset_query; }, true},
    {"shutdown_timeout", [](const config::Config& c) { return ms_seconds(c.shutdown_timeout_ms); },
     true},
    {"stats_period", [](const config::Config&) { return std::to_string(stats_period_seconds); },
     false},
    {"stats_users", [](const config::Config& c) { return users_text(c.stats_users); }, true},
    {"workers", [](const config::Config& c) { return std::to_string(c.workers); }, false},
};

Table config_table(const Context& context) {
    Table table{{{"key", type_text},
                 {"value", type_text},
                 {"default", type_text},
                 {"changeable", type_text}},
                {}};
    const config::Config defaults;
    for (const ConfigKey& key : config_keys)
        table.rows.push_back({text(key.name), text(key.value(context.config)),
                              text(key.value(defaults)), text(key.changeable ? "yes" : "no")});
    return table;
}

// --- SHOW POOLS and the statistics ------------------------------------------------------------

const char* pool_mode_text(const Context& context, const PoolRow& pool) {
    const config::Alias* alias = context.config.find_alias(pool.database);
    return config::to_string(alias != nullptr ? context.config.pool_mode_of(*alias, pool.user)
                                              : context.config.pool_mode);
}

// The gathered sockets of one pool, by PgBouncer state; and its oldest waiting client's wait.
struct PoolSockets {
    int64_t cl_active = 0, cl_waiting = 0, sv_active = 0, sv_idle = 0, sv_tested = 0, sv_login = 0,
            max_wait_us = 0;
};

PoolSockets sockets_of_pool(const Context& context, uint32_t id) {
    PoolSockets out;
    if (context.clients == nullptr) return out;
    for (const ClientRow& row : *context.clients) {
        if (row.pool != int64_t(id)) continue;
        std::string_view state =
            row.type == 'S' ? std::string_view(row.pgbouncer_state) : pgbouncer_state(row.state);
        if (row.type == 'C' && state == "waiting") {
            ++out.cl_waiting;
            out.max_wait_us =
                std::max(out.max_wait_us, (context.now_ms - row.wait_since_ms) * 1000);
        } else if (row.type == 'C' && state == "active") {
            ++out.cl_active;
        } else if (row.type == 'S') {
            int64_t& count = state == "active"   ? out.sv_active
                             : state == "idle"   ? out.sv_idle
                             : state == "tested" ? out.sv_tested
                                                 : out.sv_login;
            ++count;
        }
    }
    return out;
}

Table pools_table(const Context& context) {
    Table table{{{"database", type_text}, {"user", type_text}}, {}};
    for (const char* name :
         {"cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
          "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
          "maxwait", "maxwait_us"})
        table.columns.push_back({name, type_int4});
    table.columns.push_back({"pool_mode", type_text});
    table.columns.push_back({"load_balance_hosts", type_text});
    if (context.pools == nullptr) return table;
    for (const PoolRow& pool : *context.pools) {
        PoolSockets sockets = sockets_of_pool(context, pool.id);
        table.rows.push_back({text(pool.database), text(pool.user), integer(sockets.cl_active),
                              integer(sockets.cl_waiting), integer(0), integer(0),
                              integer(sockets.sv_active), integer(0), integer(0),
                              integer(sockets.sv_idle), integer(0), integer(sockets.sv_tested),
                              integer(sockets.sv_login), integer(sockets.max_wait_us / 1000000),
                              integer(sockets.max_wait_us % 1000000),
                              text(pool_mode_text(context, pool)), Value()});
    }
    return table;
}

// One database's statistics: its pools' totals, now and at the older period boundary.
struct DatabaseStats {
    std::string database;
    pool::StatValues totals{}, older{};
};

std::vector<DatabaseStats> stats_by_database(const Context& context) {
    std::vector<DatabaseStats> out;
    if (context.pools == nullptr) return out;
    for (const PoolRow& pool : *context.pools) {
        auto at = std::find_if(out.begin(), out.end(), [&pool](const DatabaseStats& database) {
            return database.database == pool.database;
        });
        if (at == out.end()) at = out.insert(out.end(), DatabaseStats{pool.database, {}, {}});
        for (size_t i = 0; i < pool::stat_count; ++i) {
            at->totals[i] += pool.totals[i];
            at->older[i] += pool.older[i];
        }
    }
    std::sort(out.begin(), out.end(), [](const DatabaseStats& a, const DatabaseStats& b) {
        return a.database < b.database;
    });
    return out;
}

uint64_t stat(const pool::StatValues& values, pool::Stat which) {
    return values[size_t(which)];
}

// PgBouncer's averages over [stats_since_ms, now]: counts and bytes per second, times per
// query, transaction or assignment. In the order of the columns, without the parse, bind and
// login counts pgplex does not keep.
std::array<uint64_t, 8> averages(const Context& context, const DatabaseStats& stats) {
    std::array<uint64_t, 8> out{};
    int64_t duration_ms = context.now_ms - context.stats_since_ms;
    if (context.stats_since_ms <= 0 || duration_ms <= 0) return out;
    auto delta = [&stats](pool::Stat which) {
        return stat(stats.totals, which) - stat(stats.older, which);
    };
    auto per_second = [&](pool::Stat which) { return delta(which) * 1000 / uint64_t(duration_ms); };
    auto per = [&](pool::Stat time, pool::Stat count) {
        return delta(count) == 0 ? 0 : delta(time) / delta(count);
    };
    using pool::Stat;
    out = {per_second(Stat::ServerAssignments), per_second(Stat::Transactions),
           per_second(Stat::Queries),           per_second(Stat::ReceivedBytes),
           per_second(Stat::SentBytes),         per(Stat::TransactionUs, Stat::Transactions),
           per(Stat::QueryUs, Stat::Queries),   per(Stat::WaitUs, Stat::ServerAssignments)};
    return out;
}

std::array<uint64_t, 8> totals_of(const pool::StatValues& values) {
    using pool::Stat;
    return {stat(values, Stat::ServerAssignments), stat(values, Stat::Transactions),
            stat(values, Stat::Queries),           stat(values, Stat::ReceivedBytes),
            stat(values, Stat::SentBytes),         stat(values, Stat::TransactionUs),
            stat(values, Stat::QueryUs),           stat(values, Stat::WaitUs)};
}

// The eight counters pgplex keeps, then the four it does not (client_parse_count,
// server_parse_count, bind_count, client_login_count: 0).
void add_stats(Row& row, const std::array<uint64_t, 8>& values) {
    for (uint64_t value : values) row.push_back(integer(int64_t(value)));
    for (int i = 0; i < 4; ++i) row.push_back(integer(0));
}

constexpr const char* stat_names[] = {"server_assignment_count",
                                      "xact_count",
                                      "query_count",
                                      "received",
                                      "sent",
                                      "xact_time",
                                      "query_time",
                                      "wait_time",
                                      "client_parse_count",
                                      "server_parse_count",
                                      "bind_count",
                                      "client_login_count"};

Table stats_table(const Context& context) {
    Table table{{{"database", type_text}}, {}};
    for (const char* name : stat_names)
        table.columns.push_back({std::string("total_") + name, type_numeric});
    for (const char* name : stat_names) {
        std::string_view short_name = name;  // PgBouncer's avg_recv: not avg_received
        std::string column = short_name == "received" ? "avg_recv" : std::string("avg_") + name;
        table.columns.push_back({column, type_numeric});
    }
    for (const DatabaseStats& stats : stats_by_database(context)) {
        Row row{text(stats.database)};
        add_stats(row, totals_of(stats.totals));
        add_stats(row, averages(context, stats));
        table.rows.push_back(std::move(row));
    }
    return table;
}

// STATS_TOTALS and STATS_AVERAGES share their column names (bytes_received, bytes_sent);
// STATS_AVERAGES calls its last four avg_*.
Table stats_pair_table(const Context& context, bool average) {
    Table table{{{"database", type_text}}, {}};
    for (const char* name : stat_names) {
        std::string_view short_name = name;
        std::string column = short_name == "received" ? "bytes_received"
                             : short_name == "sent"   ? "bytes_sent"
                                                      : std::string(name);
        if (average && (short_name.ends_with("parse_count") || short_name == "bind_count" ||
                        short_name == "client_login_count"))
            column = "avg_" + column;
        table.columns.push_back({column, type_numeric});
    }
    for (const DatabaseStats& stats : stats_by_database(context)) {
        Row row{text(stats.database)};
        add_stats(row, average ? averages(context, stats) : totals_of(stats.totals));
        table.rows.push_back(std::move(row));
    }
    return table;
}

Table stats_totals_table(const Context& context) {
    return stats_pair_table(context, false);
}

Table stats_averages_table(const Context& context) {
    return stats_pair_table(context, true);
}

// SHOW TOTALS: SHOW STATS summed over the databases, one name/value row each. PgBouncer
// names the byte counts after who sent them: client_bytes, server_bytes.
Table totals_table(const Context& context) {
    Table table{{{"name", type_text}, {"value", type_numeric}}, {}};
    DatabaseStats all;
    for (const DatabaseStats& stats : stats_by_database(context))
        for (size_t i = 0; i < pool::stat_count; ++i) {
            all.totals[i] += stats.totals[i];
            all.older[i] += stats.older[i];
        }
    auto add_rows = [&table](const char* prefix, const std::array<uint64_t, 8>& values) {
        Row extra;
        add_stats(extra, values);
        for (size_t i = 0; i < extra.size(); ++i) {
            std::string_view name = stat_names[i];
            std::string column = name == "received" ? "client_bytes"
                                 : name == "sent"   ? "server_bytes"
                                                    : std::string(name);
            table.rows.push_back({text(prefix + column), extra[i]});
        }
    };
    add_rows("total_", totals_of(all.totals));
    add_rows("avg_", averages(context, all));
    return table;
}

Table help_table(const Context&);

struct ShowCommand {
    std::string_view name;  // after SHOW, as help lists it
    Table (*build)(const Context&);
};

constexpr ShowCommand show_commands[] = {
    {"CLUSTERS", clusters_table},
    {"NODES", nodes_table},
    {"SERVICES", services_table},
    {"MEMBERS", members_table},
    {"CLIENTS", clients_table},
    {"STATE", state_table},
    {"WORKERS", workers_table},
    {"MEM", mem_table},
    {"VERSION", version_table},
    {"HELP", help_table},
    {"DATABASES", databases_table},
    {"USERS", users_table},
    {"LISTS", lists_table},
    {"CONFIG", config_table},
    {"POOLS", pools_table},
    {"SERVERS", servers_table},
    {"SOCKETS", sockets_table},
    {"STATS", stats_table},
    {"STATS_TOTALS", stats_totals_table},
    {"STATS_AVERAGES", stats_averages_table},
    {"TOTALS", totals_table},
};

Table help_table(const Context&) {
    Table table{{{"command", type_text}}, {}};
    for (const ShowCommand& command : show_commands)
        table.rows.push_back({text("SHOW " + std::string(command.name))});
    table.rows.push_back({text("UNFENCE cluster node")});
    table.rows.push_back({text("SWITCHOVER cluster [TO node]")});
    for (const char* command :
         {"PAUSE [db]", "RESUME [db]", "SUSPEND", "DISABLE db", "ENABLE db", "KILL [db]",
          "KILL_CLIENT id", "RELOAD", "SHUTDOWN [WAIT_FOR_CLIENTS]", "SET key = value"})
        table.rows.push_back({text(command)});
    return table;
}

// --- reading commands ------------------------------------------------------------------------

std::string_view first_word(std::string_view command) {
    return next_word(command);
}

const ShowCommand* find_command(std::string_view command) {
    if (!same_word(next_word(command), "show")) return nullptr;
    std::string_view name = next_word(command);
    if (!trimmed(command).empty()) return nullptr;
    for (const ShowCommand& known : show_commands)
        if (same_word(known.name, name)) return &known;
    return nullptr;
}

std::string commands_hint() {
    std::string hint = "pgplex answers";
    for (const ShowCommand& command : show_commands) {
        hint += &command == show_commands ? " SHOW " : ", SHOW ";
        hint += command.name;
    }
    return hint +
           ", UNFENCE, SWITCHOVER, PAUSE, RESUME, SUSPEND, DISABLE, ENABLE, KILL, KILL_CLIENT, "
           "RELOAD, "
           "SHUTDOWN, SET.";
}

// Returns false when the command was answered with an ErrorResponse.
bool answer_one(std::string_view command, const Context& context, std::vector<uint8_t>& out) {
    PGPLEX_ASSERT(!command.empty());
    const ShowCommand* known = find_command(command);
    if (known != nullptr) {
        write_table(known->build(context), out);
        return true;
    }
    if (!context.may_control && !same_word(first_word(command), "show")) {
        write_error_response(out, sqlstate::insufficient_privilege,
                             "admin access needed: a stats_users user may only SHOW",
                             "List the user in admin_users in [pgplex].");
        return false;
    }
    CommandOutcome acted = answer_failover_command(command, context, out);
    if (acted == CommandOutcome::NotMine) acted = answer_console_command(command, context, out);
    if (acted != CommandOutcome::NotMine) return acted == CommandOutcome::Done;
    std::string echo(command.substr(0, echoed_command_bytes_max));
    if (command.size() > echoed_command_bytes_max) echo += "...";
    write_error_response(out, sqlstate::syntax_error, "unknown command: " + echo, commands_hint());
    return false;
}

}  // namespace

bool needs_clients(std::string_view sql) {
    sql = sql.substr(0, sql.find('\0'));
    while (!sql.empty()) {
        size_t end = sql.find(';');
        std::string_view command = trimmed(sql.substr(0, end));
        sql.remove_prefix(end == std::string_view::npos ? sql.size() : end + 1);
        const ShowCommand* known = command.empty() ? nullptr : find_command(command);
        if (known != nullptr && (known->build == clients_table || known->build == servers_table ||
                                 known->build == sockets_table || known->build == pools_table))
            return true;
    }
    return false;
}

void answer(std::string_view sql, const Context& context, std::vector<uint8_t>& out) {
    sql = sql.substr(0, sql.find('\0'));  // a Query's text ends at its terminator
    bool answered = false;
    while (!sql.empty()) {
        size_t end = sql.find(';');
        std::string_view command = trimmed(sql.substr(0, end));
        sql.remove_prefix(end == std::string_view::npos ? sql.size() : end + 1);
        if (command.empty()) continue;  // "SHOW NODES;;" has one command, as in PostgreSQL
        answered = true;
        if (!answer_one(command, context, out)) return;
    }
    if (!answered) write_empty_query_response(out);
}

}  // namespace pgplex::admin
