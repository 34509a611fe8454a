// [gossip]: listen, peers, key_file and the protocol's timers (config.h's Gossip). Every
// address is resolved now and kept numeric, the key file is read now (and refused when others
// may read it), so a file with a bad [gossip] is refused with its line like any other.
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "pgplex/base/limits.h"
#include "pgplex/config/loader.h"

namespace pgplex::config {

namespace {

// An appliance's key is a secret of at least this many bytes (HMAC-SHA256's block is 64;
// 32 random bytes, `openssl rand -hex 32`, give 256 bits).
constexpr size_t gossip_key_bytes_min = 32;
constexpr std::uintmax_t gossip_key_file_bytes_max = 4096;
// A site has a handful of appliances; majorities of more are slow to gather. Each has a
// place in the BackendKeyData pid of its clients (base/limits.h).
constexpr size_t gossip_peers_max = limits::appliances_max - 1;

bool gossip_address(Loader& loader, const std::string& text, Endpoint& out) {
    std::string reason;
    if (!parse_endpoint(text, out, reason))
        return loader.fail("has a bad address \"" + text + "\": " + reason);
    if (out.is_unix() || out.host == "*")
        return loader.fail("needs an IP address and port, not \"" + text + "\"");
    return true;
}

bool set_listen(Loader& loader, Gossip& gossip) {
    std::string text;
    return loader.string(text) && gossip_address(loader, text, gossip.listen);
}

bool set_peers(Loader& loader, Gossip& gossip) {
    std::vector<std::string> texts;
    if (!loader.string_list(texts)) return false;
    if (texts.size() > gossip_peers_max)
        return loader.fail("may name at most " + std::to_string(gossip_peers_max) + " peers");
    for (const std::string& text : texts) {
        Endpoint peer;
        if (!gossip_address(loader, text, peer)) return false;
        std::string name = peer.numeric();
        if (std::find(gossip.peer_names.begin(), gossip.peer_names.end(), name) !=
            gossip.peer_names.end())
            return loader.fail("names " + name + " twice");
        gossip.peer_names.push_back(name);
        gossip.peers.push_back(std::move(peer));
    }
    return true;
}

constexpr Setting<Gossip> gossip_settings[] = {
    {"listen", set_listen},
    {"peers", set_peers},
    {"key_file", [](Loader& l, Gossip& g) { return l.string(g.key_file); }},
    {"probe_interval", [](Loader& l, Gossip& g) { return l.duration(g.probe_interval_ms); }},
    {"probe_timeout", [](Loader& l, Gossip& g) { return l.duration(g.probe_timeout_ms); }},
    {"suspect_timeout", [](Loader& l, Gossip& g) { return l.duration(g.suspect_timeout_ms); }},
    {"lease", [](Loader& l, Gossip& g) { return l.duration(g.lease_ms); }},
    {"minority_reads", [](Loader& l, Gossip& g) { return l.boolean(g.minority_reads); }},
};

bool load_key(Loader& loader, const toml::table& table, Config& config) {
    Gossip& gossip = config.gossip;
    const toml::node* node = table.get("key_file");
    if (node == nullptr) return loader.fail_on(table, "[gossip] needs key_file");
    std::filesystem::path file(gossip.key_file);
    if (file.is_relative()) file = std::filesystem::path(config.path).parent_path() / file;
    gossip.key_file = file.string();
    struct stat status {};
    if (stat(gossip.key_file.c_str(), &status) == 0 && (status.st_mode & S_IRWXO) != 0)
        return loader.fail_on(
            *node, "key_file \"" + gossip.key_file + "\" may be read by others: chmod o-rwx it");
    std::string text;
    std::string reason;
    if (!read_whole_file(gossip.key_file, gossip_key_file_bytes_max, text, reason))
        return loader.fail_on(*node, "cannot read key_file \"" + gossip.key_file + "\": " + reason);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (text.size() < gossip_key_bytes_min)
        return loader.fail_on(*node, "key_file \"" + gossip.key_file + "\" holds " +
                                         std::to_string(text.size()) + " bytes; at least " +
                                         std::to_string(gossip_key_bytes_min) +
                                         " are needed (openssl rand -hex 32 makes one)");
    gossip.key.assign(text.begin(), text.end());
    return true;
}

bool check_timers(Loader& loader, const toml::table& table, const Gossip& gossip) {
    if (gossip.probe_interval_ms <= 0 || gossip.probe_timeout_ms <= 0 ||
        gossip.suspect_timeout_ms <= 0 || gossip.lease_ms <= 0)
        return loader.fail_on(table, "[gossip] timers must be longer than 0");
    if (gossip.probe_timeout_ms >= gossip.probe_interval_ms)
        return loader.fail_on(table, "[gossip] probe_timeout must be shorter than probe_interval");
    return true;
}

}  // namespace

bool parse_gossip(Loader& loader, const toml::node& node, Config& config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return loader.fail_on(node, "[gossip] must be a table");
    Gossip& gossip = config.gossip;
    if (!apply_settings(loader, *table, "gossip", gossip_settings, gossip)) return false;
    if (table->get("listen") == nullptr) return loader.fail_on(*table, "[gossip] needs listen");
    gossip.self = gossip.listen.numeric();
    if (std::find(gossip.peer_names.begin(), gossip.peer_names.end(), gossip.self) !=
        gossip.peer_names.end())
        return loader.fail_on(*table->get("peers"),
                              "peers names this appliance's own listen " + gossip.self);
    gossip.appliances = gossip.peer_names;
    gossip.appliances.push_back(gossip.self);
    std::sort(gossip.appliances.begin(), gossip.appliances.end());
    gossip.index =
        uint32_t(std::find(gossip.appliances.begin(), gossip.appliances.end(), gossip.self) -
                 gossip.appliances.begin());
    if (!check_timers(loader, *table, gossip)) return false;
    if (!load_key(loader, *table, config)) return false;
    gossip.enabled = true;
    return true;
}

}  // namespace pgplex::config
