// Loading the configuration (see config.h): TOML through toml++, then every setting checked
// against its type and range, host names resolved and the auth file read, so a Config that
// comes out of load() is whole and usable. Any problem becomes one "file:line: reason"
// string; toml++ throws, and this file is the boundary where that is caught.
//
// Each section is a table of named settings, each with a small function that checks one
// value and stores it; an unknown name is an error, never silently ignored.
#include "pgplex/config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "pgplex/base/limits.h"
#include "pgplex/base/unique_fd.h"
#include "pgplex/config/auth_file.h"
#include "pgplex/config/loader.h"

namespace pgplex::config {

namespace {

// A config file is a few kilobytes; the bound only stops a mistyped path (a log, a device)
// from being read whole.
constexpr std::uintmax_t config_file_bytes_max = 1 << 20;
// An auth file may list many users, each line at most a name and a MAX_PASSWORD secret.
constexpr std::uintmax_t auth_file_bytes_max = 64 << 20;
// PgBouncer's default unix_socket_dir for servers, where Debian's PostgreSQL listens.
constexpr std::string_view default_server_host = "/var/run/postgresql";

}  // namespace

// Reads a regular file whole, refusing more than bytes_max. On failure sets reason (without
// the path).
bool read_whole_file(const std::string& path, std::uintmax_t bytes_max, std::string& text,
                     std::string& reason) {
    base::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    struct stat status {};
    if (!fd.valid() || fstat(fd.get(), &status) != 0) {
        reason = std::strerror(errno);
        return false;
    }
    if (!S_ISREG(status.st_mode)) {
        reason = "not a regular file";
        return false;
    }
    text.clear();
    char chunk[65536];
    for (;;) {
        ssize_t got = read(fd.get(), chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            reason = std::strerror(errno);
            return false;
        }
        if (got == 0) return true;
        if (text.size() + size_t(got) > bytes_max) {
            reason = "larger than " + std::to_string(bytes_max) + " bytes";
            return false;
        }
        text.append(chunk, size_t(got));
    }
}

bool Loader::integer(int64_t min, int64_t max, int64_t& out) {
    const toml::value<int64_t>* value = node->as_integer();
    if (value == nullptr) return fail("must be an integer");
    if (value->get() < min || value->get() > max)
        return fail("must be between " + std::to_string(min) + " and " + std::to_string(max));
    out = value->get();
    return true;
}

bool Loader::power_of_two(int64_t min, int64_t max, uint32_t& out) {
    int64_t value = 0;
    if (!integer(INT64_MIN, INT64_MAX, value)) return false;
    if (value < min || value > max || (value & (value - 1)) != 0) {
        return fail("must be a power of two between " + std::to_string(min) + " and " +
                    std::to_string(max));
    }
    out = uint32_t(value);
    return true;
}

bool Loader::string(std::string& out) {
    const toml::value<std::string>* value = node->as_string();
    if (value == nullptr) return fail("must be a string");
    out = value->get();
    return true;
}

bool Loader::optional_string(std::optional<std::string>& out) {
    std::string value;
    if (!string(value)) return false;
    out = std::move(value);
    return true;
}

bool Loader::boolean(bool& out) {
    const toml::value<bool>* value = node->as_boolean();
    if (value == nullptr) return fail("must be true or false");
    out = value->get();
    return true;
}

bool Loader::duration(int64_t& out_ms) {
    if (const toml::value<int64_t>* seconds = node->as_integer()) {
        if (seconds->get() < 0) return fail("must not be negative");
        return parse_duration_ms(std::to_string(seconds->get()), out_ms) || fail("is too long");
    }
    const toml::value<std::string>* text = node->as_string();
    if (text != nullptr && parse_duration_ms(text->get(), out_ms)) return true;
    return fail(
        "must be a duration such as \"250ms\", \"600s\", \"10m\" or \"1h\", or a "
        "whole number of seconds");
}

bool Loader::one_of(std::initializer_list<std::string_view> allowed, std::string& out) {
    std::string value;
    if (!string(value)) return false;
    if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) {
        out = value;
        return true;
    }
    std::string list;
    for (std::string_view word : allowed)
        list += (list.empty() ? "\"" : ", \"") + std::string(word) + "\"";
    return fail("must be one of " + list);
}

bool Loader::string_list(std::vector<std::string>& out) {
    const toml::array* list = node->as_array();
    if (list == nullptr) return fail("must be an array of strings");
    out.clear();
    for (const toml::node& element : *list) {
        const toml::value<std::string>* text = element.as_string();
        if (text == nullptr) return fail_on(element, std::string(name) + " must hold strings");
        out.push_back(text->get());
    }
    return true;
}

