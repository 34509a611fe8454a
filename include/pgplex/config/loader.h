// Internal to config/: the loader's cursor and the table-driven setting parser, shared by
// load.cc ([pgplex], [databases], [users]) and load_cluster.cc ([clusters], [[rules]],
// [[rewrites]]).
#pragma once

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/config/config.h"
#include "pgplex/config/server_tls.h"

namespace pgplex::config {

// Holds the path for messages, the setting being read (so each check below can name it
// and its line) and the first error met.
struct Loader {
    std::string path;
    std::string error;
    std::string_view name;             // the setting being read
    const toml::node* node = nullptr;  // its value

    bool fail_at(uint32_t line, std::string_view reason) {
        error = path + ":" + std::to_string(line) + ": " + std::string(reason);
        return false;
    }
    bool fail_on(const toml::node& at, std::string_view reason) {
        return fail_at(at.source().begin.line, reason);
    }
    bool fail(std::string_view reason) {
        return fail_on(*node, std::string(name) + " " + std::string(reason));
    }

    bool integer(int64_t min, int64_t max, int64_t& out);
    template <typename T>
    bool integer_as(int64_t min, int64_t max, T& out) {
        int64_t value = 0;
        if (!integer(min, max, value)) return false;
        out = T(value);
        return true;
    }
    bool power_of_two(int64_t min, int64_t max, uint32_t& out);
    bool string(std::string& out);
    bool optional_string(std::optional<std::string>& out);
    bool boolean(bool& out);
    bool duration(int64_t& out_ms);
    bool one_of(std::initializer_list<std::string_view> allowed, std::string& out);
    bool string_list(std::vector<std::string>& out);
    // A duration ("500ms", "10s") into out_ms, or a size ("16MB", "0B") into out_bytes; the
    // other is set to -1.
    bool lag(int64_t& out_ms, int64_t& out_bytes);
    bool pool_mode(PoolMode& out);
    bool auth_type(AuthType& out);
};

// A setting of a section: its name and the function that checks and stores it.
template <typename Target>
struct Setting {
    std::string_view name;
    bool (*apply)(Loader&, Target&);
};

// The server_tls_* settings, server_channel_binding and server_tls_negotiation, which every
// level that reaches servers accepts (load_server_tls.cc).
bool is_server_tls_setting(std::string_view name);
// Reads the setting loader.name (one of those) into `level`.
bool read_server_tls_setting(Loader& loader, ServerTlsLevel& level);
// `level` over `base`, checked and built (or found among config.server_tls_sets, equal sets
// sharing one context). `what` names the level in messages ("[databases.x]").
bool resolve_server_tls(Loader& loader, Config& config, const ServerTls& base,
                        const ServerTlsLevel& level, const std::string& what,
                        std::shared_ptr<const ServerTls>& out);

// Applies each key of `table` through the setting of that name; with `server_tls`, the
// server TLS settings too, into it.
template <typename Target, size_t count>
inline bool apply_settings(Loader& loader, const toml::table& table, std::string_view section,
                           const Setting<Target> (&settings)[count], Target& target,
                           ServerTlsLevel* server_tls = nullptr) {
    for (auto&& [key, node] : table) {
        std::string_view name = key.str();
        if (server_tls != nullptr && is_server_tls_setting(name)) {
            loader.name = name;
            loader.node = &node;
            if (!read_server_tls_setting(loader, *server_tls)) return false;
            continue;
        }
        const Setting<Target>* setting =
            std::find_if(settings, settings + count,
                         [name](const Setting<Target>& s) { return s.name == name; });
        if (setting == settings + count) {
            return loader.fail_at(
                key.source().begin.line,
                "unknown setting \"" + std::string(name) + "\" in [" + std::string(section) + "]");
        }
        loader.name = name;
        loader.node = &node;
        if (!setting->apply(loader, target)) return false;
    }
    return true;
}

// "databases.name" or "users.name", quoting the name as TOML needs when it is not a bare
// key.
inline std::string section_name(std::string_view name, std::string_view parent = "databases") {
    bool bare = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    return std::string(parent) + "." + (bare ? std::string(name) : "\"" + std::string(name) + "\"");
}

inline bool same_address(const Endpoint& a, const Endpoint& b) {
    return a.address_bytes == b.address_bytes &&
           std::memcmp(&a.address, &b.address, a.address_bytes) == 0;
}

// [clusters], [[rules]], [[rewrites]] and the checks that need the whole file
// (load_cluster.cc).
bool parse_clusters(Loader& loader, const toml::node& node, Config& config);
bool parse_rules(Loader& loader, const toml::node& node, Config& config);
bool parse_rewrites(Loader& loader, const toml::node& node, Config& config);
bool check_routing(Loader& loader, const toml::table& root, Config& config);
// [gossip] (load_gossip.cc).
bool parse_gossip(Loader& loader, const toml::node& node, Config& config);
// [dcs] (load_dcs.cc); after [gossip], which it needs.
bool parse_dcs(Loader& loader, const toml::node& node, Config& config);

// Reads a regular file whole, refusing more than bytes_max. On failure sets reason (without
// the path).
bool read_whole_file(const std::string& path, std::uintmax_t bytes_max, std::string& text,
                     std::string& reason);

}  // namespace pgplex::config
