// See topology.h. Selectors compile to a small postfix program (one byte per predicate or
// operator) so matching a node is a loop over a few bytes, run on every routed transaction.
#include "pgplex/cluster/topology.h"

#include <cctype>

#include "pgplex/base/assert.h"

namespace pgplex::cluster {

namespace {

enum Code : uint8_t {
    IsPrimary,
    IsReplica,
    IsSync,
    IsDelayed,
    IsOffline,
    IsOfflineQuery,
    IsAny,
    Not,
    And,
    Or,
};

// How deep unary operators and parentheses may nest. Each level can leave at most two values
// waiting on the evaluation stack (the left operands of an unfinished || and &&, as in
// "primary || replica && (...)"), and the innermost level pushes one more.
constexpr int nesting_max = 64;
constexpr size_t values_max = 2 * nesting_max + 1;

struct Predicate {
    std::string_view name;
    Code code;
};

constexpr Predicate predicates[] = {
    {"primary", IsPrimary}, {"replica", IsReplica}, {"sync", IsSync},
    {"delayed", IsDelayed}, {"offline", IsOffline}, {"offline_query", IsOfflineQuery},
    {"any", IsAny},
};

// Recursive descent: or := and ('||' and)* ; and := unary ('&&' unary)* ;
// unary := '!' unary | '(' or ')' | predicate.
struct Compiler {
    std::string_view text;
    size_t at = 0;
    std::vector<uint8_t>& code;
    std::string& reason;
    int depth = 0;

    void skip_space() {
        while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
    }
    bool take(std::string_view token) {
        skip_space();
        if (text.substr(at, token.size()) != token) return false;
        at += token.size();
        return true;
    }
    bool fail(const std::string& why) {
        if (reason.empty()) reason = why + " at offset " + std::to_string(at);
        return false;
    }
    bool predicate() {
        skip_space();
        size_t start = at;
        while (at < text.size() &&
               (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '_'))
            ++at;
        std::string_view word = text.substr(start, at - start);
        if (word.empty()) return fail("expected a predicate");
        for (const Predicate& known : predicates)
            if (known.name == word) {
                code.push_back(known.code);
                return true;
            }
        at = start;
        return fail("unknown predicate \"" + std::string(word) +
                    "\" (primary, replica, sync, delayed, offline, offline_query, any)");
    }
    bool unary() {
        if (++depth > nesting_max) return fail("too deeply nested");
        bool ok = false;
        if (take("!")) {
            ok = unary();
            if (ok) code.push_back(Not);
        } else if (take("(")) {
            ok = disjunction() && (take(")") || fail("expected )"));
        } else {
            ok = predicate();
        }
        --depth;
        return ok;
    }
    bool conjunction() {
        if (!unary()) return false;
        while (take("&&")) {
            if (!unary()) return false;
            code.push_back(And);
        }
        return true;
    }
    bool disjunction() {
        if (!conjunction()) return false;
        while (take("||")) {
            if (!conjunction()) return false;
            code.push_back(Or);
        }
        return true;
    }
};

bool test(Code code, const NodeStatus& node) {
    switch (code) {
        case IsPrimary:
            return node.role == Role::Primary;
        case IsReplica:
            return node.role == Role::Replica;
        case IsSync:
            return node.role == Role::Replica && node.sync;
        case IsDelayed:
            return node.delayed();
        case IsOffline:
            return node.options.offline;
        case IsOfflineQuery:
            return node.options.offline_query;
        case IsAny:
            return true;
        case Not:
        case And:
        case Or:
            break;
    }
    return false;
}

bool within(const Limits& limits, const NodeStatus& node) {
    if (node.role == Role::Primary) return true;
    if (limits.max_lag_bytes >= 0 &&
        (node.lag_bytes < 0 || node.lag_bytes > limits.max_lag_bytes))
        return false;
    if (limits.max_lag_ms >= 0 && (node.lag_ms < 0 || node.lag_ms > limits.max_lag_ms))
        return false;
    return node.replay_lsn >= limits.min_replay_lsn;
}

void collect(const Selector& selector, const Limits& limits, const ClusterStatus& cluster,
             std::vector<int>& out) {
    if (selector.empty()) return;
    for (size_t i = 0; i < cluster.nodes.size(); ++i) {
        const NodeStatus& node = cluster.nodes[i];
        if (node.healthy && node.role != Role::Unknown && selector.matches(node) &&
            within(limits, node))
            out.push_back(int(i));
    }
}

}  // namespace

const char* to_string(Role role) {
    switch (role) {
        case Role::Unknown:
            return "unknown";
        case Role::Primary:
            return "primary";
        case Role::Replica:
            return "replica";
    }
    return "unknown";
}

const ClusterStatus* Topology::find(std::string_view name) const {
    for (const ClusterStatus& cluster : clusters)
        if (cluster.name == name) return &cluster;
    return nullptr;
}

bool Selector::compile(std::string_view text, Selector& out, std::string& reason) {
    out.code_.clear();
    reason.clear();
    Compiler compiler{text, 0, out.code_, reason};
    compiler.skip_space();
    if (compiler.at == text.size()) return true;  // empty: selects nothing
    bool ok = compiler.disjunction();
    compiler.skip_space();
    if (ok && compiler.at != text.size()) ok = compiler.fail("unexpected text");
    if (!ok) out.code_.clear();  // never half a program: a failed selector selects nothing
    return ok;
}

bool Selector::matches(const NodeStatus& node) const {
    bool stack[values_max];
    size_t depth = 0;
    for (uint8_t byte : code_) {
        Code code = static_cast<Code>(byte);
        if (code == Not) {
            stack[depth - 1] = !stack[depth - 1];
        } else if (code == And || code == Or) {
            bool right = stack[--depth];
            stack[depth - 1] = code == And ? stack[depth - 1] && right : stack[depth - 1] || right;
        } else {
            PGPLEX_ASSERT(depth < values_max);  // compile() kept the nesting within bounds
            stack[depth++] = test(code, node);
        }
    }
    return depth == 1 && stack[0];
}

Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster, const Limits& limits) {
    Carriers out;
    collect(rule.selector, limits, cluster, out.nodes);
    if (!out.nodes.empty()) return out;
    collect(rule.backup, limits, cluster, out.nodes);
    out.backup = !out.nodes.empty();
    return out;
}

Carriers carriers(const ServiceRule& rule, const ClusterStatus& cluster) {
    return carriers(rule, cluster, Limits{rule.max_lag_ms, rule.max_lag_bytes, 0});
}

}  // namespace pgplex::cluster