bool Loader::lag(int64_t& out_ms, int64_t& out_bytes) {
    out_ms = -1;
    out_bytes = -1;
    const toml::value<std::string>* text = node->as_string();
    if (text != nullptr) {
        std::string_view value = text->get();
        size_t digits = 0;
        while (digits < value.size() && value[digits] >= '0' && value[digits] <= '9') ++digits;
        std::string_view unit = value.substr(digits);
        static constexpr std::pair<std::string_view, int64_t> units[] = {
            {"B", 1}, {"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", int64_t(1) << 30}};
        for (auto [suffix, scale] : units)
            if (digits > 0 && digits <= 12 &&
                strcasecmp(std::string(unit).c_str(), std::string(suffix).c_str()) == 0) {
                int64_t count = std::stoll(std::string(value.substr(0, digits)));
                if (count > INT64_MAX / scale) break;  // "999999999999GB" overflows int64
                out_bytes = count * scale;
                return true;
            }
    }
    if (duration(out_ms)) return true;
    error.clear();
    return fail("must be a duration (\"500ms\", \"10s\") or a size (\"0B\", \"64kB\", \"16MB\")");
}

bool Loader::pool_mode(PoolMode& out) {
    std::string mode;
    if (!one_of({"session", "transaction", "statement"}, mode)) return false;
    out = mode == "transaction" ? PoolMode::Transaction
          : mode == "statement" ? PoolMode::Statement
                                : PoolMode::Session;
    return true;
}

bool Loader::auth_type(AuthType& out) {
    std::string type;
    if (!one_of({"trust", "md5", "scram-sha-256", "hba"}, type)) return false;
    out = type == "trust" ? AuthType::Trust
          : type == "md5" ? AuthType::Md5
          : type == "hba" ? AuthType::Hba
                          : AuthType::ScramSha256;
    return true;
}

