// See monitor.h. One thread runs every node of every cluster from one poll(2) loop: each node
// owns one libpq connection (non-blocking: PQconnectStartParams/PQconnectPoll, PQsendQuery,
// PQconsumeInput/PQisBusy/PQgetResult) and, with Patroni, three HTTP probes (patroni.h).
// A check is one query that reads everything the topology needs; its outcome feeds the
// node's rise/fall Health, then the cluster is derived again (primary, epoch, lag, sync)
// and a new Topology is published at most once per publish batch. The loop sleeps until
// the nearest deadline: a check due, a check timing out, a publication, or a wake from
// reconfigure()/stop() through an eventfd.
#include "pgplex/cluster/monitor.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"
#include "pgplex/base/unique_fd.h"
#include "pgplex/cluster/patroni.h"

namespace pgplex::cluster {

// --- health and LSNs --------------------------------------------------------------------------

namespace {

// Counters stop here; a node up for years must not overflow them.
constexpr int health_count_max = 1 << 20;

}  // namespace

bool Health::observe(bool ok, int rise, int fall) {
    bool was_up = up;
    good = ok ? std::min(good + 1, health_count_max) : 0;
    bad = ok ? 0 : std::min(bad + 1, health_count_max);
    if (!known) {
        known = true;
        up = ok;
    } else if (ok && !up && good >= std::max(rise, 1)) {
        up = true;
    } else if (!ok && up && bad >= std::max(fall, 1)) {
        up = false;
    }
    return up != was_up;
}

int64_t Health::next_interval_ms(const config::Cluster& cluster) const {
    if (up) return bad == 0 ? cluster.inter_ms : cluster.fastinter_ms;
    return good == 0 ? cluster.downinter_ms : cluster.fastinter_ms;
}

namespace {

bool parse_hex32(std::string_view text, uint32_t& out) {
    if (text.empty() || text.size() > 8) return false;
    uint32_t value = 0;
    for (char c : text) {
        uint32_t digit = 0;
        if (c >= '0' && c <= '9') {
            digit = uint32_t(c - '0');
        } else if (c >= 'A' && c <= 'F') {
            digit = uint32_t(c - 'A' + 10);
        } else if (c >= 'a' && c <= 'f') {
            digit = uint32_t(c - 'a' + 10);
        } else {
            return false;
        }
        value = value << 4 | digit;
    }
    out = value;
    return true;
}

}  // namespace

// PostgreSQL's pg_lsn_in: two hexadecimal halves of up to 8 digits around a slash.
bool parse_lsn(std::string_view text, uint64_t& out) {
    size_t slash = text.find('/');
    if (slash == std::string_view::npos) return false;
    uint32_t high = 0;
    uint32_t low = 0;
    if (!parse_hex32(text.substr(0, slash), high)) return false;
    if (!parse_hex32(text.substr(slash + 1), low)) return false;
    out = uint64_t(high) << 32 | low;
    return true;
}

// PostgreSQL's pg_lsn_out: "%X/%X".
std::string format_lsn(uint64_t lsn) {
    char text[32];
    std::snprintf(text, sizeof text, "%X/%X", unsigned(lsn >> 32), unsigned(lsn & 0xffffffffu));
    return text;
}

namespace {

// --- the check query -----------------------------------------------------------------------

// One statement for both roles (PostgreSQL 15): functions that fail on the other role
// (pg_current_wal_lsn() in recovery, pg_is_wal_replay_paused() outside it) sit behind CASE,
// which evaluates only the branch taken. Replay lag is 0 while the replica has replayed all
// it received, else the age of the last replayed transaction. The WAL receiver's
// application_name is the one in its conninfo (not the fallback_application_name beside it),
// else cluster_name, else "walreceiver", as walreceiver.c picks it. The primary lists its
// synchronous standbys (sync or quorum), one application_name a line: PostgreSQL keeps
// application_name printable ASCII, so no name holds a newline.
constexpr const char* check_columns = R"(SELECT r.recovery,
  CASE WHEN NOT r.recovery THEN pg_current_wal_lsn() END,
  pg_last_wal_receive_lsn(),
  pg_last_wal_replay_lsn(),
  CASE WHEN NOT r.recovery THEN 0
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint END,
  (SELECT setting::bigint FROM pg_settings WHERE name = 'recovery_min_apply_delay'),
  CASE WHEN r.recovery THEN pg_is_wal_replay_paused() ELSE false END,
  current_setting('max_connections')::int,
  current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int
    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
  CASE WHEN r.recovery THEN coalesce(
    (SELECT substring(conninfo FROM '(?:^| )application_name=([^ ]+)')
       FROM pg_stat_wal_receiver),
    nullif(current_setting('cluster_name'), ''),
    'walreceiver') END,
  CASE WHEN NOT r.recovery THEN (SELECT string_agg(application_name, E'\n')
    FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) END,
  CASE WHEN to_regnamespace('pgplex') IS NULL THEN false
       WHEN NOT has_schema_privilege(to_regnamespace('pgplex'), 'USAGE') THEN false
       ELSE coalesce(has_function_privilege(to_regprocedure('pgplex.node_metrics()'),
                                            'EXECUTE'), false) END)";
constexpr const char* check_from = "\nFROM (SELECT pg_is_in_recovery() AS recovery) AS r";

// The pgplex schema's host metrics (admin/schema.h), once the last check found them there
// and executable: a query that names a missing function would fail the check, so it is only
// asked for after the check query itself said it may be. That column looks the schema up
// before the function: to_regprocedure() raises "permission denied for schema" where
// monitor_user has no USAGE on it, which would fail every check.
const std::string check_query = std::string(check_columns) + check_from;
const std::string check_query_with_metrics = std::string(check_columns) + ",\n  m.load1, m.cpus" +
                                             check_from + ", pgplex.node_metrics() AS m";

// PQlibVersion() of the first libpq that knows the sslnegotiation parameter.
constexpr int libpq_with_sslnegotiation = 170000;

// The check query's columns, in order.
enum Column : int {
    ColumnRecovery,
    ColumnCurrentLsn,
    ColumnReceiveLsn,
    ColumnReplayLsn,
    ColumnLagMs,
    ColumnApplyDelayMs,
    ColumnReplayPaused,
    ColumnMaxConnections,
    ColumnFreeSlots,
    ColumnApplicationName,
    ColumnSyncStandbys,
    ColumnHasMetrics,
    ColumnCount,  // of check_query
    ColumnLoad1 = ColumnCount,
    ColumnCpus,
    ColumnCountWithMetrics,
};

// What one good check query read.
struct Reading {
    bool recovery = false;
    uint64_t current_lsn = 0;
    uint64_t receive_lsn = 0;
    uint64_t replay_lsn = 0;
    int64_t lag_ms = -1;
    int64_t apply_delay_ms = 0;
    bool replay_paused = false;
    int64_t max_connections = 0;
    int64_t free_slots = -1;
    std::string application_name;
    std::vector<std::string> sync_standbys;
    bool has_metrics = false;  // pgplex.node_metrics() may be asked for
    double load1 = -1;         // its readings, when asked: -1 and 0 when unknown
    int64_t cpus = 0;
};

// Reads one column of the check's single row. A NULL leaves `out` as it is.
class Row {
  public:
    explicit Row(const PGresult* result) : result_(result) {}
    bool null(Column column) const { return PQgetisnull(result_, 0, column) != 0; }
    std::string_view text(Column column) const {
        return null(column) ? std::string_view() : PQgetvalue(result_, 0, column);
    }
    bool boolean(Column column, bool& out) const {
        if (null(column)) return true;
        out = text(column) == "t";
        return text(column) == "t" || text(column) == "f";
    }
    bool integer(Column column, int64_t& out) const {
        if (null(column)) return true;
        std::string_view value = text(column);
        auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), out);
        return error == std::errc() && end == value.data() + value.size();
    }
    bool lsn(Column column, uint64_t& out) const {
        return null(column) || parse_lsn(text(column), out);
    }

  private:
    const PGresult* result_;
};

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        size_t end = std::min(text.find('\n'), text.size());
        lines.emplace_back(text.substr(0, end));
        text.remove_prefix(std::min(end + 1, text.size()));
    }
    return lines;
}

