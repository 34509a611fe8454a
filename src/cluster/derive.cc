// See derive.h. Everything here is a function of its arguments: the monitor thread owns the
// state, the clock and the connections.
#include "pgplex/cluster/derive.h"

#include <algorithm>
#include <cstdio>

#include "pgplex/base/log.h"

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

// --- a node's checks ----------------------------------------------------------------------

namespace {

// Lag in time: the age of the last replayed transaction overstates it when writes are rare
// (a check that lands mid-replay would read seconds), so it is capped by the time since a
// check last found the replica caught up.
int64_t replay_lag_ms(NodeState& node, const Reading& reading, int64_t now) {
    if (reading.receive_lsn == reading.replay_lsn) {
        node.caught_up_us = now;
        return 0;
    }
    if (node.caught_up_us == 0) return reading.lag_ms;
    int64_t since_caught_up = (now - node.caught_up_us) / 1000;
    return reading.lag_ms < 0 ? since_caught_up : std::min(reading.lag_ms, since_caught_up);
}

}  // namespace

void apply_reading(NodeState& node, const Reading& reading, int64_t now) {
    NodeStatus& status = node.status;
    status.role = reading.recovery ? Role::Replica : Role::Primary;
    status.current_lsn = reading.recovery ? 0 : reading.current_lsn;
    status.receive_lsn = reading.recovery ? reading.receive_lsn : reading.current_lsn;
    status.replay_lsn = reading.recovery ? reading.replay_lsn : reading.current_lsn;
    status.lag_ms = reading.recovery ? replay_lag_ms(node, reading, now) : 0;
    status.apply_delay_ms = reading.apply_delay_ms;
    status.replay_paused = reading.replay_paused;
    status.max_connections = int(reading.max_connections);
    status.free_slots = int(std::max<int64_t>(reading.free_slots, 0));
    status.application_name = reading.application_name;
    node.metrics = reading.has_metrics;
    node.failover_functions = reading.has_failover;
    status.load1 = reading.load1;
    status.cpus = int(reading.cpus);
    node.sync_standbys = reading.recovery ? std::vector<std::string>() : reading.sync_standbys;
}

namespace {

void log_node_change(const config::Cluster& cluster, const NodeState& node, Before before) {
    const char* cluster_name = cluster.name.c_str();
    const char* name = node.config.name.c_str();
    const NodeStatus& status = node.status;
    if (status.role != before.role && before.role != Role::Unknown)
        log_info("cluster %s: node %s is now %s (was %s)", cluster_name, name,
                 to_string(status.role), to_string(before.role));
    if (node.health.up && !before.health.up)
        log_info("cluster %s: node %s is up (%s)", cluster_name, name, to_string(status.role));
    if (!node.health.up && (before.health.up || !before.health.known))
        log_warning("cluster %s: node %s is down: %s", cluster_name, name,
                    status.last_error.c_str());
}

}  // namespace

bool record_check(const config::Cluster& cluster, NodeState& node, Before before, bool ok,
                  std::string error, int64_t started_us, int64_t now) {
    node.status.checked_ms = now / 1000;
    node.status.last_error = ok ? std::string() : std::move(error);
    if (ok) node.status.check_us = now - started_us;
    if (node.health.observe(ok, cluster.rise, cluster.fall) && node.health.up)
        node.status.up_since_ms = now / 1000;
    node.status.healthy = node.health.up;
    if (node.status.role == Role::Primary && before.role != Role::Primary)
        node.became_primary_us = now;
    log_node_change(cluster, node, before);
    return node.health.up != before.health.up || node.status.role != before.role;
}

// --- the cluster: primary, epoch, lag, sync ---------------------------------------------