namespace {

bool add_listen(Loader& loader, const toml::node& node, Config& config) {
    const toml::value<std::string>* text = node.as_string();
    if (text == nullptr)
        return loader.fail_on(node, "listen must be a string or an array of strings");
    Listen listen;
    std::string reason;
    if (!parse_endpoint(text->get(), listen.endpoint, reason))
        return loader.fail_on(node, "bad listen address \"" + text->get() + "\": " + reason);
    for (const Listen& earlier : config.listen) {
        if (same_address(earlier.endpoint, listen.endpoint))
            return loader.fail_on(node, "listen address \"" + text->get() + "\" is given twice");
    }
    config.listen.push_back(std::move(listen));
    return true;
}

bool set_listen(Loader& loader, Config& config) {
    config.listen.clear();
    const toml::array* list = loader.node->as_array();
    if (list == nullptr) return add_listen(loader, *loader.node, config);
    if (list->empty()) return loader.fail("must name at least one address");
    for (const toml::node& element : *list) {
        if (!add_listen(loader, element, config)) return false;
    }
    return true;
}

// unix_socket_mode: octal digits as PgBouncer writes them ("0777", "0770"), or a TOML integer
// (0o777).
bool set_unix_socket_mode(Loader& loader, Config& config) {
    if (const toml::value<std::string>* text = loader.node->as_string()) {
        const std::string& digits = text->get();
        int mode = 0;
        bool octal = !digits.empty() && digits.size() <= 4;
        for (char c : digits) {
            octal = octal && c >= '0' && c <= '7';
            mode = mode * 8 + (c - '0');
        }
        if (!octal || mode > 0777)
            return loader.fail("must be an octal mode from \"0000\" to \"0777\"");
        config.unix_socket_mode = mode;
        return true;
    }
    return loader.integer_as(0, 0777, config.unix_socket_mode);
}

// unix_socket_dir: one Unix socket per port of a TCP listen address, unless listen names it.
bool add_unix_sockets(Loader& loader, const toml::table& table, Config& config) {
    if (config.unix_socket_dir.empty()) return true;
    const toml::node& node = *table.get("unix_socket_dir");
    if (config.unix_socket_dir[0] != '/')
        return loader.fail_on(node, "unix_socket_dir must be an absolute directory");
    std::vector<uint16_t> ports;
    for (const Listen& listen : config.listen)
        if (!listen.endpoint.is_unix() &&
            std::find(ports.begin(), ports.end(), listen.endpoint.port) == ports.end())
            ports.push_back(listen.endpoint.port);
    for (uint16_t port : ports) {
        Listen listen;
        std::string reason;
        if (!resolve_endpoint(config.unix_socket_dir, port, listen.endpoint, reason))
            return loader.fail_on(node, "unix_socket_dir: " + reason);
        bool given = std::any_of(
            config.listen.begin(), config.listen.end(),
            [&](const Listen& earlier) { return same_address(earlier.endpoint, listen.endpoint); });
        if (!given) config.listen.push_back(std::move(listen));
    }
    return true;
}

constexpr Setting<Config> pgplex_settings[] = {
    {"listen", set_listen},
    {"metrics_listen",
     [](Loader& loader, Config& config) {
         std::string reason;
         if (!loader.string(config.metrics_listen)) return false;
         if (config.metrics_listen.empty()) return true;
         if (!parse_endpoint(config.metrics_listen, config.metrics_endpoint, reason))
             return loader.fail("\"" + config.metrics_listen + "\": " + reason);
         if (config.metrics_endpoint.is_unix()) return loader.fail("must be a TCP host:port");
         return true;
     }},
    {"unix_socket_dir",
     [](Loader& loader, Config& config) { return loader.string(config.unix_socket_dir); }},
    {"takeover_socket",
     [](Loader& loader, Config& config) {
         if (!loader.string(config.takeover_socket)) return false;
         if (!config.takeover_socket.empty() && config.takeover_socket[0] != '/')
             return loader.fail("takeover_socket must be an absolute path");
         return true;
     }},
    {"unix_socket_mode", set_unix_socket_mode},
    {"workers",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, limits::workers_max, config.workers);
     }},
    {"max_client_conn",
     [](Loader& loader, Config& config) {
         return loader.integer_as(1, 1'000'000, config.max_client_conn);
     }},
    {"max_db_connections",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.max_db_connections);
     }},
    {"max_user_connections",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.max_user_connections);
     }},
    {"max_db_client_connections",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.max_db_client_connections);
     }},
    {"max_user_client_connections",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.max_user_client_connections);
     }},
    {"pool_mode",
     [](Loader& loader, Config& config) { return loader.pool_mode(config.pool_mode); }},
    {"default_pool_size",
     [](Loader& loader, Config& config) {
         return loader.integer_as(1, 10'000, config.default_pool_size);
     }},
    {"pin_on_session_state",
     [](Loader& loader, Config& config) { return loader.boolean(config.pin_on_session_state); }},
    {"max_prepared_statements",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 100'000, config.max_prepared_statements);
     }},
    {"min_pool_size",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 10'000, config.min_pool_size);
     }},
    {"reserve_pool_size",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 10'000, config.reserve_pool_size);
     }},
    {"reserve_pool_timeout",
     [](Loader& loader, Config& config) {
         return loader.duration(config.reserve_pool_timeout_ms);
     }},
    {"auth_type",
     [](Loader& loader, Config& config) { return loader.auth_type(config.auth_type); }},
    {"auth_file", [](Loader& loader, Config& config) { return loader.string(config.auth_file); }},
    {"state_file", [](Loader& loader, Config& config) { return loader.string(config.state_file); }},
    {"auth_hba_file",
     [](Loader& loader, Config& config) { return loader.string(config.auth_hba_file); }},
    {"auth_user", [](Loader& loader, Config& config) { return loader.string(config.auth_user); }},
    {"auth_query", [](Loader& loader, Config& config) { return loader.string(config.auth_query); }},
    {"auth_dbname",
     [](Loader& loader, Config& config) { return loader.string(config.auth_dbname); }},
    {"auth_cache_ttl",
     [](Loader& loader, Config& config) { return loader.duration(config.auth_cache_ttl_ms); }},
    {"server_reset_query",
     [](Loader& loader, Config& config) { return loader.string(config.server_reset_query); }},
    {"server_idle_timeout",
     [](Loader& loader, Config& config) { return loader.duration(config.server_idle_timeout_ms); }},
    {"server_lifetime",
     [](Loader& loader, Config& config) { return loader.duration(config.server_lifetime_ms); }},
    {"query_wait_timeout",
     [](Loader& loader, Config& config) { return loader.duration(config.query_wait_timeout_ms); }},
    {"failover_wait_timeout",
     [](Loader& loader, Config& config) {
         return loader.duration(config.failover_wait_timeout_ms);
     }},
    {"client_login_timeout",
     [](Loader& loader, Config& config) {
         return loader.duration(config.client_login_timeout_ms);
     }},
    {"auth_failure_limit",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.auth_failure_limit);
     }},
    {"client_connect_rate_limit",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.client_connect_rate_limit);
     }},
    {"client_stall_timeout",
     [](Loader& loader, Config& config) {
         return loader.duration(config.client_stall_timeout_ms);
     }},
    {"client_login_limit",
     [](Loader& loader, Config& config) {
         return loader.integer_as(0, 1'000'000, config.client_login_limit);
     }},
    {"auth_failure_delay",
     [](Loader& loader, Config& config) { return loader.duration(config.auth_failure_delay_ms); }},
    {"server_connect_timeout",
     [](Loader& loader, Config& config) {
         return loader.duration(config.server_connect_timeout_ms);
     }},
    {"shutdown_timeout",
     [](Loader& loader, Config& config) { return loader.duration(config.shutdown_timeout_ms); }},
    {"log_connections",
     [](Loader& loader, Config& config) { return loader.boolean(config.log_connections); }},
    {"log_disconnections",
     [](Loader& loader, Config& config) { return loader.boolean(config.log_disconnections); }},
    {"log_level",
     [](Loader& loader, Config& config) {
         return loader.one_of({"error", "warning", "notice", "info", "debug"}, config.log_level);
     }},
    {"admin_users",
     [](Loader& loader, Config& config) { return loader.string_list(config.admin_users); }},
    {"stats_users",
     [](Loader& loader, Config& config) { return loader.string_list(config.stats_users); }},
    {"client_tls_sslmode",
     [](Loader& loader, Config& config) {
         std::string mode;
         if (!loader.one_of({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
                            mode))
             return false;
         return tls::parse_ssl_mode(mode, config.client_tls.mode);
     }},
    {"client_tls_cert_file",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.cert_file); }},
    {"client_tls_key_file",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.key_file); }},
    {"client_tls_ca_file",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.ca_file); }},
    {"client_tls_protocols",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.protocols); }},
    {"client_tls_ciphers",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.ciphers); }},
    {"client_tls13_ciphers",
     [](Loader& loader, Config& config) { return loader.string(config.client_tls.tls13_ciphers); }},
    {"read_only_functions",
     [](Loader& loader, Config& config) {
         if (!loader.string_list(config.read_only_functions)) return false;
         for (std::string& name : config.read_only_functions)
             for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
         return true;
     }},
    {"buffer_size",
     [](Loader& loader, Config& config) {
         return loader.power_of_two(4096, 1 << 20, config.buffer_size);
     }},
    {"buffer_count",
     [](Loader& loader, Config& config) {
         return loader.power_of_two(64, limits::ring_buffers_max, config.buffer_count);
     }},
};

