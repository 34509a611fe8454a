// See selector.h. Selectors compile to a small postfix program (one byte per predicate or
// operator) so matching a node is a loop over a few bytes, run on every routed transaction.
#include "pgplex/config/selector.h"

#include <cctype>

#include "pgplex/base/assert.h"

namespace pgplex::config {

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

bool test(Code code, const SelectorFacts& node) {
    switch (code) {
        case IsPrimary:
            return node.primary;
        case IsReplica:
            return node.replica;
        case IsSync:
            return node.replica && node.sync;
        case IsDelayed:
            return node.delayed;
        case IsOffline:
            return node.offline;
        case IsOfflineQuery:
            return node.offline_query;
        case IsAny:
            return true;
        case Not:
        case And:
        case Or:
            break;
    }
    return false;
}

}  // namespace

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

bool Selector::matches(const SelectorFacts& node) const {
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

}  // namespace pgplex::config
