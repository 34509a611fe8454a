// See cluster/saved_state.h.
#include "pgplex/cluster/saved_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "pgplex/base/log.h"
#include "pgplex/base/unique_fd.h"

namespace pgplex::cluster {

namespace {

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04x",
                          unsigned(static_cast<unsigned char>(c)));
            out += escape;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

bool read_cluster(std::string_view name, const toml::table& table, SavedCluster& cluster,
                  std::string& reason) {
    cluster.name = std::string(name);
    const toml::node* epoch = table.get("epoch");
    const toml::node* primary = table.get("primary");
    const toml::node* fenced = table.get("fenced");
    if (epoch == nullptr || !epoch->is_integer() || epoch->as_integer()->get() < 0 ||
        (primary != nullptr && !primary->is_string()) ||
        (fenced != nullptr && !fenced->is_array())) {
        reason = "cluster \"" + cluster.name + "\": epoch (an integer >= 0), primary (a string) " +
                 "and fenced (an array of strings) expected";
        return false;
    }
    cluster.epoch = uint64_t(epoch->as_integer()->get());
    if (primary != nullptr) cluster.primary = primary->as_string()->get();
    if (fenced != nullptr) {
        for (const toml::node& node : *fenced->as_array()) {
            if (!node.is_string()) {
                reason = "cluster \"" + cluster.name + "\": fenced holds a non-string";
                return false;
            }
            cluster.fenced.push_back(node.as_string()->get());
        }
    }
    std::sort(cluster.fenced.begin(), cluster.fenced.end());
    return true;
}

}  // namespace

std::string format_saved_state(const std::vector<SavedCluster>& clusters) {
    std::string text =
        "# Written by pgplex (state_file in [pgplex]): each cluster's epoch, the node it last\n"
        "# took for primary, and the nodes it fenced. Edit only while pgplex is stopped;\n"
        "# UNFENCE in the pgplex database is the way to lift a fence.\n";
    for (const SavedCluster& cluster : clusters) {
        text += "\n[clusters." + quoted(cluster.name) + "]\n";
        text += "epoch = " + std::to_string(cluster.epoch) + "\n";
        if (!cluster.primary.empty()) text += "primary = " + quoted(cluster.primary) + "\n";
        text += "fenced = [";
        for (size_t i = 0; i < cluster.fenced.size(); ++i)
            text += (i == 0 ? "" : ", ") + quoted(cluster.fenced[i]);
        text += "]\n";
    }
    return text;
}

bool parse_saved_state(std::string_view text, std::vector<SavedCluster>& out, std::string& reason) {
    out.clear();
    toml::table root;
    try {
        root = toml::parse(text);
    } catch (const toml::parse_error& error) {
        reason = "line " + std::to_string(error.source().begin.line) + ": " +
                 std::string(error.description());
        return false;
    }
    const toml::node* clusters = root.get("clusters");
    if (clusters == nullptr) return true;
    if (!clusters->is_table()) {
        reason = "clusters is not a table";
        return false;
    }
    for (const auto& [name, node] : *clusters->as_table()) {
        SavedCluster cluster;
        if (!node.is_table() || !read_cluster(name.str(), *node.as_table(), cluster, reason)) {
            if (reason.empty()) reason = "clusters." + std::string(name.str()) + " is not a table";
            out.clear();
            return false;
        }
        out.push_back(std::move(cluster));
    }
    return true;
}

bool read_saved_state(const std::string& path, std::vector<SavedCluster>& out,
                      std::string& reason) {
    out.clear();
    base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        if (errno == ENOENT) return true;
        reason = std::strerror(errno);
        return false;
    }
    std::string text;
    char chunk[4096];
    for (;;) {
        ssize_t got = ::read(fd.get(), chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            reason = std::strerror(errno);
            return false;
        }
        if (got == 0) break;
        text.append(chunk, size_t(got));
        if (text.size() > (1u << 20)) {
            reason = "larger than 1 MB";
            return false;
        }
    }
    return parse_saved_state(text, out, reason);
}

bool write_saved_state(const std::string& path, const std::vector<SavedCluster>& clusters,
                       std::string& reason) {
    std::string text = format_saved_state(clusters);
    std::string temporary = path + ".new";
    base::UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (!fd.valid()) {
        reason = temporary + ": " + std::strerror(errno);
        return false;
    }
    size_t written = 0;
    while (written < text.size()) {
        ssize_t put = ::write(fd.get(), text.data() + written, text.size() - written);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) {
            reason = temporary + ": " + std::strerror(errno);
            return false;
        }
        written += size_t(put);
    }
    if (::fsync(fd.get()) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
        reason = path + ": " + std::strerror(errno);
        ::unlink(temporary.c_str());
        return false;
    }
    return true;
}

SavedCluster saved_of(const std::string& name, const Derivation& cluster,
                      const std::vector<NodeState*>& nodes) {
    SavedCluster saved;
    saved.name = name;
    saved.epoch = cluster.epoch;
    saved.primary = cluster.last_primary;
    for (const NodeState* node : nodes)
        if (node->status.fenced) saved.fenced.push_back(node->config.name);
    std::sort(saved.fenced.begin(), saved.fenced.end());
    return saved;
}

void restore(const SavedCluster& saved, Derivation& cluster, const std::vector<NodeState*>& nodes) {
    cluster.epoch = std::max(cluster.epoch, saved.epoch);
    if (cluster.last_primary.empty()) cluster.last_primary = saved.primary;
    for (NodeState* node : nodes) {
        if (node->status.fenced ||
            !std::binary_search(saved.fenced.begin(), saved.fenced.end(), node->config.name))
            continue;
        node->status.fenced = true;
        node->fence_applied = false;
        log_warning(
            "cluster %s: node %s is still fenced (state_file): nothing is routed to it until an "
            "operator runs UNFENCE %s %s",
            saved.name.c_str(), node->config.name.c_str(), saved.name.c_str(),
            node->config.name.c_str());
    }
}

}  // namespace pgplex::cluster