// An alias while its table is read: the settings that need checking together afterwards.
struct AliasDraft {
    Alias alias;
    std::string host{default_server_host};
    uint32_t host_line = 0;      // 0: host not given
    uint32_t password_line = 0;  // 0: password not given
    uint32_t cluster_line = 0;   // 0: cluster not given
    std::optional<std::string> application_name, client_encoding, datestyle, timezone, options;
    ServerTlsLevel server_tls;
};

constexpr Setting<AliasDraft> alias_settings[] = {
    {"host",
     [](Loader& loader, AliasDraft& draft) {
         draft.host_line = loader.node->source().begin.line;
         return loader.string(draft.host);
     }},
    {"port",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(1, 65535, draft.alias.server.port);
     }},
    {"dbname", [](Loader& loader, AliasDraft& draft) { return loader.string(draft.alias.dbname); }},
    {"user", [](Loader& loader, AliasDraft& draft) { return loader.string(draft.alias.user); }},
    {"password",
     [](Loader& loader, AliasDraft& draft) {
         draft.password_line = loader.node->source().begin.line;
         return loader.string(draft.alias.password);
     }},
    {"application_name",
     [](Loader& loader, AliasDraft& draft) {
         return loader.optional_string(draft.application_name);
     }},
    {"client_encoding",
     [](Loader& loader, AliasDraft& draft) {
         return loader.optional_string(draft.client_encoding);
     }},
    {"datestyle",
     [](Loader& loader, AliasDraft& draft) { return loader.optional_string(draft.datestyle); }},
    {"timezone",
     [](Loader& loader, AliasDraft& draft) { return loader.optional_string(draft.timezone); }},
    {"options",
     [](Loader& loader, AliasDraft& draft) { return loader.optional_string(draft.options); }},
    {"pool_size",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(0, 10'000, draft.alias.pool_size);
     }},
    {"min_pool_size",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(0, 10'000, draft.alias.min_pool_size);
     }},
    {"reserve_pool_size",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(0, 10'000, draft.alias.reserve_pool_size);
     }},
    {"max_db_connections",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(0, 1'000'000, draft.alias.max_db_connections);
     }},
    {"max_db_client_connections",
     [](Loader& loader, AliasDraft& draft) {
         return loader.integer_as(0, 1'000'000, draft.alias.max_db_client_connections);
     }},
    {"pool_mode",
     [](Loader& loader, AliasDraft& draft) {
         draft.alias.pool_mode_set = true;
         return loader.pool_mode(draft.alias.pool_mode);
     }},
    {"cluster",
     [](Loader& loader, AliasDraft& draft) {
         draft.cluster_line = loader.node->source().begin.line;
         return loader.string(draft.alias.cluster);
     }},
    {"read_your_writes",
     [](Loader& loader, AliasDraft& draft) {
         return loader.boolean(draft.alias.read_your_writes);
     }},
    {"default_route",
     [](Loader& loader, AliasDraft& draft) {
         return loader.one_of({"primary", "replica", "standby", "offline", "delayed"},
                              draft.alias.default_route);
     }},
    {"auth_user",
     [](Loader& loader, AliasDraft& draft) { return loader.string(draft.alias.auth_user); }},
    {"auth_dbname",
     [](Loader& loader, AliasDraft& draft) { return loader.string(draft.alias.auth_dbname); }},
    {"pin_on_session_state",
     [](Loader& loader, AliasDraft& draft) {
         bool pin = true;
         if (!loader.boolean(pin)) return false;
         draft.alias.pin_on_session_state = pin ? 1 : 0;
         return true;
     }},
};

void add_startup_parameters(AliasDraft& draft) {
    const std::pair<const char*, std::optional<std::string>*> in_order[] = {
        {"application_name", &draft.application_name},
        {"client_encoding", &draft.client_encoding},
        {"DateStyle", &draft.datestyle},
        {"TimeZone", &draft.timezone},
        {"options", &draft.options},
    };
    for (auto& [name, value] : in_order) {
        if (!value->has_value()) continue;
        std::string text = **value;
        // PostgreSQL reports a client_encoding back as it was asked for, and some drivers
        // (psycopg) know "UTF8" but not its alias "UNICODE", which PgBouncer configs use.
        if (std::string_view(name) == "client_encoding" &&
            (strcasecmp(text.c_str(), "unicode") == 0 || strcasecmp(text.c_str(), "utf-8") == 0 ||
             strcasecmp(text.c_str(), "utf8") == 0))
            text = "UTF8";
        draft.alias.startup_parameters.emplace_back(name, text);
    }
}