// The metrics columns of check_query_with_metrics, when it was the query.
bool parse_metrics(const PGresult* result, Reading& out) {
    if (PQnfields(result) != ColumnCountWithMetrics) return true;
    Row row(result);
    if (!row.integer(ColumnCpus, out.cpus)) return false;
    if (row.null(ColumnLoad1)) return true;
    std::string_view text = row.text(ColumnLoad1);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out.load1);
    return error == std::errc() && end == text.data() + text.size();
}

bool parse_reading(const PGresult* result, Reading& out, std::string& error) {
    int fields = PQnfields(result);
    if (PQntuples(result) != 1 || (fields != ColumnCount && fields != ColumnCountWithMetrics)) {
        error = "the check query returned an unexpected result";
        return false;
    }
    Row row(result);
    out = Reading{};
    bool ok = row.boolean(ColumnRecovery, out.recovery) && !row.null(ColumnRecovery) &&
              row.lsn(ColumnCurrentLsn, out.current_lsn) &&
              row.lsn(ColumnReceiveLsn, out.receive_lsn) &&
              row.lsn(ColumnReplayLsn, out.replay_lsn) && row.integer(ColumnLagMs, out.lag_ms) &&
              row.integer(ColumnApplyDelayMs, out.apply_delay_ms) &&
              row.boolean(ColumnReplayPaused, out.replay_paused) &&
              row.integer(ColumnMaxConnections, out.max_connections) &&
              row.integer(ColumnFreeSlots, out.free_slots) &&
              row.boolean(ColumnHasMetrics, out.has_metrics) && parse_metrics(result, out);
    if (!ok) {
        error = "the check query returned a value pgplex cannot read";
        return false;
    }
    out.application_name = std::string(row.text(ColumnApplicationName));
    out.sync_standbys = split_lines(row.text(ColumnSyncStandbys));
    return true;
}

// --- per node state ---------------------------------------------------------------------------

struct ConnectionClose {
    void operator()(PGconn* connection) const { PQfinish(connection); }
};
using Connection = std::unique_ptr<PGconn, ConnectionClose>;

