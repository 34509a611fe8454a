// See import_pgbouncer.h. Three tables drive the conversion: [pgbouncer] settings that
// pgplex's [pgplex] takes under the same name and meaning (with how the value is written),
// connection-string keys that [databases.NAME] takes, and the settings pgplex knows it does
// not take, each with its reason. A few settings are converted by hand (listen_*,
// auth_type, verbose). PgBouncer lets a later line override an earlier one; TOML forbids a
// key twice, so the earlier line becomes a comment naming the one that wins.
#include "pgplex/tools/import_pgbouncer.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string_view>

namespace pgplex::tools {

namespace {

enum class Kind : uint8_t {
    String,    // copied as a TOML string
    Integer,   // digits only
    Boolean,   // PgBouncer's 0/1, yes/no, on/off, true/false
    Duration,  // seconds (a fraction allowed) → "Nms"
    List,      // comma-separated → array of strings
    Path,      // a file: relative to the file that names it
    PoolMode,  // session | transaction | statement
};

struct Mapping {
    std::string_view key;
    Kind kind;
};

constexpr Mapping same_settings[] = {
    {"pool_mode", Kind::PoolMode},
    {"max_client_conn", Kind::Integer},
    {"max_db_connections", Kind::Integer},
    {"max_db_client_connections", Kind::Integer},
    {"max_user_connections", Kind::Integer},
    {"max_user_client_connections", Kind::Integer},
    {"default_pool_size", Kind::Integer},
    {"min_pool_size", Kind::Integer},
    {"reserve_pool_size", Kind::Integer},
    {"reserve_pool_timeout", Kind::Duration},
    {"max_prepared_statements", Kind::Integer},
    {"auth_file", Kind::Path},
    {"auth_hba_file", Kind::Path},
    {"auth_user", Kind::String},
    {"auth_query", Kind::String},
    {"auth_dbname", Kind::String},
    {"server_reset_query", Kind::String},
    {"server_idle_timeout", Kind::Duration},
    {"server_lifetime", Kind::Duration},
    {"server_connect_timeout", Kind::Duration},
    {"query_wait_timeout", Kind::Duration},
    {"client_login_timeout", Kind::Duration},
    {"log_connections", Kind::Boolean},
    {"log_disconnections", Kind::Boolean},
    {"admin_users", Kind::List},
    {"client_tls_sslmode", Kind::String},
    {"client_tls_cert_file", Kind::Path},
    {"client_tls_key_file", Kind::Path},
    {"client_tls_ca_file", Kind::Path},
    {"client_tls_protocols", Kind::String},
    {"client_tls_ciphers", Kind::String},
    {"client_tls13_ciphers", Kind::String},
    {"server_tls_sslmode", Kind::String},
    {"server_tls_cert_file", Kind::Path},
    {"server_tls_key_file", Kind::Path},
    {"server_tls_ca_file", Kind::Path},
    {"server_tls_protocols", Kind::String},
    {"server_tls_ciphers", Kind::String},
    {"server_tls13_ciphers", Kind::String},
};

struct Unmapped {
    std::string_view key;
    std::string_view reason;
};

// PgBouncer's defaults that pgplex's differ from (PgBouncer 1.21 and later).
struct Default {
    std::string_view key;
    std::string_view toml;
};
constexpr Default pgbouncer_defaults[] = {
    {"auth_type", "\"md5\""},
    {"max_client_conn", "100"},
    {"server_tls_sslmode", "\"prefer\""},
};

// PgBouncer's default auth_query (1.21 and later).
constexpr std::string_view pgbouncer_auth_query =
    "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "
    "FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

constexpr std::string_view no_equivalent = "pgplex has no equivalent setting yet";

constexpr Unmapped unmapped_settings[] = {
    {"logfile", "pgplex logs to stderr, which systemd's journal keeps"},
    {"syslog", "pgplex logs to stderr, which systemd's journal keeps"},
    {"syslog_ident", "pgplex logs to stderr, which systemd's journal keeps"},
    {"syslog_facility", "pgplex logs to stderr, which systemd's journal keeps"},
    {"pidfile", "systemd tracks the process (pgplex.service, Type=notify)"},
    {"user", "the unit's User= sets it (pgplex.service)"},
    {"unix_socket_mode", "pgplex does not change its Unix socket's mode"},
    {"unix_socket_group", "pgplex does not change its Unix socket's group"},
    {"stats_users", "pgplex has admin_users only; SHOW needs one of them"},
    {"server_round_robin", "pgplex reuses servers in its own order"},
    {"server_check_query", "pgplex checks a server by its ReadyForQuery state"},
    {"server_check_delay", "pgplex checks a server by its ReadyForQuery state"},
    {"so_reuseport", "pgplex always listens with SO_REUSEPORT, one socket per worker"},
    {"peer_id", "pgplex appliances find each other through [gossip]"},
    {"conffile", "the file is pgplex.toml now"},
    {"service_name", "the systemd unit names the service"},
    {"job_name", "the systemd unit names the service"},
    {"auth_ident_file", "pgplex's auth_type has no peer or ident method"},
    {"server_reset_query_always", no_equivalent},
    {"server_fast_close", no_equivalent},
    {"server_login_retry", no_equivalent},
    {"query_timeout", no_equivalent},
    {"client_idle_timeout", no_equivalent},
    {"idle_transaction_timeout", no_equivalent},
    {"transaction_timeout", no_equivalent},
    {"cancel_wait_timeout", no_equivalent},
    {"suspend_timeout", no_equivalent},
    {"autodb_idle_timeout", no_equivalent},
    {"dns_max_ttl", no_equivalent},
    {"dns_nxdomain_ttl", no_equivalent},
    {"dns_zone_check_period", no_equivalent},
    {"resolv_conf", no_equivalent},
    {"track_extra_parameters", no_equivalent},
    {"ignore_startup_parameters", "pgplex passes startup parameters on; none is refused"},
    {"disable_pqexec", no_equivalent},
    {"application_name_add_host", no_equivalent},
    {"stats_period", "pgplex's counters are live (SHOW STATS, /metrics)"},
    {"log_stats", "pgplex's counters are live (SHOW STATS, /metrics)"},
    {"log_pooler_errors", "pgplex logs every error it sends"},
    {"pkt_buf", "pgplex sizes its buffers with buffer_size"},
    {"max_packet_size", "pgplex bounds each message type by its own limit"},
    {"listen_backlog", no_equivalent},
    {"sbuf_loopcnt", "pgplex's io_uring loop has no such knob"},
    {"tcp_defer_accept", no_equivalent},
    {"tcp_socket_buffer", no_equivalent},
    {"tcp_keepalive", no_equivalent},
    {"tcp_keepcnt", no_equivalent},
    {"tcp_keepidle", no_equivalent},
    {"tcp_keepintvl", no_equivalent},
    {"tcp_user_timeout", no_equivalent},
    {"client_tls_ecdhcurve", "pgplex uses OpenSSL's default groups"},
    {"client_tls_dheparams", "pgplex uses OpenSSL's default groups"},
};

// Connection-string keys of [databases] that [databases.NAME] takes, and how.
constexpr Mapping database_keys[] = {
    {"dbname", Kind::String},
    {"host", Kind::String},
    {"port", Kind::Integer},
    {"user", Kind::String},
    {"password", Kind::String},
    {"pool_size", Kind::Integer},
    {"min_pool_size", Kind::Integer},
    {"reserve_pool_size", Kind::Integer},
    {"pool_mode", Kind::PoolMode},
    {"auth_user", Kind::String},
    {"auth_dbname", Kind::String},
    {"application_name", Kind::String},
    {"client_encoding", Kind::String},
    {"datestyle", Kind::String},
    {"timezone", Kind::String},
    {"max_db_connections", Kind::Integer},
    {"max_db_client_connections", Kind::Integer},
};

const Mapping* find_mapping(const Mapping* begin, const Mapping* end, std::string_view key) {
    for (const Mapping* at = begin; at != end; ++at)
        if (at->key == key) return at;
    return nullptr;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

// Length of the valid UTF-8 sequence at text[at], 0 if there is none.
size_t utf8_length(std::string_view text, size_t at) {
    unsigned char c = static_cast<unsigned char>(text[at]);
    size_t length = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xe  ? 3
                    : (c >> 3) == 0x1e ? 4
                                       : 0;
    if (length == 0 || at + length > text.size()) return 0;
    for (size_t i = 1; i < length; ++i)
        if ((static_cast<unsigned char>(text[at + i]) & 0xc0) != 0x80) return 0;
    uint32_t point = length == 1 ? c : c & (0x7f >> length);
    for (size_t i = 1; i < length; ++i) point = (point << 6) | (text[at + i] & 0x3f);
    static constexpr uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (point < smallest[length] || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff))
        return 0;
    return length;
}

}  // namespace

// A TOML basic string: quotes, backslashes and control characters escaped; a byte that is
// not valid UTF-8 becomes U+FFFD (TOML text must be UTF-8).
std::string toml_string(std::string_view text) {
    std::string out = "\"";
    for (size_t at = 0; at < text.size();) {
        unsigned char c = static_cast<unsigned char>(text[at]);
        size_t length = utf8_length(text, at);
        if (length == 0) {
            out += "\\uFFFD";
            ++at;
            continue;
        }
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c == 0x7f) {
            char escape[8];
            snprintf(escape, sizeof escape, "\\u%04X", c);
            out += escape;
        } else {
            out.append(text.substr(at, length));
        }
        at += length;
    }
    return out + "\"";
}

