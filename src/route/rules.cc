// [[rules]] and [[rewrites]] (route.h, level 3): PCRE2 patterns compiled once per config
// snapshot, matched on the statement's bytes (no UTF mode: statements are matched as the
// client sent them, whatever their encoding). Every PCRE2 object has an owner here, and a
// match limit keeps a pattern that backtracks catastrophically from holding a worker.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgplex/base/assert.h"
#include "pgplex/base/limits.h"
#include "pgplex/route/route.h"

namespace pgplex::route {

namespace {

struct CodeFree {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataFree {
    void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
struct MatchContextFree {
    void operator()(pcre2_match_context* context) const { pcre2_match_context_free(context); }
};
struct JitStackFree {
    void operator()(pcre2_jit_stack* stack) const { pcre2_jit_stack_free(stack); }
};

using Code = std::unique_ptr<pcre2_code, CodeFree>;
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataFree>;

// One compiled [[rules]] or [[rewrites]] entry.
struct Compiled {
    Code code;
    MatchData match_data;  // sized for the pattern's groups, so $N substitutions work
    std::string user, database, application_name;  // "" matches any
    Target route = Target::None;                   // rules
    std::string node;                              // rules, route == Node
    std::string replacement;                       // rewrites

    bool applies_to(const Who& who) const {
        return (user.empty() || user == who.user) &&
               (database.empty() || database == who.database) &&
               (application_name.empty() || application_name == who.application_name);
    }
};

// PCRE2 refuses a null subject even when it is empty.
PCRE2_SPTR subject_of(std::string_view text) {
    static const char empty[] = "";
    return reinterpret_cast<PCRE2_SPTR>(text.data() != nullptr ? text.data() : empty);
}

// "rules[N] (line L): reason at offset O", naming the entry as the TOML array does.
std::string compile_error(const char* table, size_t index, uint32_t line, int code, size_t offset) {
    PCRE2_UCHAR reason[256];
    if (pcre2_get_error_message(code, reason, sizeof reason) < 0) reason[0] = 0;
    return std::string(table) + "[" + std::to_string(index) + "] (line " + std::to_string(line) +
           "): " + reinterpret_cast<const char*>(reason) + " at offset " + std::to_string(offset) +
           " of the pattern";
}

// Compiles `pattern` into out.code and out.match_data; JIT where the machine has it (a
// pattern the JIT cannot take is interpreted instead, which is only slower).
bool compile_pattern(const std::string& pattern, const char* table, size_t index, uint32_t line,
                     Compiled& out, std::string& error) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    out.code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0,
                                 &code, &offset, nullptr));
    if (out.code == nullptr) {
        error = compile_error(table, index, line, code, offset);
        return false;
    }
    (void)pcre2_jit_compile(out.code.get(), PCRE2_JIT_COMPLETE);
    out.match_data.reset(pcre2_match_data_create_from_pattern(out.code.get(), nullptr));
    PGPLEX_ASSERT(out.match_data != nullptr);
    return true;
}

template <typename Entry>
void copy_conditions(const Entry& entry, Compiled& out) {
    out.user = entry.user;
    out.database = entry.database;
    out.application_name = entry.application_name;
}

}  // namespace

struct Rules::Impl {
    std::unique_ptr<pcre2_match_context, MatchContextFree> match_context;
    std::unique_ptr<pcre2_jit_stack, JitStackFree> jit_stack;
    std::vector<Compiled> rules;
    std::vector<Compiled> rewrites;
    // rewrite() alternates between these, each the output of one rewrite and the input of
    // the next; they keep their capacity from one statement to the next.
    std::string buffers[2];

    bool compile_rules(const config::Config& config, std::string& error);
    bool compile_rewrites(const config::Config& config, std::string& error);
    bool matches(Compiled& entry, std::string_view text);
    int substitute(Compiled& entry, std::string_view text, std::string& out);
};

bool Rules::Impl::compile_rules(const config::Config& config, std::string& error) {
    rules.resize(config.rules.size());
    for (size_t i = 0; i < config.rules.size(); i++) {
        const config::Rule& rule = config.rules[i];
        Compiled& compiled = rules[i];
        if (!compile_pattern(rule.pattern, "rules", i, rule.line, compiled, error)) return false;
        copy_conditions(rule, compiled);
        // The config loader checks that a rule names a route or a node; node wins if both.
        if (!rule.node.empty()) {
            compiled.route = Target::Node;
            compiled.node = rule.node;
        } else if (!parse_target(rule.route, compiled.route)) {
            error = "rules[" + std::to_string(i) + "] (line " + std::to_string(rule.line) +
                    "): route \"" + rule.route +
                    "\" is not primary, replica, standby, offline or delayed";
            return false;
        }
    }
    return true;
}

