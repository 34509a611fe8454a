// See failover_commands.h.
#include "pgplex/admin/failover_commands.h"

#include <algorithm>
#include <string>

#include "pgplex/admin/words.h"
#include "pgplex/base/assert.h"
#include "pgplex/cluster/requests.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"

namespace pgplex::admin {

namespace {

// PostgreSQL's object_not_in_prerequisite_state: the command is fine, the cluster is not ready
// for it (errcodes.txt 55000).
constexpr const char* not_in_prerequisite_state = "55000";

// The next word; a name may be quoted ('c1' or "c1"), since "host:port" looks odd bare.
std::string next_name(std::string_view& text) {
    std::string word(next_word(text));
    if (word.size() >= 2 && (word.front() == '\'' || word.front() == '"') &&
        word.back() == word.front())
        word = word.substr(1, word.size() - 2);
    return word;
}

void write_message(std::vector<uint8_t>& out, proto::Severity severity, const char* sqlstate,
                   std::string_view message, std::string_view hint = {}) {
    uint32_t capacity = uint32_t(64 + message.size() + hint.size());
    size_t at = out.size();
    out.resize(at + capacity);
    proto::Writer writer(out.data() + at, capacity);
    proto::write_error(writer, severity, sqlstate, message, {}, hint);
    PGPLEX_ASSERT(writer.ok());
    out.resize(at + writer.size());
}

CommandOutcome fail(std::vector<uint8_t>& out, const char* sqlstate, std::string_view message,
                    std::string_view hint = {}) {
    write_message(out, proto::Severity::Error, sqlstate, message, hint);
    return CommandOutcome::Failed;
}

// NoticeResponse with what happens next, then CommandComplete with the command's tag.
CommandOutcome done(std::vector<uint8_t>& out, std::string_view tag, std::string_view notice) {
    write_message(out, proto::Severity::Notice, "00000", notice);
    out.push_back(uint8_t(proto::BackendMessage::CommandComplete));
    uint32_t length = uint32_t(4 + tag.size() + 1);
    for (int i = 0; i < 4; ++i) out.push_back(uint8_t(length >> (24 - 8 * i)));
    out.insert(out.end(), tag.begin(), tag.end());
    out.push_back(0);
    return CommandOutcome::Done;
}

const cluster::NodeStatus* node_status(const cluster::ClusterStatus* cluster,
                                       std::string_view name) {
    if (cluster == nullptr) return nullptr;
    for (const cluster::NodeStatus& node : cluster->nodes)
        if (node.name == name) return &node;
    return nullptr;
}

struct Target {
    const config::Cluster* config = nullptr;
    const cluster::ClusterStatus* status = nullptr;  // null before the first checks
};

bool find_target(const Context& context, const std::string& name, Target& target) {
    for (const config::Cluster& cluster : context.config.clusters)
        if (cluster.name == name) target.config = &cluster;
    if (target.config == nullptr) return false;
    if (context.topology != nullptr) target.status = context.topology->find(name);
    return true;
}

CommandOutcome post(const Context& context, cluster::RequestKind kind, const std::string& cluster,
                    const std::string& node, std::vector<uint8_t>& out, std::string_view tag,
                    std::string_view notice) {
    if (context.requests == nullptr || !context.requests->post(kind, cluster, node))
        return fail(out, not_in_prerequisite_state,
                    "pgplex is busy with other cluster commands; try again");
    return done(out, tag, notice);
}

// UNFENCE cluster node
CommandOutcome unfence(std::string_view rest, const Context& context, std::vector<uint8_t>& out) {
    std::string cluster = next_name(rest);
    std::string node = next_name(rest);
    if (cluster.empty() || node.empty() || !next_word(rest).empty())
        return fail(out, sqlstate::syntax_error, "usage: UNFENCE cluster node");
    Target target;
    if (!find_target(context, cluster, target) || target.config->find_node(node) == nullptr)
        return fail(out, sqlstate::syntax_error, "no node " + node + " in cluster " + cluster);
    const cluster::NodeStatus* status = node_status(target.status, node);
    if (status == nullptr || !status->fenced)
        return fail(out, not_in_prerequisite_state, node + " is not fenced");
    const cluster::ClusterStatus& seen = *target.status;
    if (status->role == cluster::Role::Primary && seen.primary >= 0) {
        const std::string& primary = seen.nodes[size_t(seen.primary)].name;
        return fail(out, not_in_prerequisite_state,
                    node + " still says it is primary while " + primary + " is",
                    "Make it a replica of " + primary +
                        " first (pg_rewind --source-server, then standby.signal and "
                        "primary_conninfo), start it, then UNFENCE it.");
    }
    return post(context, cluster::RequestKind::Unfence, cluster, node, out, "UNFENCE",
                "unfencing " + node + ": it carries services again once healthy");
}

// Whether `node` could be promoted by a switchover, as far as the snapshot tells.
std::string unfit(const cluster::NodeStatus& node) {
    if (!node.healthy) return "down";
    if (node.fenced) return "fenced";
    if (node.role != cluster::Role::Replica) return "not a replica";
    if (node.options.offline) return "offline";
    if (node.delayed()) return "delayed";
    if (node.replay_paused) return "paused";
    return {};
}

// SWITCHOVER cluster [TO node]
CommandOutcome switchover(std::string_view rest, const Context& context,
                          std::vector<uint8_t>& out) {
    std::string cluster = next_name(rest);
    std::string_view to = next_word(rest);
    std::string node = next_name(rest);
    if (cluster.empty() || (!to.empty() && (!same_word(to, "to") || node.empty())) ||
        !next_word(rest).empty())
        return fail(out, sqlstate::syntax_error, "usage: SWITCHOVER cluster [TO node]");
    Target target;
    if (!find_target(context, cluster, target))
        return fail(out, sqlstate::syntax_error, "no cluster " + cluster);
    if (target.config->patroni_port != 0)
        return fail(out, not_in_prerequisite_state, "Patroni manages cluster " + cluster,
                    "Run patronictl switchover; pgplex follows the new primary.");
    const cluster::ClusterStatus* seen = target.status;
    if (seen == nullptr || seen->primary < 0)
        return fail(out, not_in_prerequisite_state, "cluster " + cluster + " has no primary");
    if (!seen->failover_state.empty())
        return fail(out, not_in_prerequisite_state,
                    "cluster " + cluster + ": " + seen->failover_state + " is under way");
    if (!node.empty()) {
        const cluster::NodeStatus* status = node_status(seen, node);
        if (status == nullptr)
            return fail(out, sqlstate::syntax_error, "no node " + node + " in cluster " + cluster);
        std::string why = unfit(*status);
        if (!why.empty())
            return fail(out, not_in_prerequisite_state, node + " cannot be promoted: " + why);
    }
    return post(context, cluster::RequestKind::Switchover, cluster, node, out, "SWITCHOVER",
                "switchover of " + cluster + " started: writes wait while " +
                    seen->nodes[size_t(seen->primary)].name +
                    " drains; follow it in SHOW CLUSTERS and the log");
}

}  // namespace

CommandOutcome answer_failover_command(std::string_view command, const Context& context,
                                       std::vector<uint8_t>& out) {
    std::string_view rest = command;
    std::string_view verb = next_word(rest);
    if (same_word(verb, "unfence")) return unfence(rest, context, out);
    if (same_word(verb, "switchover")) return switchover(rest, context, out);
    return CommandOutcome::NotMine;
}

}  // namespace pgplex::admin
