// libFuzzer target for service selectors (cluster/topology.h): any text either compiles or
// gives a reason with an offset and leaves an empty selector, never a crash. A compiled
// selector must agree, on every kind of node, with a direct recursive evaluation of the same
// text, and compiling the same text twice must give the same answers.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/cluster/topology.h"

using pgplex::cluster::NodeStatus;
using pgplex::cluster::Role;
using pgplex::cluster::Selector;

namespace {

// Every combination of the facts a predicate reads.
std::vector<NodeStatus> make_nodes() {
    std::vector<NodeStatus> nodes;
    for (Role role : {Role::Unknown, Role::Primary, Role::Replica})
        for (int flags = 0; flags < 16; ++flags) {
            NodeStatus node;
            node.role = role;
            node.sync = flags & 1;
            node.apply_delay_ms = flags & 2 ? 1'000 : 0;
            node.options.offline = flags & 4;
            node.options.offline_query = flags & 8;
            nodes.push_back(node);
        }
    return nodes;
}

// The grammar of topology.h evaluated straight from the text, for text that compiled.
struct Reference {
    std::string_view text;
    const NodeStatus& node;
    size_t at = 0;

    void skip_space() {
        while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
    }
    bool take(std::string_view token) {
        skip_space();
        if (text.substr(at, token.size()) != token) return false;
        at += token.size();
        return true;
    }
    bool predicate() {
        skip_space();
        size_t start = at;
        while (at < text.size() &&
               (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '_'))
            ++at;
        std::string_view word = text.substr(start, at - start);
        bool replica = node.role == Role::Replica;
        if (word == "primary") return node.role == Role::Primary;
        if (word == "replica") return replica;
        if (word == "sync") return replica && node.sync;
        if (word == "delayed") return replica && node.apply_delay_ms > 0;
        if (word == "offline") return node.options.offline;
        if (word == "offline_query") return node.options.offline_query;
        if (word == "any") return true;
        std::abort();  // compile() accepted a word the grammar does not have
    }
    bool unary() {
        if (take("!")) return !unary();
        if (!take("(")) return predicate();
        bool value = disjunction();
        if (!take(")")) std::abort();
        return value;
    }
    bool conjunction() {
        bool value = unary();
        while (take("&&")) value = unary() && value;  // both sides always read
        return value;
    }
    bool disjunction() {
        bool value = conjunction();
        while (take("||")) value = conjunction() || value;
        return value;
    }
};

bool reference(std::string_view text, const NodeStatus& node) {
    Reference evaluator{text, node};
    evaluator.skip_space();
    if (evaluator.at == text.size()) return false;  // empty: selects nothing
    bool value = evaluator.disjunction();
    evaluator.skip_space();
    if (evaluator.at != text.size()) std::abort();
    return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<NodeStatus> nodes = make_nodes();
    std::string_view text(reinterpret_cast<const char*>(data), size);
    Selector first, second;
    std::string reason, second_reason;
    bool ok = Selector::compile(text, first, reason);
    if (ok != Selector::compile(text, second, second_reason)) std::abort();
    if (reason != second_reason || first.empty() != second.empty()) std::abort();
    if (!ok) {
        if (reason.find(" at offset ") == std::string::npos || !first.empty()) std::abort();
        for (const NodeStatus& node : nodes)
            if (pgplex::cluster::matches(first, node)) std::abort();
        return 0;
    }
    if (!reason.empty()) std::abort();
    for (const NodeStatus& node : nodes) {
        bool value = pgplex::cluster::matches(first, node);
        if (value != pgplex::cluster::matches(second, node) || value != reference(text, node))
            std::abort();
    }
    return 0;
}