// The alias's server TLS settings over [pgplex]'s; an alias that names a cluster takes its
// nodes' settings instead.
bool resolve_alias_tls(Loader& loader, Config& config, const std::string& section,
                       AliasDraft& draft) {
    if (draft.cluster_line != 0 && !draft.server_tls.empty())
        return loader.fail_at(draft.server_tls.line,
                              "[" + section +
                                  "] names a cluster: set its server TLS settings in [clusters." +
                                  draft.alias.cluster + "] or its node_options");
    return resolve_server_tls(loader, config, *config.server_tls, draft.server_tls,
                              "[" + section + "]", draft.alias.server_tls);
}

bool parse_alias(Loader& loader, std::string_view name, const toml::node& node, Config& config,
                 Alias& out) {
    const toml::table* table = node.as_table();
    std::string section = section_name(name);
    if (table == nullptr) return loader.fail_on(node, "[" + section + "] must be a table");
    if (name.empty() || name.size() > limits::name_bytes_max) {
        return loader.fail_on(node, "database name must be 1 to " +
                                        std::to_string(limits::name_bytes_max) + " bytes long");
    }
    AliasDraft draft;
    draft.alias.name = std::string(name);
    draft.alias.line = table->source().begin.line;
    if (!apply_settings(loader, *table, section, alias_settings, draft, &draft.server_tls))
        return false;
    if (!resolve_alias_tls(loader, config, section, draft)) return false;
    if (draft.password_line != 0 && draft.alias.user.empty())
        return loader.fail_at(draft.password_line, "password is given without user");
    if (draft.cluster_line != 0 && draft.host_line != 0)
        return loader.fail_at(draft.cluster_line,
                              "an alias names either a cluster or a host, not both");
    std::string reason;
    if (draft.cluster_line != 0) {
        add_startup_parameters(draft);
        out = std::move(draft.alias);
        return true;
    }
    if (!resolve_endpoint(draft.host, draft.alias.server.port, draft.alias.server, reason))
        return loader.fail_at(draft.host_line ? draft.host_line : draft.alias.line, reason);
    add_startup_parameters(draft);
    out = std::move(draft.alias);
    return true;
}

bool parse_databases(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "databases must be a table");
    for (auto&& [key, value] : *table) {
        Alias alias;
        if (!parse_alias(loader, key.str(), value, config, alias)) return false;
        if (alias.name == "*") {
            config.fallback = std::make_unique<Alias>(std::move(alias));
        } else {
            config.aliases.push_back(std::move(alias));
        }
    }
    std::sort(config.aliases.begin(), config.aliases.end(),
              [](const Alias& a, const Alias& b) { return a.line < b.line; });
    return true;
}

std::string beside_config(const Config& config, const std::string& name) {
    std::filesystem::path file(name);
    if (name.empty() || !file.is_relative()) return name;
    return (std::filesystem::path(config.path).parent_path() / file).string();
}

// client_tls_*: the files are read and checked now, into the context every worker shares.
bool load_client_tls(Loader& loader, const toml::table& section, Config& config) {
    tls::Settings& settings = config.client_tls;
    settings.cert_file = beside_config(config, settings.cert_file);
    settings.key_file = beside_config(config, settings.key_file);
    settings.ca_file = beside_config(config, settings.ca_file);
    if (settings.mode == tls::SslMode::Disable) return true;
    std::string error;
    config.client_tls_context = tls::Context::make_server(settings, error);
    if (config.client_tls_context) return true;
    const toml::node* at = section.get("client_tls_sslmode");
    return loader.fail_on(
        at != nullptr ? *at : section,
        "client_tls_sslmode = \"" + std::string(to_string(settings.mode)) + "\": " + error);
}

// auth_type = "hba": the rules of auth_hba_file, read and checked now.
bool load_hba(Loader& loader, const toml::table& section, Config& config) {
    const toml::node* node = section.get("auth_hba_file");
    if (config.auth_type != AuthType::Hba) {
        if (node != nullptr)
            return loader.fail_on(*node, "auth_hba_file is read only with auth_type = \"hba\"");
        return true;
    }
    if (node == nullptr) return loader.fail_on(section, "auth_type = \"hba\" needs auth_hba_file");
    config.auth_hba_file = beside_config(config, config.auth_hba_file);
    std::string text;
    std::string reason;
    if (!read_whole_file(config.auth_hba_file, auth_file_bytes_max, text, reason))
        return loader.fail_on(
            *node, "cannot read auth_hba_file \"" + config.auth_hba_file + "\": " + reason);
    auto rules = std::make_shared<HbaRules>();
    if (!parse_hba(config.auth_hba_file, text, *rules, loader.error)) return false;
    config.hba = std::move(rules);
    return true;
}