namespace {

// A comment line's text: printable ASCII only, so no input ends the comment early.
std::string comment_text(std::string_view text) {
    std::string out;
    for (char c : text) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

// One TOML table being written: settings, then the comments of what was not taken.
struct Table {
    std::string header;  // "[pgplex]"; empty for the file's preamble
    std::map<std::string, std::string> settings;
    std::vector<std::string> setting_order;
    std::string comments;

    void set(const std::string& key, std::string value) {
        if (settings.emplace(key, "").second) setting_order.push_back(key);
        settings[key] = std::move(value);
    }
    void unmapped(const IniEntry& entry, std::string_view key, std::string_view reason) {
        comments += "# unmapped: " + comment_text(entry.file) + ":" + std::to_string(entry.line) +
                    ": " + comment_text(key) + ": " + comment_text(reason) + "\n";
    }
    std::string text() const {
        std::string out = header.empty() ? "" : header + "\n";
        for (const std::string& key : setting_order) out += key + " = " + settings.at(key) + "\n";
        return out + comments;
    }
};

bool parse_boolean(std::string_view text, bool& out) {
    std::string value = lower(text);
    if (value == "1" || value == "yes" || value == "on" || value == "true") return out = true;
    if (value == "0" || value == "no" || value == "off" || value == "false") return !(out = false);
    return false;
}

bool all_digits(std::string_view text) {
    if (text.empty() || text.size() > 9) return false;
    for (char c : text)
        if (c < '0' || c > '9') return false;
    return true;
}

// PgBouncer's times are seconds, a fraction allowed ("0.5"); a unit suffix as in newer
// versions ("ms", "s", "min", "h") is taken too.
bool parse_seconds(std::string_view text, int64_t& out_ms) {
    size_t digits = 0;
    while (digits < text.size() &&
           ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.'))
        ++digits;
    if (digits == 0 || digits > 12) return false;
    std::string number(text.substr(0, digits));
    char* end = nullptr;
    double value = strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size()) return false;
    std::string unit = lower(text.substr(digits));
    double factor = unit.empty() || unit == "s" ? 1000
                    : unit == "ms"              ? 1
                    : unit == "min"             ? 60'000
                    : unit == "h"               ? 3'600'000
                                                : -1;
    if (factor < 0) return false;
    out_ms = int64_t(value * factor + 0.5);
    return true;
}

std::string list_of(std::string_view text) {
    std::string out = "[";
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) out += (out.size() > 1 ? ", " : "") + toml_string(item);
        text.remove_prefix(comma == std::string_view::npos ? text.size() : comma + 1);
    }
    return out + "]";
}

