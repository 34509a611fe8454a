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
constexpr Type type_int8{20, 8};
constexpr Type type_text{25, -1};

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

void write_error_response(std::vector<uint8_t>& out, std::string_view message,
                          std::string_view hint) {
    // The fixed fields (severity twice, SQLSTATE, tags, terminators) fit in 64 bytes.
    uint32_t capacity = uint32_t(64 + message.size() + hint.size());
    size_t at = out.size();
    out.resize(at + capacity);
    proto::Writer writer(out.data() + at, capacity);
    proto::write_error(writer, proto::Severity::Error, sqlstate::syntax_error, message, {}, hint);
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

// The rule the data path routes a service by. A service without its own max_lag takes the
// cluster's. Selectors were checked when the config was loaded; one that does not compile
// here selects nothing.
cluster::ServiceRule rule_of(const config::Cluster& cluster, const config::Service& service) {
    cluster::ServiceRule rule;
    std::string reason;
    if (!cluster::Selector::compile(service.selector, rule.selector, reason))
        rule.selector = cluster::Selector();
    if (!cluster::Selector::compile(service.backup, rule.backup, reason))
        rule.backup = cluster::Selector();
    rule.max_lag_ms = service.max_lag_ms >= 0 ? service.max_lag_ms : cluster.max_lag_ms;
    rule.max_lag_bytes = service.max_lag_bytes >= 0 ? service.max_lag_bytes : cluster.max_lag_bytes;
    return rule;
}

// --- the commands ----------------------------------------------------------------------------

Table clusters_table(const Context& context) {
    Table table{{{"cluster", type_text},
                 {"nodes", type_int8},
                 {"healthy", type_int8},
                 {"primary", type_text},
                 {"epoch", type_int8},
                 {"services", type_int8}},
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
        table.rows.push_back({text(cluster.name), integer(int64_t(cluster.nodes.size())),
                              integer(healthy), text(primary),
                              integer(status != nullptr ? int64_t(status->epoch) : 0),
                              integer(int64_t(cluster.services.size()))});
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
                 {"load1", type_text},          {"cpus", type_int8}},
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
        cluster::Carriers carriers = cluster::carriers(rule_of(cluster, service), *status);
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

Table state_table(const Context& context) {
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
          "auth_query_failures", "clients_stalled", "clients_kept"})
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
              worker.clients_kept})
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
                 {"size", type_int8},
                 {"used", type_int8},
                 {"free", type_int8},
                 {"memtotal", type_int8}},
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
Table clients_table(const Context& context) {
    Table table{{{"type", type_text},
                 {"user", type_text},
                 {"database", type_text},
                 {"replication", type_text},
                 {"state", type_text},
                 {"addr", type_text},
                 {"port", type_int8},
                 {"local_addr", type_text},
                 {"local_port", type_int8},
                 {"connect_time", type_text},
                 {"request_time", type_text},
                 {"wait", type_int8},
                 {"wait_us", type_int8},
                 {"close_needed", type_int8},
                 {"ptr", type_text},
                 {"link", type_text},
                 {"remote_pid", type_int8},
                 {"tls", type_text},
                 {"application_name", type_text},
                 {"prepared_statements", type_int8},
                 {"id", type_int8},
                 {"worker", type_int8},
                 {"pgplex_state", type_text},
                 {"wait_reason", type_text},
                 {"pinned", type_bool},
                 {"bytes_queued", type_int8}},
                {}};
    if (context.clients == nullptr) return table;
    for (const ClientRow& client : *context.clients) {
        int64_t wait_us = client.wait_reason.empty()
                              ? 0
                              : std::max<int64_t>(0, context.now_ms - client.wait_since_ms) * 1000;
        char ptr[24];
        snprintf(ptr, sizeof ptr, "%x", client.id);
        table.rows.push_back({text("C"),
                              text(client.user),
                              text(client.database),
                              text("none"),
                              text(pgbouncer_state(client.state)),
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
                              integer(client.id),
                              integer(client.worker),
                              text(client.state),
                              text(client.wait_reason),
                              boolean(client.pinned),
                              integer(int64_t(client.bytes_queued))});
    }
    return table;
}

Table version_table(const Context&) {
    return Table{{{"version", type_text}}, {{text("pgplex " PGPLEX_VERSION)}}};
}

Table help_table(const Context&);

struct ShowCommand {
    std::string_view name;  // after SHOW, as help lists it
    Table (*build)(const Context&);
};

constexpr ShowCommand show_commands[] = {
    {"CLUSTERS", clusters_table}, {"NODES", nodes_table}, {"SERVICES", services_table},
    {"CLIENTS", clients_table},   {"STATE", state_table}, {"MEM", mem_table},
    {"VERSION", version_table},   {"HELP", help_table},
};

Table help_table(const Context&) {
    Table table{{{"command", type_text}}, {}};
    for (const ShowCommand& command : show_commands)
        table.rows.push_back({text("SHOW " + std::string(command.name))});
    return table;
}

// --- reading commands ------------------------------------------------------------------------

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

// Cuts the next whitespace-separated word off the front of text.
std::string_view next_word(std::string_view& text) {
    text = trimmed(text);
    size_t end = 0;
    while (end < text.size() && !is_space(text[end])) ++end;
    std::string_view word = text.substr(0, end);
    text.remove_prefix(end);
    return word;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

const ShowCommand* find_command(std::string_view command) {
    if (!equal_ignoring_case(next_word(command), "show")) return nullptr;
    std::string_view name = next_word(command);
    if (!trimmed(command).empty()) return nullptr;
    for (const ShowCommand& known : show_commands)
        if (equal_ignoring_case(known.name, name)) return &known;
    return nullptr;
}

std::string commands_hint() {
    std::string hint = "pgplex answers";
    for (const ShowCommand& command : show_commands) {
        hint += &command == show_commands ? " SHOW " : ", SHOW ";
        hint += command.name;
    }
    return hint + ".";
}

// Returns false when the command was answered with an ErrorResponse.
bool answer_one(std::string_view command, const Context& context, std::vector<uint8_t>& out) {
    PGPLEX_ASSERT(!command.empty());
    const ShowCommand* known = find_command(command);
    if (known != nullptr) {
        write_table(known->build(context), out);
        return true;
    }
    std::string echo(command.substr(0, echoed_command_bytes_max));
    if (command.size() > echoed_command_bytes_max) echo += "...";
    write_error_response(out, "unknown command: " + echo, commands_hint());
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
        if (known != nullptr && known->build == clients_table) return true;
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