// Reads the auth file named in [pgplex], relative to the config file's directory.
bool load_auth_file(Loader& loader, const toml::table& section, Config& config) {
    const toml::node* node = section.get("auth_file");
    if (node == nullptr) {
        if (config.auth_type == AuthType::Trust) return true;
        return loader.fail_on(section, std::string("auth_file is required when auth_type is \"") +
                                           to_string(config.auth_type) + "\"");
    }
    std::filesystem::path file(config.auth_file);
    if (file.is_relative()) file = std::filesystem::path(config.path).parent_path() / file;
    config.auth_file = file.string();
    std::string text;
    std::string reason;
    if (!read_whole_file(config.auth_file, auth_file_bytes_max, text, reason))
        return loader.fail_on(*node,
                              "cannot read auth_file \"" + config.auth_file + "\": " + reason);
    return parse_auth_file(config.auth_file, text, config.users, loader.error);
}

constexpr Setting<UserSettings> user_settings[] = {
    {"pool_mode",
     [](Loader& loader, UserSettings& user) {
         user.pool_mode_set = true;
         return loader.pool_mode(user.pool_mode);
     }},
    {"max_user_connections",
     [](Loader& loader, UserSettings& user) {
         return loader.integer_as(0, 1'000'000, user.max_user_connections);
     }},
    {"max_user_client_connections",
     [](Loader& loader, UserSettings& user) {
         return loader.integer_as(0, 1'000'000, user.max_user_client_connections);
     }},
};

bool parse_user(Loader& loader, std::string_view name, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    std::string section = section_name(name, "users");
    if (table == nullptr) return loader.fail_on(node, "[" + section + "] must be a table");
    if (name.empty() || name.size() > limits::name_bytes_max) {
        return loader.fail_on(node, "user name must be 1 to " +
                                        std::to_string(limits::name_bytes_max) + " bytes long");
    }
    UserSettings user;
    user.name = std::string(name);
    user.line = table->source().begin.line;
    if (!apply_settings(loader, *table, section, user_settings, user)) return false;
    config.user_settings[user.name] = std::move(user);
    return true;
}

bool parse_users(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "users must be a table");
    for (auto&& [key, value] : *table) {
        if (!parse_user(loader, key.str(), value, config)) return false;
    }
    return true;
}

bool parse_pgplex(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "[pgplex] must be a table");
    ServerTlsLevel server_tls;
    if (!apply_settings(loader, *table, "pgplex", pgplex_settings, config, &server_tls))
        return false;
    if (config.listen.empty()) return loader.fail_on(*table, "listen is required in [pgplex]");
    if (!add_unix_sockets(loader, *table, config)) return false;
    if (config.workers == 0) {
        unsigned cpus = std::thread::hardware_concurrency();
        config.workers = int(std::clamp(cpus, 1u, limits::workers_max));
    }
    if (config.auth_query.find("$1") == std::string::npos)
        return loader.fail_on(*table->get("auth_query"),
                              "auth_query must name the user it looks up as $1");
    if (!load_client_tls(loader, *table, config)) return false;
    if (!resolve_server_tls(loader, config, ServerTls{}, server_tls, "", config.server_tls))
        return false;
    if (!load_hba(loader, *table, config)) return false;
    config.state_file = beside_config(config, config.state_file);
    return load_auth_file(loader, *table, config);
}

bool parse_root(Loader& loader, const toml::table& root, Config& config) {
    for (auto&& [key, node] : root) {
        static constexpr std::string_view known[] = {"pgplex", "databases", "users",  "clusters",
                                                     "rules",  "rewrites",  "gossip", "dcs"};
        if (std::find(std::begin(known), std::end(known), key.str()) != std::end(known)) continue;
        std::string what = node.is_table() ? "unknown section [" + std::string(key.str()) + "]"
                                           : "unknown setting \"" + std::string(key.str()) +
                                                 "\" outside any section";
        return loader.fail_at(key.source().begin.line, what);
    }
    const toml::node* pgplex = root.get("pgplex");
    if (pgplex == nullptr) return loader.fail_at(1, "no [pgplex] section");
    if (!parse_pgplex(loader, *pgplex, config)) return false;
    const toml::node* databases = root.get("databases");
    if (databases != nullptr && !parse_databases(loader, *databases, config)) return false;
    const toml::node* users = root.get("users");
    if (users != nullptr && !parse_users(loader, *users, config)) return false;
    const toml::node* clusters = root.get("clusters");
    if (clusters != nullptr && !parse_clusters(loader, *clusters, config)) return false;
    const toml::node* rules = root.get("rules");
    if (rules != nullptr && !parse_rules(loader, *rules, config)) return false;
    const toml::node* rewrites = root.get("rewrites");
    if (rewrites != nullptr && !parse_rewrites(loader, *rewrites, config)) return false;
    const toml::node* gossip = root.get("gossip");
    if (gossip != nullptr && !parse_gossip(loader, *gossip, config)) return false;
    const toml::node* dcs = root.get("dcs");
    if (dcs != nullptr && !parse_dcs(loader, *dcs, config)) return false;
    return check_routing(loader, root, config);
}