namespace {

// The healthy node that says it is primary. With two (a split brain, or a failover caught
// half way), the current one stays while it stays healthy and primary; else the one that
// turned primary last.
int choose_primary(const config::Cluster& settings, Derivation& cluster,
                   const std::vector<NodeState*>& nodes) {
    int claims = 0;
    int latest = -1;
    for (int i = 0; i < int(nodes.size()); ++i) {
        const NodeState& node = *nodes[size_t(i)];
        // A fenced node may have diverged: whatever it says, it is never the primary again.
        if (!node.status.healthy || node.status.role != Role::Primary || node.status.fenced)
            continue;
        ++claims;
        if (latest < 0 || node.became_primary_us > nodes[size_t(latest)]->became_primary_us)
            latest = i;
    }
    int current = cluster.primary;
    bool keep = current >= 0 && nodes[size_t(current)]->status.healthy &&
                nodes[size_t(current)]->status.role == Role::Primary &&
                !nodes[size_t(current)]->status.fenced;
    int chosen = keep ? current : latest;
    if (claims > 1 && !cluster.split_warned)
        log_warning("cluster %s: %d healthy nodes say they are primary; %s stays primary",
                    settings.name.c_str(), claims, nodes[size_t(chosen)]->config.name.c_str());
    cluster.split_warned = claims > 1;
    return chosen;
}

void fill_lag_and_sync(const config::Cluster& settings, const Derivation& cluster,
                       const std::vector<NodeState*>& nodes) {
    bool patroni = settings.patroni_port != 0;
    const NodeState* primary = cluster.primary >= 0 ? nodes[size_t(cluster.primary)] : nullptr;
    for (NodeState* node : nodes) {
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

}  // namespace

bool derive(const config::Cluster& settings, Derivation& cluster,
            const std::vector<NodeState*>& nodes) {
    int chosen = choose_primary(settings, cluster, nodes);
    bool changed = chosen != cluster.primary;
    cluster.primary = chosen;
    if (changed && chosen >= 0) {
        const std::string& name = nodes[size_t(chosen)]->config.name;
        if (name != cluster.last_primary) {
            ++cluster.epoch;
            // The epoch moved: whoever was primary before may come back with writes the new
            // one never saw. Not under Patroni: it holds the one leader key, rewinds the old
            // primary and rejoins it itself, and only the key's holder is ever primary here
            // (apply_patroni); a fence would keep pgplex from following a switchover back.
            if (!cluster.last_primary.empty() && settings.patroni_port == 0)
                fence(settings, nodes, cluster.last_primary, "another node became primary");
        }
        cluster.last_primary = name;
        log_info("cluster %s: primary is %s (epoch %llu)", settings.name.c_str(), name.c_str(),
                 static_cast<unsigned long long>(cluster.epoch));
    } else if (changed) {
        log_warning("cluster %s: no healthy primary", settings.name.c_str());
    }
    if (cluster.primary >= 0)
        cluster.primary_lsn = nodes[size_t(cluster.primary)]->status.current_lsn;
    fill_lag_and_sync(settings, cluster, nodes);
    return changed;
}

// --- failover = "promote" --------------------------------------------------------------------

namespace {

const NodeState* find_node(const std::vector<NodeState*>& nodes, std::string_view name) {
    for (const NodeState* node : nodes)
        if (node->config.name == name) return node;
    return nullptr;
}

}  // namespace

const char* promotion_unfit(const NodeState& node) {
    const NodeStatus& status = node.status;
    if (!status.healthy) return "down";
    if (status.role != Role::Replica) return "not a replica";
    if (status.fenced) return "fenced";
    if (status.options.offline) return "offline";
    if (status.apply_delay_ms > 0) return "delayed";
    if (status.replay_paused) return "replay paused";
    return nullptr;
}

bool promotion_due(const config::Cluster& settings, const Derivation& cluster,
                   const std::vector<NodeState*>& nodes) {
    if (settings.failover != config::Failover::Promote) return false;
    if (cluster.primary >= 0 || cluster.last_primary.empty()) return false;
    const NodeState* old = find_node(nodes, cluster.last_primary);
    // A node removed from the config is not coming back: its replicas still need a primary.
    if (old != nullptr && (old->health.up || !old->health.known)) return false;
    for (const NodeState* node : nodes) {
        if (node->status.healthy && node->status.role == Role::Primary && !node->status.fenced)
            return false;
    }
    return true;
}

int choose_candidate(const config::Cluster& settings, const Derivation& cluster,
                     const std::vector<NodeState*>& nodes, std::string& why_not, bool lag_limit) {
    int best = -1;
    why_not.clear();
    for (int i = 0; i < int(nodes.size()); ++i) {
        const NodeState& node = *nodes[size_t(i)];
        const char* reason = promotion_unfit(node);
        if (reason != nullptr) {
            if (node.config.name != cluster.last_primary)
                why_not += (why_not.empty() ? "" : ", ") + node.config.name + " " + reason;
            continue;
        }
        if (best < 0 || node.status.replay_lsn > nodes[size_t(best)]->status.replay_lsn) best = i;
    }
    if (best < 0) {
        if (why_not.empty()) why_not = "no replica";
        return -1;
    }
    uint64_t replayed = nodes[size_t(best)]->status.replay_lsn;
    uint64_t behind = cluster.primary_lsn > replayed ? cluster.primary_lsn - replayed : 0;
    if (lag_limit && int64_t(behind) > settings.max_failover_lag_bytes) {
        why_not = nodes[size_t(best)]->config.name + ", the most advanced replica, is " +
                  std::to_string(behind) + " bytes behind the old primary (max_failover_lag " +
                  std::to_string(settings.max_failover_lag_bytes) + ")";
        return -1;
    }
    return best;
}

bool fence(const config::Cluster& settings, const std::vector<NodeState*>& nodes,
           std::string_view name, std::string_view why) {
    for (NodeState* node : nodes) {
        if (node->config.name != name || node->status.fenced) continue;
        node->status.fenced = true;
        node->fence_applied = false;
        log_warning(
            "cluster %s: node %s is fenced (%.*s): nothing is routed to it until an "
            "operator runs UNFENCE %s %s",
            settings.name.c_str(), node->config.name.c_str(), int(why.size()), why.data(),
            settings.name.c_str(), node->config.name.c_str());
        return true;
    }
    return false;
}

}  // namespace pgplex::cluster