struct ResultClear {
    void operator()(PGresult* result) const { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultClear>;

// The SQL side of a node: its one connection, kept between checks.
enum class SqlState : uint8_t {
    Closed,      // connection == nullptr; the next check connects
    Connecting,  // connection != nullptr, PQconnectPoll in progress: poll for connect_wants
    Querying,    // logged in, check_query sent: flushing while `flushing`, then reading results
    Ready,       // logged in, idle between checks: watched for the server closing it
};

// Patroni's endpoints, in the order of Node::probes.
enum Probe : int { ProbePrimary, ProbeReplica, ProbeSync, ProbeCount };
constexpr const char* probe_paths[ProbeCount] = {"/primary", "/replica", "/sync"};

struct Node {
    config::Node config;
    NodeStatus status;
    Health health;
    int64_t next_check_us = 0;  // when the next check starts, while !checking

    bool checking = false;  // a check is in flight: its SQL part and (with Patroni) probes
    int64_t check_started_us = 0;
    int64_t check_deadline_us = 0;

    SqlState sql_state = SqlState::Closed;
    Connection connection;
    std::string connected_as;  // the credentials `connection` logged in with
    PostgresPollingStatusType connect_wants = PGRES_POLLING_WRITING;
    bool flushing = false;
    bool sql_done = false;  // this check's SQL part is over: sql_ok, or sql_error says why not
    bool sql_ok = false;
    std::string sql_error;
    Reading reading;  // valid when sql_ok

    PatroniProbe probes[ProbeCount];
    bool patroni_sync = false;  // Patroni's /sync answered 200 on the last check
    bool metrics = false;       // the last check found pgplex.node_metrics() executable

    std::vector<std::string> sync_standbys;  // as primary: its sync/quorum standbys
    int64_t became_primary_us = 0;           // when it was last seen to turn primary
    int64_t caught_up_us = 0;  // as replica: the last check that found it had replayed all
};

struct ClusterState {
    const config::Cluster* config = nullptr;
    std::vector<std::unique_ptr<Node>> nodes;
    int primary = -1;
    uint64_t epoch = 0;
    std::string last_primary;   // name of the last node that was primary: epoch grows on another
    bool split_warned = false;  // two healthy primaries were reported, once
};

int64_t now_us() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
}

// libpq's messages end in a newline and may span lines ("\n\tIs the server running...").
std::string one_line(const char* message) {
    std::string text = message != nullptr ? message : "";
    for (char& c : text) {
        if (c == '\n' || c == '\t') c = ' ';
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    size_t doubled = 0;
    while ((doubled = text.find("  ")) != std::string::npos) text.erase(doubled, 1);
    return text;
}

// --- the SQL side -----------------------------------------------------------------------------

void set_sql_state(Node& node, SqlState next) {
    switch (next) {
        case SqlState::Closed:
            node.connection.reset();
            node.flushing = false;
            break;
        case SqlState::Connecting:
            PGPLEX_ASSERT(node.sql_state == SqlState::Closed && node.connection != nullptr);
            break;
        case SqlState::Querying:
            PGPLEX_ASSERT(node.sql_state == SqlState::Connecting ||
                          node.sql_state == SqlState::Ready);
            break;
        case SqlState::Ready:
            PGPLEX_ASSERT(node.sql_state == SqlState::Querying && !node.flushing);
            break;
    }
    node.sql_state = next;
}

// Ends this check's SQL part in failure and drops the connection: the next check starts
// from a fresh login, whatever state the server left this one in.
void sql_fail(Node& node, std::string reason) {
    node.metrics = false;
    if (node.checking && !node.sql_done) {
        node.sql_done = true;
        node.sql_ok = false;
        node.sql_error = std::move(reason);
    }
    set_sql_state(node, SqlState::Closed);
}

std::string connection_error(const PGconn* connection) {
    std::string text = one_line(PQerrorMessage(connection));
    return text.empty() ? "connection failed" : text;
}

// The monitor password: the cluster's, else a plain-text one from the auth file (an md5 or
// SCRAM secret cannot log in through libpq), else none.
std::string password_of(const config::Config& config, const config::Cluster& cluster) {
    if (!cluster.monitor_password.empty()) return cluster.monitor_password;
    auto found = config.users.find(cluster.monitor_user);
    if (found == config.users.end()) return {};
    const std::string& secret = found->second;
    bool md5 = secret.size() == 35 && secret.starts_with("md5");
    if (md5 || secret.starts_with("SCRAM-SHA-256$")) return {};
    return secret;
}

// The resolved numeric address of a TCP node, so libpq never resolves a name on this thread.
std::string numeric_address(const config::Endpoint& endpoint) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* address = nullptr;
    if (endpoint.address.ss_family == AF_INET)
        address = &reinterpret_cast<const sockaddr_in&>(endpoint.address).sin_addr;
    if (endpoint.address.ss_family == AF_INET6)
        address = &reinterpret_cast<const sockaddr_in6&>(endpoint.address).sin6_addr;
    if (address == nullptr) return {};
    if (inet_ntop(endpoint.address.ss_family, address, text, sizeof text) == nullptr) return {};
    return text;
}

// Connection settings as libpq keywords; values from the config go in as parameters, never
// spliced into a conninfo string.
struct ConnectParameters {
    std::vector<std::string> keywords;
    std::vector<std::string> values;