bool Rules::Impl::compile_rewrites(const config::Config& config, std::string& error) {
    rewrites.resize(config.rewrites.size());
    for (size_t i = 0; i < config.rewrites.size(); i++) {
        const config::Rewrite& rewrite = config.rewrites[i];
        Compiled& compiled = rewrites[i];
        if (!compile_pattern(rewrite.pattern, "rewrites", i, rewrite.line, compiled, error))
            return false;
        copy_conditions(rewrite, compiled);
        compiled.replacement = rewrite.replacement;
    }
    return true;
}

// A match that fails for any reason but "no match" (the match limit, the JIT stack, the
// heap limit) is taken as no match: the statement then routes as if the rule were absent.
bool Rules::Impl::matches(Compiled& entry, std::string_view text) {
    int result = pcre2_match(entry.code.get(), subject_of(text), text.size(), 0, 0,
                             entry.match_data.get(), match_context.get());
    return result >= 0;
}

// Replaces every match of entry's pattern in `text`, writing the result to `out`. Returns
// how many were replaced; 0 when none (or on any PCRE2 error: the text is left as it was).
int Rules::Impl::substitute(Compiled& entry, std::string_view text, std::string& out) {
    constexpr uint32_t options = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH;
    auto replacement = reinterpret_cast<PCRE2_SPTR>(entry.replacement.data());
    // Room for the text and some growth first; PCRE2 says how much it needs if that is short.
    out.resize(std::max(out.capacity(), text.size() + text.size() / 4 + 64));
    for (int attempt = 0; attempt < 2; attempt++) {
        PCRE2_SIZE length = out.size();
        int result = pcre2_substitute(entry.code.get(), subject_of(text), text.size(), 0, options,
                                      entry.match_data.get(), match_context.get(), replacement,
                                      entry.replacement.size(),
                                      reinterpret_cast<PCRE2_UCHAR*>(out.data()), &length);
        if (result == PCRE2_ERROR_NOMEMORY && attempt == 0) {
            out.resize(length);  // the length needed, with its terminating zero
            continue;
        }
        if (result <= 0) return 0;
        out.resize(length);
        return result;
    }
    return 0;
}

std::unique_ptr<Rules> Rules::compile(const config::Config& config, std::string& error) {
    auto impl = std::make_unique<Impl>();
    impl->match_context.reset(pcre2_match_context_create(nullptr));
    PGPLEX_ASSERT(impl->match_context != nullptr);
    pcre2_set_match_limit(impl->match_context.get(), limits::rule_match_steps_max);
    impl->jit_stack.reset(
        pcre2_jit_stack_create(32 * 1024, limits::rule_jit_stack_bytes_max, nullptr));
    if (impl->jit_stack != nullptr)
        pcre2_jit_stack_assign(impl->match_context.get(), nullptr, impl->jit_stack.get());
    if (!impl->compile_rules(config, error) || !impl->compile_rewrites(config, error))
        return nullptr;
    auto rules = std::unique_ptr<Rules>(new Rules());
    rules->impl_ = std::move(impl);
    return rules;
}

Rules::~Rules() = default;

bool Rules::empty() const {
    return impl_->rules.empty() && impl_->rewrites.empty();
}

bool Rules::has_rewrites() const {
    return !impl_->rewrites.empty();
}

RuleMatch Rules::match(std::string_view text, const Who& who) {
    for (Compiled& rule : impl_->rules) {
        if (!rule.applies_to(who) || !impl_->matches(rule, text)) continue;
        PGPLEX_ASSERT(rule.route != Target::None);
        return RuleMatch{rule.route, rule.node};
    }
    return RuleMatch{};
}

bool Rules::rewrite(std::string_view text, const Who& who, std::string& out) {
    std::string_view current = text;
    int next = 0;  // the buffer the next rewrite writes to (never the one `current` is in)
    bool changed = false;
    for (Compiled& rewrite : impl_->rewrites) {
        if (!rewrite.applies_to(who)) continue;
        std::string& buffer = impl_->buffers[next];
        if (impl_->substitute(rewrite, current, buffer) == 0) continue;
        current = buffer;
        next = 1 - next;
        changed = true;
    }
    if (changed) out.assign(current);
    return changed;
}

}  // namespace pgplex::route
