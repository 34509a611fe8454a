// [dcs]: the etcd that holds the appliances' decisions (config.h's Dcs). Everything is checked
// now (endpoint syntax, that the TLS files and the password file can be read, the password
// file's mode), so a file with a bad [dcs] is refused with its line like any other, and the
// etcd client (dcs/etcd.h) never meets a setting it has to second-guess.
#include <sys/stat.h>

#include <filesystem>

#include "pgplex/config/loader.h"

namespace pgplex::config {

namespace {

// A site runs one etcd cluster of a few members (3 or 5); more endpoints are a mistake.
constexpr size_t dcs_endpoints_max = 16;
constexpr size_t dcs_prefix_bytes_max = 128;
constexpr std::uintmax_t dcs_password_file_bytes_max = 4096;
// etcd refuses leases shorter than its minimum (1.5 x its election timeout, 2 s by default,
// rounded up); an hour is far beyond any failover budget.
constexpr int64_t dcs_ttl_s_min = 2;
constexpr int64_t dcs_ttl_s_max = 3600;

// "http://host:port" or "https://host:port", nothing after the port.
bool endpoint_ok(const std::string& text, std::string& reason) {
    std::string_view rest = text;
    if (rest.starts_with("http://"))
        rest.remove_prefix(7);
    else if (rest.starts_with("https://"))
        rest.remove_prefix(8);
    else
        return reason = "must start with http:// or https://", false;
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        return reason = "needs host:port after the scheme", false;
    std::string_view host = rest.substr(0, colon);
    std::string_view port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return reason = "needs a port number after the host (and no path)", false;
    int number = std::stoi(std::string(port));
    if (number < 1 || number > 65535) return reason = "has a port outside 1-65535", false;
    bool printable = std::all_of(host.begin(), host.end(), [](char c) {
        return c > ' ' && c < 127 && c != '/' && c != '@' && c != '?' && c != '#';
    });
    if (!printable) return reason = "has a bad host", false;
    return true;
}

bool set_etcd(Loader& loader, Dcs& dcs) {
    std::vector<std::string> texts;
    if (!loader.string_list(texts)) return false;
    if (texts.empty()) return loader.fail("needs at least one endpoint");
    if (texts.size() > dcs_endpoints_max)
        return loader.fail("may name at most " + std::to_string(dcs_endpoints_max) + " endpoints");
    for (std::string& text : texts) {
        std::string written = text;
        while (text.ends_with('/')) text.pop_back();
        std::string reason;
        if (!endpoint_ok(text, reason))
            return loader.fail("endpoint \"" + written + "\" " + reason);
    }
    dcs.endpoints = std::move(texts);
    return true;
}

bool set_prefix(Loader& loader, Dcs& dcs) {
    std::string text;
    if (!loader.string(text)) return false;
    bool printable =
        std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < 127; });
    if (!text.starts_with('/') || !printable || text.size() > dcs_prefix_bytes_max)
        return loader.fail("must start with / and hold at most " +
                           std::to_string(dcs_prefix_bytes_max) + " printable characters");
    while (text.size() > 1 && text.ends_with('/')) text.pop_back();
    if (text == "/") return loader.fail("must name a directory below /, as /pgplex does");
    dcs.prefix = std::move(text);
    return true;
}

constexpr Setting<Dcs> dcs_settings[] = {
    {"etcd", set_etcd},
    {"cacert", [](Loader& l, Dcs& d) { return l.string(d.cacert); }},
    {"cert", [](Loader& l, Dcs& d) { return l.string(d.cert); }},
    {"key", [](Loader& l, Dcs& d) { return l.string(d.key); }},
    {"username", [](Loader& l, Dcs& d) { return l.string(d.username); }},
    {"password", [](Loader& l, Dcs& d) { return l.string(d.password); }},
    {"password_file", [](Loader&, Dcs&) { return true; }},  // read by load_password()
    {"prefix", set_prefix},
    {"ttl", [](Loader& l, Dcs& d) { return l.integer(dcs_ttl_s_min, dcs_ttl_s_max, d.ttl_s); }},
};

std::string beside(const Config& config, const std::string& path) {
    std::filesystem::path file(path);
    if (file.is_relative()) file = std::filesystem::path(config.path).parent_path() / file;
    return file.string();
}

// cacert, cert and key: resolved beside the config file and readable now.
bool load_tls_files(Loader& loader, const toml::table& table, Config& config) {
    Dcs& dcs = config.dcs;
    for (auto [name, path] : {std::pair{"cacert", &dcs.cacert}, std::pair{"cert", &dcs.cert},
                              std::pair{"key", &dcs.key}}) {
        if (path->empty()) continue;
        *path = beside(config, *path);
        std::string text;
        std::string reason;
        if (!read_whole_file(*path, 1 << 20, text, reason))
            return loader.fail_on(*table.get(name), std::string("cannot read ") + name + " \"" +
                                                        *path + "\": " + reason);
    }
    if (dcs.cert.empty() != dcs.key.empty())
        return loader.fail_on(table, "[dcs] cert and key go together: set both or neither");
    return true;
}

bool load_password(Loader& loader, const toml::table& table, Config& config) {
    Dcs& dcs = config.dcs;
    const toml::node* file_node = table.get("password_file");
    if (file_node != nullptr && table.get("password") != nullptr)
        return loader.fail_on(*file_node, "[dcs] takes password or password_file, not both");
    if (file_node != nullptr) {
        std::optional<std::string> path = file_node->value<std::string>();
        if (!path) return loader.fail_on(*file_node, "password_file must be a string");
        std::string file = beside(config, *path);
        struct stat status {};
        if (stat(file.c_str(), &status) == 0 && (status.st_mode & S_IRWXO) != 0)
            return loader.fail_on(
                *file_node, "password_file \"" + file + "\" may be read by others: chmod o-rwx it");
        std::string reason;
        if (!read_whole_file(file, dcs_password_file_bytes_max, dcs.password, reason))
            return loader.fail_on(*file_node,
                                  "cannot read password_file \"" + file + "\": " + reason);
        while (!dcs.password.empty() &&
               (dcs.password.back() == '\n' || dcs.password.back() == '\r'))
            dcs.password.pop_back();
    }
    if (!dcs.username.empty() && dcs.password.empty())
        return loader.fail_on(table, "[dcs] username needs password or password_file");
    if (dcs.username.empty() && !dcs.password.empty())
        return loader.fail_on(table, "[dcs] password needs username");
    return true;
}

}  // namespace

bool parse_dcs(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "[dcs] must be a table");
    Dcs& dcs = config.dcs;
    if (!apply_settings(loader, *table, "dcs", dcs_settings, dcs)) return false;
    if (table->get("etcd") == nullptr)
        return loader.fail_on(*table, "[dcs] needs etcd = [\"http://host:2379\", ...]");
    if (!config.gossip.enabled)
        return loader.fail_on(*table,
                              "[dcs] needs [gossip]: the appliances still find each other and "
                              "share what they see of the nodes by gossip");
    if (!load_tls_files(loader, *table, config) || !load_password(loader, *table, config))
        return false;
    dcs.enabled = true;
    return true;
}

}  // namespace pgplex::config