// The TOML value for `value` of `kind`, or an empty string with `why` set.
std::string value_of(Kind kind, const std::string& value, const IniEntry& entry, std::string& why) {
    switch (kind) {
        case Kind::String:
            return toml_string(value);
        case Kind::Integer:
            if (all_digits(value)) return std::to_string(atol(value.c_str()));
            why = "not a whole number";
            return {};
        case Kind::Boolean:
            if (bool flag = false; parse_boolean(value, flag)) return flag ? "true" : "false";
            why = "not a boolean";
            return {};
        case Kind::Duration:
            if (int64_t ms = 0; parse_seconds(value, ms)) return "\"" + std::to_string(ms) + "ms\"";
            why = "not a number of seconds";
            return {};
        case Kind::List:
            return list_of(value);
        case Kind::Path: {
            std::filesystem::path path(value);
            std::error_code error;
            std::filesystem::path directory =
                std::filesystem::absolute(std::filesystem::path(entry.file), error).parent_path();
            if (path.is_relative() && !value.empty() && !error) path = directory / path;
            return toml_string(path.string());
        }
        case Kind::PoolMode: {
            std::string mode = lower(value);
            if (mode == "session" || mode == "transaction" || mode == "statement")
                return toml_string(mode);
            why = "not session, transaction or statement";
            return {};
        }
    }
    return {};
}

}  // namespace