// SET's overrides, laid over the file at each load (the control thread's reload). The
// console writes them on a worker; the lock is never taken on the data path.
std::mutex overrides_mutex;
std::vector<std::pair<std::string, std::string>> overrides;

// The settings SET may change: those a reload applies to running pools and clients.
constexpr std::string_view live_settings[] = {
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "max_client_conn",
    "query_wait_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "server_connect_timeout",
    "client_login_timeout",
    "client_stall_timeout",
    "failover_wait_timeout",
    "log_connections",
    "log_disconnections",
    "server_reset_query",
    "auth_failure_delay",
    "auth_failure_limit",
    "auth_cache_ttl",
    "log_level",
    "max_db_connections",
    "max_user_connections",
    "max_db_client_connections",
    "max_user_client_connections",
};

// `key = value` as a one-line TOML table; a bare word that is not TOML (SET pool_mode =
// transaction, as PgBouncer takes it) is read as a string.
toml::table override_table(std::string_view key, std::string_view value) {
    const std::string source = "SET";
    std::string line = std::string(key) + " = " + std::string(value);
    try {
        return toml::parse(line, source);
    } catch (const toml::parse_error&) {
        std::string quoted = std::string(key) + " = '" + std::string(value) + "'";
        return toml::parse(quoted, source);
    }
}

void apply_overrides(toml::table& root) {
    std::lock_guard<std::mutex> guard(overrides_mutex);
    toml::table* pgplex = root["pgplex"].as_table();
    for (const auto& [key, value] : overrides) {
        if (pgplex == nullptr) break;
        toml::table line = override_table(key, value);
        for (auto&& [name, node] : line) {
            // A structured binding is not captured by a lambda before C++20 in clang 14.
            std::string_view setting = name.str();
            node.visit([&](auto&& concrete) { pgplex->insert_or_assign(setting, concrete); });
        }
    }
}

LoadResult load_unguarded(const std::string& path) {
    LoadResult result;
    std::string text;
    std::string reason;
    if (!read_whole_file(path, config_file_bytes_max, text, reason)) {
        result.error = path + ": cannot read: " + reason;
        return result;
    }
    Loader loader{path, {}, {}, nullptr};
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& error) {
        loader.fail_at(error.source().begin.line, error.description());
        result.error = loader.error;
        return result;
    }
    apply_overrides(root);
    auto config = std::make_shared<Config>();
    config->path = path;
    if (!parse_root(loader, root, *config)) {
        result.error = loader.error;
        return result;
    }
    result.config = std::move(config);
    return result;
}

bool parse_port(std::string_view text, uint16_t& out) {
    if (text.empty() || text.size() > 5) return false;
    uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + uint32_t(c - '0');
    }
    if (value == 0 || value > 65535) return false;
    out = uint16_t(value);
    return true;
}

bool resolve_unix(std::string_view directory, uint16_t port, Endpoint& out, std::string& reason) {
    std::string socket_path = std::string(directory) + "/.s.PGSQL." + std::to_string(port);
    sockaddr_un address{};
    if (socket_path.size() >= sizeof address.sun_path) {
        reason = "Unix socket path \"" + socket_path + "\" is too long";
        return false;
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
    std::memcpy(&out.address, &address, sizeof address);
    out.address_bytes = socklen_t(offsetof(sockaddr_un, sun_path) + socket_path.size() + 1);
    return true;
}

void resolve_any(uint16_t port, Endpoint& out) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    std::memcpy(&out.address, &address, sizeof address);
    out.address_bytes = sizeof address;
}

bool resolve_host(const std::string& host, uint16_t port, Endpoint& out, std::string& reason) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    int status = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (status != 0 || found == nullptr) {
        reason = "could not resolve host \"" + host + "\": " + gai_strerror(status);
        return false;
    }
    std::memcpy(&out.address, found->ai_addr, found->ai_addrlen);
    out.address_bytes = found->ai_addrlen;
    freeaddrinfo(found);
    return true;
}

}  // namespace

const char* to_string(PoolMode mode) {
    switch (mode) {
        case PoolMode::Session:
            return "session";
        case PoolMode::Transaction:
            return "transaction";
        case PoolMode::Statement:
            return "statement";
    }
    return "session";
}

const char* to_string(AuthType type) {
    switch (type) {
        case AuthType::Trust:
            return "trust";
        case AuthType::Md5:
            return "md5";
        case AuthType::ScramSha256:
            return "scram-sha-256";
        case AuthType::Hba:
            return "hba";
    }
    return "scram-sha-256";
}

std::string Endpoint::to_string() const {
    std::string port_text = std::to_string(port);
    if (is_unix()) return host + "/.s.PGSQL." + port_text;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
    return host + ":" + port_text;
}

std::string numeric_address(const sockaddr_storage& address) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(address);
        inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
        return std::string(text) + ":" + std::to_string(ntohs(in.sin_port));
    }
    if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    return std::string();
}

std::string Endpoint::numeric() const {
    return is_unix() ? to_string() : numeric_address(address);
}

const char* to_string(Dest dest) {
    return dest == Dest::Direct ? "direct" : "pool";
}

