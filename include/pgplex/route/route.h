// Per-statement routing: the pieces the router combines, in its order of precedence.
//   1. a "--!pgplex ..." comment at the head of the statement (parse_hint);
//   2. the session's intent (parse_intent), from options or SET pgplex.intent;
//   3. the config's [[rules]] and [[rewrites]] (Rules), PCRE2 on the statement text;
//   4. the statement's class from PostgreSQL's own parser (Classifier), cached by xxHash;
//   5. the default of the alias or service.
// Everything here is pure (no I/O, no worker state) so it is unit-tested and fuzzed alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pgplex/config/config.h"

namespace pgplex::route {

// Where a transaction may go. Node means one node, named by Hint::node / Rule::node.
enum class Target : uint8_t { None, Primary, Replica, Standby, Offline, Delayed, Node };

const char* to_string(Target target);
// "primary", "replica", "standby", "offline", "delayed"; false for anything else.
bool parse_target(std::string_view text, Target& out);

// --- 1. hints ---------------------------------------------------------------------------------

struct Hint {
    Target route = Target::None;
    std::string node;         // route == Node: "host:port" as written
    int64_t max_lag_ms = -1;  // -1: not given
};

enum class HintStatus : uint8_t { None, Ok, Invalid };

// Reads the "--!pgplex key=value ..." comment lines at the head of `text` (leading
// whitespace allowed; several such lines add up; later keys win). Keys: route=, node=,
// max_lag= (a duration: 500ms, 1s, ...). None: the text does not start with such a comment.
// Invalid: it does, but a key or value is wrong; `error` then says which, for a 22023 error.
HintStatus parse_hint(std::string_view text, Hint& out, std::string& error);

// --- 2. intent --------------------------------------------------------------------------------

enum class Intent : uint8_t { None, ReadOnly, ReadWrite };

const char* to_string(Intent intent);
// "read-only" / "read_only" / "readonly" / "ro" and the read-write forms; "" and "default"
// give None. Case-insensitive. False for anything else.
bool parse_intent(std::string_view value, Intent& out);

// If `text` is a SET / RESET of pgplex.intent (SET pgplex.intent = 'read-only', SET SESSION
// pgplex.intent TO read_write, RESET pgplex.intent, SET pgplex.intent TO DEFAULT), returns
// true and sets value ("" for RESET/DEFAULT). Only a single statement, optional trailing ';'.
bool is_intent_set(std::string_view text, std::string& value);

// --- 3. rules ---------------------------------------------------------------------------------

// Who is asking: conditions of rules and rewrites compare these exactly.
struct Who {
    std::string_view user;
    std::string_view database;
    std::string_view application_name;
};

struct RuleMatch {
    Target route = Target::None;
    std::string_view node;  // route == Node
};

// The compiled [[rules]] and [[rewrites]] of one config snapshot (PCRE2, JIT where the
// machine has it). Built once per snapshot per worker; match data is per Rules, so a Rules
// is used by one thread only.
class Rules {
  public:
    // Compiles every pattern; on error returns null and sets error "rules[N]: reason".
    static std::unique_ptr<Rules> compile(const config::Config& config, std::string& error);
    ~Rules();
    bool empty() const;
    bool has_rewrites() const;
    // The first rule whose conditions hold and whose pattern matches; route None if none.
    RuleMatch match(std::string_view text, const Who& who);
    // Applies every rewrite whose conditions hold, in order, each to the previous one's
    // output (all matches of its pattern replaced, $1 / ${name} substitutions). Returns
    // false when none changed the text (out is then untouched).
    bool rewrite(std::string_view text, const Who& who, std::string& out);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// --- 4. statement class -----------------------------------------------------------------------

enum class StatementClass : uint8_t {
    Read,           // plain reads: SELECT without FOR UPDATE/SHARE or writing CTEs, SHOW, ...
    Write,          // DML, DDL, SELECT ... FOR UPDATE, WITH ... INSERT, SELECT INTO, nextval(),
                    // SET (session state), functions not known to be read-only, BEGIN (plain)
    ReadOnlyBlock,  // BEGIN READ ONLY / START TRANSACTION READ ONLY (and reads after it)
    Unparsable,     // PostgreSQL's parser rejects it: the default route decides
};

const char* to_string(StatementClass value);

// What one parse tells about a text: its class, and whether it may change the session
// state a client carries between transactions (settings, role, session authorization):
// SET and RESET (not SET LOCAL or SET TRANSACTION), DISCARD, DO, CALL, EXECUTE, LOAD,
// extension scripts, and calls of functions not known to leave the session alone (the
// read-only built-ins, the config's read_only_functions, the sequence functions). An
// unparsable text may do anything.
struct StatementFacts {
    StatementClass kind = StatementClass::Unparsable;
    bool touches_session = true;
};

// libpg_query, cached by XXH3-64 of the text's shape: the text with each string and number
// literal replaced by one mark (the class never depends on a literal's value), so the
// simple protocol's "WHERE aid = 42", "= 43", ... share one entry and are parsed once. The
// cache is bounded (`capacity` entries; cleared when full). One per worker: not thread-safe.
class Classifier {
  public:
    // read_only_functions: names (lower case, optionally schema-qualified) of functions
    // the config declares read-only, in addition to the built-in list.
    explicit Classifier(std::vector<std::string> read_only_functions = {}, size_t capacity = 16384);
    StatementClass classify(std::string_view text);
    StatementFacts facts(std::string_view text);
    size_t cached() const { return cache_.size(); }
    uint64_t parses() const { return parses_; }  // texts actually parsed (cache misses)

  private:
    std::vector<std::string> read_only_functions_;
    size_t capacity_;
    std::unordered_map<uint64_t, StatementFacts> cache_;
    uint64_t parses_ = 0;
    std::string shape_;  // the text with its literals masked, reused between calls
};

// The pure classification behind Classifier (no cache): exposed for tests and fuzzing.
StatementClass classify_uncached(std::string_view text,
                                 const std::vector<std::string>& read_only_functions);
StatementFacts facts_uncached(std::string_view text,
                              const std::vector<std::string>& read_only_functions);

// The text with each string and number literal replaced by "?" (comments and quoted
// identifiers kept as they are). Appends to out. A literal left open keeps the text as is.
void literal_shape(std::string_view text, std::string& out);

}  // namespace pgplex::route