namespace {

// What [pgbouncer] says about where to listen; PgBouncer's defaults until a line says more.
struct ListenSettings {
    std::string addresses;            // listen_addr: comma-separated; "*" is pgplex's "*" too
    std::string port = "6432";        // listen_port
    std::string socket_dir = "/tmp";  // unix_socket_dir; empty for none
};

std::string listen_array(const ListenSettings& listen) {
    std::vector<std::string> endpoints;
    std::string_view text = listen.addresses;
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string item(text.substr(0, comma));
        text.remove_prefix(comma == std::string_view::npos ? text.size() : comma + 1);
        item.erase(0, item.find_first_not_of(" \t"));
        item.erase(item.find_last_not_of(" \t") + 1);
        if (item.empty()) continue;
        if (item.find(':') != std::string::npos) item = "[" + item + "]";
        endpoints.push_back(item + ":" + listen.port);
    }
    if (!listen.socket_dir.empty()) endpoints.push_back(listen.socket_dir + ":" + listen.port);
    std::string out = "[";
    for (const std::string& endpoint : endpoints)
        out += (out.size() > 1 ? ", " : "") + toml_string(endpoint);
    return out + "]";
}

// auth_type: pgplex's methods are trust, md5, scram-sha-256 and hba.
void set_auth_type(Table& table, const IniEntry& entry) {
    std::string type = lower(entry.value);
    if (type == "trust" || type == "md5" || type == "scram-sha-256" || type == "hba") {
        table.set("auth_type", toml_string(type));
    } else if (type == "plain") {
        table.set("auth_type", toml_string("md5"));
        table.unmapped(entry, "auth_type = plain",
                       "pgplex never asks for a clear-text password; md5 takes the same auth_file");
    } else if (type == "any") {
        table.set("auth_type", toml_string("trust"));
        table.unmapped(entry, "auth_type = any",
                       "trust, but pgplex keeps the user name the client sends");
    } else {
        table.unmapped(entry, "auth_type = " + type,
                       "pgplex has trust, md5, scram-sha-256 and hba only");
    }
}

bool set_mapped(Table& table, const IniEntry& entry, const std::string& key) {
    const Mapping* mapping = find_mapping(std::begin(same_settings), std::end(same_settings), key);
    if (mapping == nullptr) return false;
    std::string why;
    std::string value = value_of(mapping->kind, entry.value, entry, why);
    if (value.empty())
        table.unmapped(entry, key + " = " + entry.value, why);
    else
        table.set(key, value);
    return true;
}

void unmapped_setting(Table& table, const IniEntry& entry, const std::string& key) {
    for (const Unmapped& known : unmapped_settings)
        if (known.key == key) return table.unmapped(entry, key, known.reason);
    table.unmapped(entry, key, "not a PgBouncer setting this importer knows");
}