const char* to_string(Balance balance) {
    switch (balance) {
        case Balance::RoundRobin:
            return "roundrobin";
        case Balance::LeastConn:
            return "leastconn";
        case Balance::Load:
            return "load";
    }
    return "unknown";
}

const Cluster* Config::find_cluster(std::string_view name) const {
    for (const Cluster& cluster : clusters)
        if (cluster.name == name) return &cluster;
    return nullptr;
}

const Node* Cluster::find_node(std::string_view node_name) const {
    for (const Node& node : nodes)
        if (node.name == node_name) return &node;
    return nullptr;
}

int Config::max_db_connections_of(std::string_view database) const {
    const Alias* alias = find_alias(database);
    return alias != nullptr && alias->max_db_connections >= 0 ? alias->max_db_connections
                                                              : max_db_connections;
}

int Config::max_db_client_connections_of(std::string_view database) const {
    const Alias* alias = find_alias(database);
    return alias != nullptr && alias->max_db_client_connections >= 0
               ? alias->max_db_client_connections
               : max_db_client_connections;
}

int Config::max_user_connections_of(const std::string& user) const {
    auto found = user_settings.find(user);
    return found != user_settings.end() && found->second.max_user_connections >= 0
               ? found->second.max_user_connections
               : max_user_connections;
}

int Config::max_user_client_connections_of(const std::string& user) const {
    auto found = user_settings.find(user);
    return found != user_settings.end() && found->second.max_user_client_connections >= 0
               ? found->second.max_user_client_connections
               : max_user_client_connections;
}

const Alias* Config::find_alias(std::string_view name) const {
    for (const Alias& alias : aliases) {
        if (alias.name == name) return &alias;
    }
    return fallback.get();
}

bool check_override(std::string_view key, std::string_view value, std::string& reason) {
    if (std::find(std::begin(live_settings), std::end(live_settings), key) ==
        std::end(live_settings)) {
        reason = "SET " + std::string(key) + ": not a setting pgplex changes live";
        return false;
    }
    try {
        toml::table table = override_table(key, value);
        Loader loader{"SET", {}, {}, nullptr};
        Config scratch;
        if (apply_settings(loader, table, "pgplex", pgplex_settings, scratch)) return true;
        reason = loader.error;
    } catch (const toml::parse_error& error) {
        reason = "SET: " + std::string(error.description());
    }
    return false;
}

void set_override(std::string_view key, std::string_view value) {
    std::lock_guard<std::mutex> guard(overrides_mutex);
    auto same = [key](const auto& override) { return override.first == key; };
    overrides.erase(std::remove_if(overrides.begin(), overrides.end(), same), overrides.end());
    overrides.emplace_back(std::string(key), std::string(value));
}

void clear_overrides() {
    std::lock_guard<std::mutex> guard(overrides_mutex);
    overrides.clear();
}

LoadResult load(const std::string& path) {
    try {
        return load_unguarded(path);
    } catch (const std::exception& error) {
        return {nullptr, path + ": " + error.what()};
    } catch (...) {
        return {nullptr, path + ": unexpected error while loading"};
    }
}

// Digits, then a unit: "ms", "s", "m", "h", or none (seconds). Rejects anything that would
// not fit in int64 milliseconds.
bool parse_duration_ms(std::string_view text, int64_t& out_ms) {
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') digits++;
    if (digits == 0 || digits > 15) return false;  // 10^15 s still fits in int64 ms
    int64_t value = 0;
    for (size_t i = 0; i < digits; i++) value = value * 10 + (text[i] - '0');
    std::string_view unit = text.substr(digits);
    int64_t factor = 0;
    if (unit == "ms") factor = 1;
    if (unit == "s" || unit.empty()) factor = 1000;
    if (unit == "m") factor = 60'000;
    if (unit == "h") factor = 3'600'000;
    if (factor == 0 || value > INT64_MAX / factor) return false;
    out_ms = value * factor;
    return true;
}

bool parse_endpoint(std::string_view text, Endpoint& out, std::string& reason) {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        reason = "expected host:port";
        return false;
    }
    std::string_view host = text.substr(0, colon);
    uint16_t port = 0;
    if (!parse_port(text.substr(colon + 1), port)) {
        reason = "port must be a number from 1 to 65535";
        return false;
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return resolve_endpoint(host, port, out, reason);
}

bool resolve_endpoint(std::string_view host, uint16_t port, Endpoint& out, std::string& reason) {
    Endpoint endpoint;
    endpoint.host = std::string(host);
    endpoint.port = port;
    if (host.empty()) {
        reason = "host is empty";
        return false;
    }
    if (host.find('\0') != std::string_view::npos) {
        reason = "host contains a NUL byte";
        return false;
    }
    if (endpoint.is_unix()) {
        if (!resolve_unix(host, port, endpoint, reason)) return false;
    } else if (host == "*") {
        resolve_any(port, endpoint);
    } else if (!resolve_host(endpoint.host, port, endpoint, reason)) {
        return false;
    }
    out = std::move(endpoint);
    return true;
}

}  // namespace pgplex::config