    void add(const char* keyword, std::string value) {
        keywords.emplace_back(keyword);
        values.push_back(std::move(value));
    }
};

// libpq's names for the server TLS settings. sslnegotiation exists from libpq 17 on; an
// older libpq speaks SSLRequest first, which a PostgreSQL 17 server accepts as well.
void add_tls_parameters(ConnectParameters& parameters, const config::ServerTls& server_tls) {
    const tls::Settings& tls = server_tls.settings;
    parameters.add("sslmode", tls::to_string(tls.mode));
    if (!tls.ca_file.empty()) parameters.add("sslrootcert", tls.ca_file);
    if (!tls.cert_file.empty()) parameters.add("sslcert", tls.cert_file);
    if (!tls.key_file.empty()) parameters.add("sslkey", tls.key_file);
    parameters.add("channel_binding", config::to_string(server_tls.channel_binding));
    if (server_tls.negotiation == config::TlsNegotiation::Direct &&
        PQlibVersion() >= libpq_with_sslnegotiation)
        parameters.add("sslnegotiation", "direct");
}

ConnectParameters connect_parameters(const config::Config& config, const config::Cluster& cluster,
                                     const Node& node) {
    ConnectParameters parameters;
    const config::Endpoint& endpoint = node.config.endpoint;
    parameters.add("host", endpoint.host);
    if (!endpoint.is_unix()) {
        std::string address = numeric_address(endpoint);
        if (!address.empty()) parameters.add("hostaddr", address);
    }
    parameters.add("port", std::to_string(endpoint.port));
    parameters.add("user", cluster.monitor_user);
    std::string password = password_of(config, cluster);
    if (!password.empty()) parameters.add("password", password);
    parameters.add("dbname", cluster.monitor_dbname);
    parameters.add("application_name", "pgplex monitor");
    int64_t timeout_seconds = std::max<int64_t>(1, (cluster.check_timeout_ms + 999) / 1000);
    parameters.add("connect_timeout", std::to_string(timeout_seconds));
    // The node's server TLS settings, as pgplex's own connections to it use them (libpq's
    // sslmode has the same names; verify-full checks `host`, the node's name as configured).
    const config::ServerTls& server_tls =
        node.config.server_tls ? *node.config.server_tls : *config.server_tls;
    if (!endpoint.is_unix()) add_tls_parameters(parameters, server_tls);
    return parameters;
}

std::string credentials_of(const ConnectParameters& parameters) {
    std::string text;
    for (const std::string& value : parameters.values) text += value + '\0';
    return text;
}

// libpq prints notices to stderr unless told otherwise; the monitor's belong in the log.
void log_notice_text(void*, const char* message) {
    log_debug("monitor: server notice: %s", one_line(message).c_str());
}

void flush(Node& node) {
    int flushed = PQflush(node.connection.get());
    if (flushed < 0) return sql_fail(node, connection_error(node.connection.get()));
    node.flushing = flushed == 1;
}

void send_query(Node& node) {
    const std::string& query = node.metrics ? check_query_with_metrics : check_query;
    if (PQsendQuery(node.connection.get(), query.c_str()) == 0)
        return sql_fail(node, connection_error(node.connection.get()));
    set_sql_state(node, SqlState::Querying);
    flush(node);
}

void sql_connect(const config::Config& config, const config::Cluster& cluster, Node& node) {
    ConnectParameters parameters = connect_parameters(config, cluster, node);
    std::vector<const char*> keywords;
    std::vector<const char*> values;
    for (size_t i = 0; i < parameters.keywords.size(); ++i) {
        keywords.push_back(parameters.keywords[i].c_str());
        values.push_back(parameters.values[i].c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* connection = PQconnectStartParams(keywords.data(), values.data(), 0);
    if (connection == nullptr) return sql_fail(node, "out of memory");
    node.connection.reset(connection);
    PQsetNoticeProcessor(connection, log_notice_text, nullptr);
    node.connected_as = credentials_of(parameters);
    if (PQstatus(connection) == CONNECTION_BAD) return sql_fail(node, connection_error(connection));
    // libpq-connect.html#LIBPQ-PQCONNECTSTARTPARAMS: before the first PQconnectPoll, act
    // as if it had returned PGRES_POLLING_WRITING.
    node.connect_wants = PGRES_POLLING_WRITING;
    set_sql_state(node, SqlState::Connecting);
}

void sql_begin(const config::Config& config, const config::Cluster& cluster, Node& node) {
    node.sql_done = false;
    node.sql_ok = false;
    node.sql_error.clear();
    if (node.sql_state == SqlState::Ready &&
        node.connected_as != credentials_of(connect_parameters(config, cluster, node)))
        set_sql_state(node, SqlState::Closed);  // reloaded with other credentials
    switch (node.sql_state) {
        case SqlState::Closed:
            return sql_connect(config, cluster, node);
        case SqlState::Ready:
            return send_query(node);
        case SqlState::Connecting:
        case SqlState::Querying:
            PGPLEX_UNREACHABLE();
    }
}

void advance_connect(Node& node) {
    PostgresPollingStatusType polled = PQconnectPoll(node.connection.get());
    switch (polled) {
        case PGRES_POLLING_OK:
            if (PQsetnonblocking(node.connection.get(), 1) != 0)
                return sql_fail(node, connection_error(node.connection.get()));
            return send_query(node);
        case PGRES_POLLING_FAILED:
            return sql_fail(node, connection_error(node.connection.get()));
        case PGRES_POLLING_READING:
        case PGRES_POLLING_WRITING:
            node.connect_wants = polled;
            return;
        case PGRES_POLLING_ACTIVE:  // unused by libpq; poll again when writable
            node.connect_wants = PGRES_POLLING_WRITING;
            return;
    }
}

// One result of the check query: the row, or the error that replaced it.
void take_result(Node& node, const PGresult* result) {
    if (PQresultStatus(result) == PGRES_TUPLES_OK) {
        if (node.sql_error.empty() && parse_reading(result, node.reading, node.sql_error))
            node.sql_ok = true;
        return;
    }
    node.sql_ok = false;
    // Maybe the metrics function went away or lost its grant: the next check asks without it
    // (and finds out again whether it may).
    node.metrics = false;
    if (node.sql_error.empty()) node.sql_error = one_line(PQresultErrorMessage(result));
    if (node.sql_error.empty()) node.sql_error = PQresStatus(PQresultStatus(result));
}

// Takes every result libpq has complete; PQgetResult's null ends the query.
void read_results(Node& node) {
    PGconn* connection = node.connection.get();
    while (PQisBusy(connection) == 0) {
        Result result(PQgetResult(connection));
        if (result == nullptr) {
            if (!node.sql_ok && node.sql_error.empty()) node.sql_error = "no result";
            if (!node.sql_ok) return sql_fail(node, node.sql_error);
            node.sql_done = true;
            return set_sql_state(node, SqlState::Ready);
        }
        take_result(node, result.get());
    }
}

void advance_query(Node& node, short revents) {
    if (node.flushing && (revents & POLLOUT) != 0) {
        flush(node);
        if (node.sql_state != SqlState::Querying) return;
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) == 0) return;
    if (PQconsumeInput(node.connection.get()) == 0)
        return sql_fail(node, connection_error(node.connection.get()));
    read_results(node);
}

// An idle connection became readable: a notice, or the server closing it (shutdown,
// pg_terminate_backend). A closed one is dropped now, so the next check logs in afresh
// instead of failing on a dead socket.
void advance_idle(Node& node) {
    PGconn* connection = node.connection.get();
    if (PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK)
        return set_sql_state(node, SqlState::Closed);
    while (PQisBusy(connection) == 0) {
        Result result(PQgetResult(connection));
        if (result == nullptr) return;
    }
}

void advance_sql(Node& node, short revents) {
    switch (node.sql_state) {
        case SqlState::Connecting:
            return advance_connect(node);
        case SqlState::Querying:
            return advance_query(node, revents);
        case SqlState::Ready:
            return advance_idle(node);
        case SqlState::Closed:
            PGPLEX_UNREACHABLE();
    }
}

short sql_events(const Node& node) {
    switch (node.sql_state) {
        case SqlState::Closed:
            return 0;
        case SqlState::Connecting:
            return node.connect_wants == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        case SqlState::Querying:
            return short(POLLIN | (node.flushing ? POLLOUT : 0));
        case SqlState::Ready:
            return POLLIN;
    }
    return 0;
}

// --- a check: begin, time out, finish -----------------------------------------------------

bool check_complete(const Node& node) {
    if (!node.sql_done) return false;
    for (const PatroniProbe& probe : node.probes) {
        if (!probe.idle()) return false;
    }
    return true;
}

void begin_check(const config::Config& config, const config::Cluster& cluster, Node& node,
                 int64_t now) {
    PGPLEX_ASSERT(!node.checking);
    node.checking = true;
    node.check_started_us = now;
    node.check_deadline_us = now + std::max<int64_t>(cluster.check_timeout_ms, 1) * 1000;
    if (cluster.patroni_port != 0) {
        for (int probe = 0; probe < ProbeCount; ++probe)
            node.probes[probe].start(node.config.endpoint.address, cluster.patroni_port,
                                     node.config.endpoint.host, probe_paths[probe]);
    }
    sql_begin(config, cluster, node);
}

void time_out_check(const config::Cluster& cluster, Node& node) {
    std::string reason =
        "check timed out after " + std::to_string(cluster.check_timeout_ms) + " ms";
    if (!node.sql_done) sql_fail(node, reason);
    for (PatroniProbe& probe : node.probes) probe.abandon(reason);
}

// Patroni decides health and role: 200 on /primary or /replica is a healthy node.
bool apply_patroni(Node& node) {
    bool primary = node.probes[ProbePrimary].status() == 200;
    bool replica = node.probes[ProbeReplica].status() == 200;
    if (primary) node.status.role = Role::Primary;
    if (replica && !primary) node.status.role = Role::Replica;
    node.patroni_sync = node.probes[ProbeSync].status() == 200 && !primary;
    return primary || replica;
}

std::string patroni_error(const Node& node) {
    std::string text = "patroni:";
    for (int probe = 0; probe < ProbeCount; ++probe) {
        const PatroniProbe& answer = node.probes[probe];
        text += std::string(probe == 0 ? " " : ", ") + probe_paths[probe] + " " +
                (answer.status() != 0 ? std::to_string(answer.status()) : answer.error());
    }
    return text;
}

// Lag in time: the age of the last replayed transaction overstates it when writes are rare
// (a check that lands mid-replay would read seconds), so it is capped by the time since a
// check last found the replica caught up.
int64_t replay_lag_ms(Node& node, int64_t now) {
    const Reading& reading = node.reading;
    if (reading.receive_lsn == reading.replay_lsn) {
        node.caught_up_us = now;
        return 0;
    }
    if (node.caught_up_us == 0) return reading.lag_ms;
    int64_t since_caught_up = (now - node.caught_up_us) / 1000;
    return reading.lag_ms < 0 ? since_caught_up : std::min(reading.lag_ms, since_caught_up);
}

void apply_reading(Node& node, int64_t now) {
    const Reading& reading = node.reading;
    NodeStatus& status = node.status;
    status.role = reading.recovery ? Role::Replica : Role::Primary;
    status.current_lsn = reading.recovery ? 0 : reading.current_lsn;
    status.receive_lsn = reading.recovery ? reading.receive_lsn : reading.current_lsn;
    status.replay_lsn = reading.recovery ? reading.replay_lsn : reading.current_lsn;
    status.lag_ms = reading.recovery ? replay_lag_ms(node, now) : 0;
    status.apply_delay_ms = reading.apply_delay_ms;
    status.replay_paused = reading.replay_paused;
    status.max_connections = int(reading.max_connections);
    status.free_slots = int(std::max<int64_t>(reading.free_slots, 0));
    status.application_name = reading.application_name;
    node.metrics = reading.has_metrics;
    status.load1 = reading.load1;
    status.cpus = int(reading.cpus);
    node.sync_standbys = reading.recovery ? std::vector<std::string>() : reading.sync_standbys;
}

void log_node_change(const ClusterState& cluster, const Node& node, const Health& before,
                     Role role_before) {
    const char* cluster_name = cluster.config->name.c_str();
    const char* name = node.config.name.c_str();
    const NodeStatus& status = node.status;
    if (status.role != role_before && role_before != Role::Unknown)
        log_info("cluster %s: node %s is now %s (was %s)", cluster_name, name,
                 to_string(status.role), to_string(role_before));
    if (node.health.up && !before.up)
        log_info("cluster %s: node %s is up (%s)", cluster_name, name, to_string(status.role));
    if (!node.health.up && (before.up || !before.known))
        log_warning("cluster %s: node %s is down: %s", cluster_name, name,
                    status.last_error.c_str());
}

// Returns true when something the routing reads (health, role) changed.
bool finish_check(const ClusterState& cluster, Node& node, int64_t now) {
    const config::Cluster& settings = *cluster.config;
    bool patroni = settings.patroni_port != 0;
    Health before = node.health;
    Role role_before = node.status.role;
    node.checking = false;
    if (node.sql_ok) apply_reading(node, now);
    bool ok = patroni ? apply_patroni(node) : node.sql_ok;
    node.status.source = patroni ? "patroni" : "monitor";
    node.status.checked_ms = now / 1000;
    node.status.last_error = ok ? std::string() : patroni ? patroni_error(node) : node.sql_error;
    if (ok) node.status.check_us = now - node.check_started_us;
    if (node.health.observe(ok, settings.rise, settings.fall) && node.health.up)
        node.status.up_since_ms = now / 1000;
    node.status.healthy = node.health.up;
    if (node.status.role == Role::Primary && role_before != Role::Primary)
        node.became_primary_us = now;
    log_node_change(cluster, node, before, role_before);
    node.next_check_us = now + node.health.next_interval_ms(settings) * 1000;
    return node.health.up != before.up || node.status.role != role_before;
}

// --- the cluster: primary, epoch, lag, sync ---------------------------------------------

// The healthy node that says it is primary. With two (a split brain, or a failover caught
// half way), the current one stays while it stays healthy and primary; else the one that
// turned primary last.
int choose_primary(ClusterState& cluster) {
    int claims = 0;
    int latest = -1;
    for (int i = 0; i < int(cluster.nodes.size()); ++i) {
        const Node& node = *cluster.nodes[size_t(i)];
        if (!node.status.healthy || node.status.role != Role::Primary) continue;
        ++claims;
        if (latest < 0 || node.became_primary_us > cluster.nodes[size_t(latest)]->became_primary_us)
            latest = i;
    }
    int current = cluster.primary;
    bool keep = current >= 0 && cluster.nodes[size_t(current)]->status.healthy &&
                cluster.nodes[size_t(current)]->status.role == Role::Primary;
    int chosen = keep ? current : latest;
    if (claims > 1 && !cluster.split_warned)
        log_warning("cluster %s: %d healthy nodes say they are primary; %s stays primary",
                    cluster.config->name.c_str(), claims,
                    cluster.nodes[size_t(chosen)]->config.name.c_str());
    cluster.split_warned = claims > 1;
    return chosen;
}

void fill_lag_and_sync(ClusterState& cluster) {
    bool patroni = cluster.config->patroni_port != 0;
    const Node* primary =
        cluster.primary >= 0 ? cluster.nodes[size_t(cluster.primary)].get() : nullptr;
    for (std::unique_ptr<Node>& node : cluster.nodes) {
        NodeStatus& status = node->status;
        if (status.role != Role::Replica) {
            status.lag_bytes = status.role == Role::Primary ? 0 : -1;
            status.sync = false;
            continue;
        }
        status.lag_bytes = -1;
        if (primary != nullptr) {
            uint64_t head = primary->status.current_lsn;
            status.lag_bytes = head > status.replay_lsn ? int64_t(head - status.replay_lsn) : 0;
        }
        const std::vector<std::string>* standbys = primary ? &primary->sync_standbys : nullptr;
        status.sync =
            patroni ? node->patroni_sync
                    : standbys != nullptr && std::find(standbys->begin(), standbys->end(),
                                                       status.application_name) != standbys->end();
    }
}

// Returns true when the primary changed.
bool derive(ClusterState& cluster) {
    int chosen = choose_primary(cluster);
    bool changed = chosen != cluster.primary;
    cluster.primary = chosen;
    if (changed && chosen >= 0) {
        const std::string& name = cluster.nodes[size_t(chosen)]->config.name;
        if (name != cluster.last_primary) ++cluster.epoch;
        cluster.last_primary = name;
        log_info("cluster %s: primary is %s (epoch %llu)", cluster.config->name.c_str(),
                 name.c_str(), static_cast<unsigned long long>(cluster.epoch));
    } else if (changed) {
        log_warning("cluster %s: no healthy primary", cluster.config->name.c_str());
    }
    fill_lag_and_sync(cluster);
    return changed;
}

}  // namespace

// --- the thread ---------------------------------------------------------------------------

namespace {

// Checks that end within this of each other are published together.
constexpr int64_t publish_batch_us = 100'000;

// What poll(2) entry i belongs to: the SQL connection (probe < 0) or a Patroni probe.
struct Watch {
    Node* node;
    int probe;
};

}  // namespace

struct Monitor::Impl {
    Impl(Publish callback, Suspects* reports) : publish(std::move(callback)), suspects(reports) {}