// One [pgbouncer] line into [pgplex].
void pgbouncer_setting(Table& table, ListenSettings& listen, const IniEntry& entry) {
    std::string key = lower(entry.key);
    if (key == "listen_addr") {
        listen.addresses = entry.value;
    } else if (key == "listen_port") {
        if (all_digits(entry.value))
            listen.port = entry.value;
        else
            table.unmapped(entry, key, "not a port number");
    } else if (key == "unix_socket_dir") {
        listen.socket_dir = entry.value;
    } else if (key == "auth_type") {
        set_auth_type(table, entry);
    } else if (key == "verbose") {
        if (entry.value != "0") table.set("log_level", toml_string("debug"));
    } else if (!set_mapped(table, entry, key)) {
        unmapped_setting(table, entry, key);
    }
}

Table pgbouncer_section(const IniDocument& document) {
    Table table{"[pgplex]", {}, {}, {}};
    ListenSettings listen;
    bool auth_type_set = false;
    for (const IniEntry& entry : document.entries) {
        if (entry.section != "pgbouncer") continue;
        auth_type_set = auth_type_set || lower(entry.key) == "auth_type";
        pgbouncer_setting(table, listen, entry);
    }
    table.set("listen", listen_array(listen));
    std::vector<std::string>& order = table.setting_order;
    order.insert(order.begin(), order.back());  // listen first, as pgplex.toml(5) writes it
    order.pop_back();
    // Where PgBouncer's default differs from pgplex's, a setting the file leaves out is
    // written with PgBouncer's value, so the import behaves as the file did.
    for (const Default& fallback : pgbouncer_defaults) {
        if (table.settings.count(std::string(fallback.key)) != 0) continue;
        if (fallback.key == "auth_type" && auth_type_set) continue;  // a method pgplex lacks
        table.set(std::string(fallback.key), std::string(fallback.toml));
        table.comments += "# " + std::string(fallback.key) +
                          ": not in the file; PgBouncer's default, which is not pgplex's\n";
    }
    // pgplex's own default auth_query needs its schema on the node (pgplex --print-schema);
    // PgBouncer's reads pg_authid, which the auth_user of a PgBouncer setup may read.
    if (table.settings.count("auth_user") != 0 && table.settings.count("auth_query") == 0)
        table.set("auth_query", toml_string(pgbouncer_auth_query));
    return table;
}

}  // namespace

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

// "key=value" for a comment; a password is never copied into one.
std::string shown_pair(const std::string& key, const std::string& value) {
    return key.find("password") != std::string::npos ? key : key + "=" + value;
}

// The connection string of a [databases] or [users] line, or null after a comment on a
// syntax error.
bool connection_pairs(Table& table, const IniEntry& entry, Pairs& pairs) {
    std::string reason;
    if (parse_connection_string(entry.value, pairs, reason)) return true;
    table.unmapped(entry, entry.key, "cannot read its connection string: " + reason);
    return false;
}

void database_key(Table& table, const IniEntry& entry, const std::string& key,
                  const std::string& value) {
    std::string name = key == "reserve_pool" ? "reserve_pool_size" : key;
    const Mapping* mapping = find_mapping(std::begin(database_keys), std::end(database_keys), name);
    std::string shown = shown_pair(name, value);
    if (mapping == nullptr) {
        for (const Unmapped& known : unmapped_settings)
            if (known.key == name) return table.unmapped(entry, shown, known.reason);
        return table.unmapped(entry, shown, no_equivalent);
    }
    std::string written = value;
    if (name == "host" && value.find(',') != std::string::npos) {
        written = value.substr(0, value.find(','));
        table.unmapped(entry, shown,
                       "pgplex takes one host per database; a [clusters] table "
                       "routes over several (pgplex.toml(5))");
    }
    std::string why;
    std::string toml = value_of(mapping->kind, written, entry, why);
    if (toml.empty()) return table.unmapped(entry, shown, why);
    if (name == "port" && (atol(written.c_str()) < 1 || atol(written.c_str()) > 65535))
        return table.unmapped(entry, shown, "not a port number");
    table.set(name, toml);
}

// [databases]: each line is a [databases.NAME] table; a later line for the same name
// replaces an earlier one whole, as in PgBouncer.
std::vector<Table> database_tables(const IniDocument& document) {
    std::vector<Table> tables;
    std::map<std::string, size_t> index;
    for (const IniEntry& entry : document.entries) {
        if (entry.section != "databases") continue;
        std::string header = "[databases." + toml_string(entry.key) + "]";
        auto [at, added] = index.emplace(entry.key, tables.size());
        if (added) tables.push_back({header, {}, {}, {}});
        Table& table = tables[at->second];
        if (!added) {
            table.settings.clear();
            table.setting_order.clear();
            table.unmapped(entry, entry.key, "defined again here; this definition wins");
        }
        Pairs pairs;
        connection_pairs(table, entry, pairs);
        for (const auto& [key, value] : pairs) database_key(table, entry, key, value);
    }
    return tables;
}

// [users]: the settings pgplex's [users.NAME] takes.
constexpr Mapping user_keys[] = {
    {"pool_mode", Kind::PoolMode},
    {"max_user_connections", Kind::Integer},
    {"max_user_client_connections", Kind::Integer},
};

std::vector<Table> user_tables(const IniDocument& document) {
    std::vector<Table> tables;
    std::map<std::string, size_t> index;
    for (const IniEntry& entry : document.entries) {
        if (entry.section != "users") continue;
        auto [at, added] = index.emplace(entry.key, tables.size());
        if (added) tables.push_back({"[users." + toml_string(entry.key) + "]", {}, {}, {}});
        Table& table = tables[at->second];
        Pairs pairs;
        connection_pairs(table, entry, pairs);
        for (const auto& [key, value] : pairs) {
            std::string why;
            const Mapping* mapping =
                find_mapping(std::begin(user_keys), std::end(user_keys), lower(key));
            std::string toml = mapping ? value_of(mapping->kind, value, entry, why) : "";
            if (!toml.empty())
                table.set(std::string(mapping->key), toml);
            else
                table.unmapped(entry, shown_pair(key, value),
                               why.empty() ? "pgplex's [users.NAME] takes pool_mode, "
                                             "max_user_connections and "
                                             "max_user_client_connections only"
                                           : why);
        }
    }
    return tables;
}

// Lines of sections pgplex has no table for, lines outside any section, and the problems
// met while reading.
Table other_lines(const IniDocument& document) {
    Table table;
    for (const IniEntry& entry : document.entries) {
        if (entry.section == "pgbouncer" || entry.section == "databases" ||
            entry.section == "users")
            continue;
        std::string where =
            entry.section.empty() ? "outside any section" : "[" + entry.section + "]";
        std::string reason = entry.section == "peers"
                                 ? "pgplex appliances find each other through [gossip]"
                                 : "pgplex has no " + where + " section";
        table.unmapped(entry, "[" + entry.section + "] " + entry.key, reason);
    }
    for (const IniProblem& problem : document.problems)
        table.unmapped({"", "", "", problem.file, problem.line}, "not read", problem.reason);
    return table;
}

}  // namespace

std::string import_pgbouncer(const IniDocument& document, const std::string& source) {
    std::string out = "# pgplex.toml imported from " + comment_text(source) +
                      " by pgplex import-pgbouncer.\n"
                      "# A line \"# unmapped: FILE:LINE: key: why\" is a PgBouncer setting\n"
                      "# pgplex does not take. Check the result with: pgplex --check FILE\n\n";
    out += pgbouncer_section(document).text();
    for (const Table& table : database_tables(document)) out += "\n" + table.text();
    for (const Table& table : user_tables(document)) out += "\n" + table.text();
    Table other = other_lines(document);
    if (!other.comments.empty()) out += "\n# Not imported:\n" + other.text();
    return out;
}

int import_pgbouncer_main(int argc, char** argv) {
    if (argc != 3) {
        fputs("usage: pgplex import-pgbouncer PGBOUNCER_INI\n", stderr);
        return 2;
    }
    IniDocument document;
    std::string reason;
    if (!read_ini(argv[2], document, reason)) {
        fprintf(stderr, "pgplex: %s: %s\n", argv[2], reason.c_str());
        return 1;
    }
    fputs(import_pgbouncer(document, argv[2]).c_str(), stdout);
    return 0;
}

}  // namespace pgplex::tools