    void run();
    void run_loop();
    void adopt(std::shared_ptr<const config::Config> fresh);
    void take_pending();
    void advance_checks(int64_t now);
    void changed(bool urgent, int64_t now);
    void publish_if_due(int64_t now);
    int64_t next_wakeup() const;
    void wait(int64_t now);
    void drain_wake();
    void check_suspects(int64_t now);

    Publish publish;
    Suspects* suspects;
    std::mutex mutex;                               // guards pending
    std::shared_ptr<const config::Config> pending;  // a config the thread has not taken yet
    std::atomic<bool> stopping{false};
    base::UniqueFd wake{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    std::thread thread;

    // Owned by the thread while it runs.
    std::shared_ptr<const config::Config> config;
    std::vector<ClusterState> clusters;
    uint64_t generation = 0;
    bool publish_pending = false;
    int64_t publish_at_us = 0;
    int64_t published_us = 0;
    std::vector<pollfd> poll_fds;
    std::vector<Watch> watches;
};

namespace {

ClusterState* find_cluster(std::vector<ClusterState>& clusters, std::string_view name) {
    for (ClusterState& cluster : clusters) {
        if (cluster.config->name == name) return &cluster;
    }
    return nullptr;
}

std::unique_ptr<Node> take_node(ClusterState* old, std::string_view name) {
    if (old == nullptr) return nullptr;
    for (std::unique_ptr<Node>& node : old->nodes) {
        if (node != nullptr && node->config.name == name) return std::move(node);
    }
    return nullptr;
}

// The cluster as `settings` configures it, keeping the state of the nodes `old` had.
ClusterState carry_over(const config::Cluster& settings, ClusterState* old) {
    ClusterState cluster;
    cluster.config = &settings;
    std::string old_primary;
    if (old != nullptr) {
        cluster.epoch = old->epoch;
        cluster.last_primary = old->last_primary;
        cluster.split_warned = old->split_warned;
        if (old->primary >= 0) old_primary = old->nodes[size_t(old->primary)]->config.name;
    }
    for (const config::Node& node_config : settings.nodes) {
        std::unique_ptr<Node> node = take_node(old, node_config.name);
        if (node == nullptr) node = std::make_unique<Node>();
        node->config = node_config;
        node->status.name = node_config.name;
        node->status.endpoint = node_config.endpoint;
        node->status.options = node_config.options;
        if (node_config.name == old_primary) cluster.primary = int(cluster.nodes.size());
        cluster.nodes.push_back(std::move(node));
    }
    return cluster;
}

}  // namespace

void Monitor::Impl::adopt(std::shared_ptr<const config::Config> fresh) {
    std::vector<ClusterState> next;
    for (const config::Cluster& settings : fresh->clusters)
        next.push_back(carry_over(settings, find_cluster(clusters, settings.name)));
    // The old clusters drop here, with the nodes no longer configured and their connections.
    clusters = std::move(next);
    config = std::move(fresh);
    for (ClusterState& cluster : clusters) derive(cluster);
    changed(true, now_us());
}

void Monitor::Impl::take_pending() {
    std::shared_ptr<const config::Config> fresh;
    {
        std::lock_guard<std::mutex> lock(mutex);
        fresh = std::move(pending);
    }
    if (fresh != nullptr) adopt(std::move(fresh));
}

void Monitor::Impl::changed(bool urgent, int64_t now) {
    int64_t due = urgent ? now : std::max(now, published_us + publish_batch_us);
    publish_at_us = publish_pending ? std::min(publish_at_us, due) : due;
    publish_pending = true;
}

void Monitor::Impl::publish_if_due(int64_t now) {
    if (!publish_pending || now < publish_at_us) return;
    auto topology = std::make_shared<Topology>();
    topology->generation = ++generation;
    for (const ClusterState& cluster : clusters) {
        ClusterStatus status;
        status.name = cluster.config->name;
        status.primary = cluster.primary;
        status.epoch = cluster.epoch;
        for (const std::unique_ptr<Node>& node : cluster.nodes)
            status.nodes.push_back(node->status);
        topology->clusters.push_back(std::move(status));
    }
    publish_pending = false;
    published_us = now;
    if (publish) publish(std::move(topology));
}

// Starts the checks that are due, times out the late ones, and finishes the complete ones.
void Monitor::Impl::advance_checks(int64_t now) {
    for (ClusterState& cluster : clusters) {
        bool finished = false;
        bool urgent = false;
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            if (!node->checking && now >= node->next_check_us)
                begin_check(*config, *cluster.config, *node, now);
            if (node->checking && now >= node->check_deadline_us)
                time_out_check(*cluster.config, *node);
            if (!node->checking || !check_complete(*node)) continue;
            urgent = finish_check(cluster, *node, now) || urgent;
            finished = true;
        }
        if (!finished) continue;
        urgent = derive(cluster) || urgent;
        changed(urgent, now);
    }
}

int64_t Monitor::Impl::next_wakeup() const {
    int64_t wakeup = INT64_MAX;
    if (publish_pending) wakeup = publish_at_us;
    for (const ClusterState& cluster : clusters) {
        for (const std::unique_ptr<Node>& node : cluster.nodes)
            wakeup =
                std::min(wakeup, node->checking ? node->check_deadline_us : node->next_check_us);
    }
    return wakeup;
}

void Monitor::Impl::drain_wake() {
    uint64_t count = 0;
    ssize_t got = ::read(wake.get(), &count, sizeof count);
    (void)got;  // EAGAIN: already drained
}

// Sleeps in poll(2) until the nearest deadline or an event, and hands the events out.
void Monitor::Impl::wait(int64_t now) {
    poll_fds.assign(1, pollfd{wake.get(), POLLIN, 0});
    watches.assign(1, Watch{nullptr, -1});
    for (ClusterState& cluster : clusters) {
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            short events = sql_events(*node);
            if (events != 0) {
                poll_fds.push_back(pollfd{PQsocket(node->connection.get()), events, 0});
                watches.push_back(Watch{node.get(), -1});
            }
            for (int probe = 0; probe < ProbeCount; ++probe) {
                if (node->probes[probe].idle()) continue;
                poll_fds.push_back(
                    pollfd{node->probes[probe].fd(), node->probes[probe].events(), 0});
                watches.push_back(Watch{node.get(), probe});
            }
        }
    }
    int64_t wakeup = next_wakeup();
    int timeout_ms = -1;
    if (wakeup != INT64_MAX)
        timeout_ms = int(std::clamp<int64_t>((wakeup - now + 999) / 1000, 0, 3'600'000));
    if (!wake.valid() && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;  // stop() polls
    int ready = ::poll(poll_fds.data(), poll_fds.size(), timeout_ms);
    if (ready <= 0) return;  // a timeout, or EINTR: the caller's loop looks again
    if ((poll_fds[0].revents & POLLIN) != 0) drain_wake();
    for (size_t i = 1; i < poll_fds.size(); ++i) {
        if (poll_fds[i].revents == 0) continue;
        Watch watch = watches[i];
        if (watch.probe < 0) {
            // An earlier entry cannot have closed it: each node has one SQL entry.
            advance_sql(*watch.node, poll_fds[i].revents);
        } else {
            watch.node->probes[watch.probe].advance(poll_fds[i].revents);
        }
    }
}

// Nodes a worker found failing are checked now, unless a check began in the last 100 ms
// (then right after that): a burst of failing connections costs one check, not one each.
void Monitor::Impl::check_suspects(int64_t now) {
    if (suspects == nullptr) return;
    std::vector<uint64_t> reported = suspects->take();
    if (reported.empty()) return;
    constexpr int64_t spacing_us = 100'000;
    for (ClusterState& cluster : clusters) {
        for (std::unique_ptr<Node>& node : cluster.nodes) {
            if (node->checking) continue;
            uint64_t hash = Suspects::hash(node->config.endpoint);
            if (std::find(reported.begin(), reported.end(), hash) == reported.end()) continue;
            int64_t at = std::max(now, node->check_started_us + spacing_us);
            if (at >= node->next_check_us) continue;
            node->next_check_us = at;
            log_info("monitor: %s: a connection to it failed on the data path; checking it now",
                     node->status.name.c_str());
        }
    }
}

void Monitor::Impl::run_loop() {
    while (!stopping.load(std::memory_order_acquire)) {
        take_pending();
        int64_t now = now_us();
        check_suspects(now);
        advance_checks(now);
        publish_if_due(now);
        wait(now);
    }
}

void Monitor::Impl::run() {
    try {
        run_loop();
    } catch (const std::exception& error) {
        log_error("monitor: the monitor thread stopped: %s", error.what());
    } catch (...) {
        log_error("monitor: the monitor thread stopped on an unknown exception");
    }
    clusters.clear();  // closes every connection on the thread that used them
}

// --- the public face ------------------------------------------------------------------------

Monitor::Monitor(Publish publish, Suspects* suspects)
    : impl_(std::make_unique<Impl>(std::move(publish), suspects)) {
    if (!impl_->wake.valid()) log_warning("monitor: eventfd failed; stop() waits up to 100 ms");
}

Monitor::~Monitor() {
    stop();
}

void Monitor::start(std::shared_ptr<const config::Config> config) {
    PGPLEX_ASSERT(config != nullptr);
    if (impl_->thread.joinable()) return reconfigure(std::move(config));
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->pending = std::move(config);
    }
    impl_->stopping.store(false, std::memory_order_release);
    if (impl_->suspects != nullptr && impl_->wake.valid())
        impl_->suspects->attach(impl_->wake.get());
    try {
        impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
    } catch (const std::exception& error) {
        log_error("monitor: cannot start the monitor thread: %s", error.what());
    }
}

void Monitor::reconfigure(std::shared_ptr<const config::Config> config) {
    PGPLEX_ASSERT(config != nullptr);
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->pending = std::move(config);
    }
    uint64_t one = 1;
    ssize_t wrote = ::write(impl_->wake.get(), &one, sizeof one);
    (void)wrote;  // a full counter still wakes the thread
}

void Monitor::stop() {
    if (!impl_->thread.joinable()) return;
    if (impl_->suspects != nullptr) impl_->suspects->attach(-1);
    impl_->stopping.store(true, std::memory_order_release);
    uint64_t one = 1;
    ssize_t wrote = ::write(impl_->wake.get(), &one, sizeof one);
    (void)wrote;
    impl_->thread.join();
}

}  // namespace pgplex::cluster
