// Routing hints and the session's intent (route.h, levels 1 and 2): small hand-written
// readers of the head of a statement, since they run on every statement of a routed
// client before anything else and must cost nothing when the text has no hint.
#include <cctype>
#include <string>
#include <string_view>

#include "pgplex/base/ascii.h"
#include "pgplex/base/assert.h"
#include "pgplex/route/route.h"

namespace pgplex::route {

namespace {

// A value echoed in an error is cut to this many bytes: the text is the client's own, but
// an ErrorResponse need not carry a megabyte of it back.
constexpr size_t echoed_value_bytes_max = 64;

bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

bool is_identifier_char(char ch) {
    unsigned char byte = static_cast<unsigned char>(ch);
    return std::isalnum(byte) || ch == '_' || ch == '$' || byte >= 0x80;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        if (base::ascii_lower(a[i]) != base::ascii_lower(b[i])) return false;
    }
    return true;
}

std::string_view skip_spaces(std::string_view text) {
    size_t at = 0;
    while (at < text.size() && is_space(text[at])) at++;
    return text.substr(at);
}

std::string quoted(std::string_view value) {
    std::string out = "\"";
    out.append(value.substr(0, echoed_value_bytes_max));
    if (value.size() > echoed_value_bytes_max) out.append("...");
    out.append("\"");
    return out;
}

}  // namespace

// --- targets ----------------------------------------------------------------------------------

const char* to_string(Target target) {
    switch (target) {
        case Target::None:
            return "none";
        case Target::Primary:
            return "primary";
        case Target::Replica:
            return "replica";
        case Target::Standby:
            return "standby";
        case Target::Offline:
            return "offline";
        case Target::Delayed:
            return "delayed";
        case Target::Node:
            return "node";
    }
    PGPLEX_UNREACHABLE();
}

// Case-insensitive, as PostgreSQL reads enum-like settings. "none" and "node" are not
// targets a user writes: a node is named by node=.
bool parse_target(std::string_view text, Target& out) {
    constexpr Target named[] = {Target::Primary, Target::Replica, Target::Standby, Target::Offline,
                                Target::Delayed};
    for (Target target : named) {
        if (equals_ignore_case(text, to_string(target))) {
            out = target;
            return true;
        }
    }
    return false;
}

// --- 1. hints ---------------------------------------------------------------------------------

namespace {

constexpr std::string_view line_hint_prefix = "--!pgplex";
constexpr std::string_view block_hint_prefix = "/*!pgplex";

enum class Cut : uint8_t { None, Hint, Unterminated };

// Cuts one hint comment off the head of `text` (after whitespace): "--!pgplex ..." up to
// the end of its line, or "/*!pgplex ... */" (not nested, possibly over several lines).
// `body` is what lies between the prefix and the end of the comment.
Cut cut_hint(std::string_view& text, std::string_view& body) {
    std::string_view rest = skip_spaces(text);
    bool line = rest.starts_with(line_hint_prefix);
    if (!line && !rest.starts_with(block_hint_prefix)) return Cut::None;
    rest.remove_prefix(line_hint_prefix.size());
    // "--!pgplexfoo" is some other comment, not a hint.
    if (!rest.empty() && !is_space(rest[0]) && !(!line && rest.starts_with("*/"))) return Cut::None;
    size_t end = line ? rest.find('\n') : rest.find("*/");
    if (end == std::string_view::npos) {
        if (!line) return Cut::Unterminated;
        end = rest.size();
    }
    body = rest.substr(0, end);
    text = rest.substr(end == rest.size() ? end : end + (line ? 1 : 2));
    return Cut::Hint;
}

// What the hint lines said so far; route and node are resolved once all are read.
struct HintKeys {
    bool route_given = false;
    Target route = Target::None;
    std::string_view node;
    int64_t max_lag_ms = -1;
    int pairs = 0;
};

// "host:port" as a node is named in [clusters.X] nodes: a non-empty host (a name, an
// address, "[v6]" or a Unix directory) and a port from 1 to 65535. The router looks the
// name up among the cluster's nodes; this only refuses what can never be one.
bool looks_like_node(std::string_view text) {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view port = text.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    uint32_t value = 0;
    for (char ch : port) {
        if (ch < '0' || ch > '9') return false;
        value = value * 10 + static_cast<uint32_t>(ch - '0');
    }
    return value >= 1 && value <= 65535;
}

bool apply_pair(std::string_view key, std::string_view value, HintKeys& keys, std::string& error) {
    if (equals_ignore_case(key, "route")) {
        if (parse_target(value, keys.route)) {
            keys.route_given = true;
            return true;
        }
        error = "pgplex hint: route " + quoted(value) +
                " is not primary, replica, standby, offline or delayed";
        return false;
    }
    if (equals_ignore_case(key, "node")) {
        keys.node = value;
        if (looks_like_node(value)) return true;
        error = "pgplex hint: node " + quoted(value) + " is not host:port";
        return false;
    }
    if (equals_ignore_case(key, "max_lag")) {
        if (config::parse_duration_ms(value, keys.max_lag_ms)) return true;
        error = "pgplex hint: max_lag " + quoted(value) +
                " is not a duration (500ms, 10s, 5m, 1h or whole seconds)";
        return false;
    }
    error = "pgplex hint: unknown key " + quoted(key) + " (expected route, node or max_lag)";
    return false;
}

// The whitespace-separated key=value pairs of one hint comment's body.
bool apply_body(std::string_view body, HintKeys& keys, std::string& error) {
    while (true) {
        body = skip_spaces(body);
        if (body.empty()) return true;
        size_t end = 0;
        while (end < body.size() && !is_space(body[end])) end++;
        std::string_view pair = body.substr(0, end);
        body.remove_prefix(end);
        size_t equals = pair.find('=');
        if (equals == std::string_view::npos || equals == 0 || equals + 1 == pair.size()) {
            error = "pgplex hint: " + quoted(pair) + " is not key=value";
            return false;
        }
        if (!apply_pair(pair.substr(0, equals), pair.substr(equals + 1), keys, error)) return false;
        keys.pairs++;
    }
}

}  // namespace

// route= and node= both say where to go. node= alone means that one node; route= given
// anywhere in the hint wins over node=, whatever their order, and node= is then dropped
// (still checked for shape). Within one key, the later value wins.
HintStatus parse_hint(std::string_view text, Hint& out, std::string& error) {
    out = Hint{};
    HintKeys keys;
    bool found = false;
    std::string_view body;
    while (true) {
        Cut cut = cut_hint(text, body);
        if (cut == Cut::None) break;
        found = true;
        if (cut == Cut::Unterminated) {
            error = "pgplex hint: /*!pgplex comment without its closing */";
            return HintStatus::Invalid;
        }
        if (!apply_body(body, keys, error)) return HintStatus::Invalid;
    }
    if (!found) return HintStatus::None;
    if (keys.pairs == 0) {
        error = "pgplex hint: empty; expected route=, node= or max_lag=";
        return HintStatus::Invalid;
    }
    out.route = keys.route;
    if (!keys.route_given && !keys.node.empty()) {
        out.route = Target::Node;
        out.node = std::string(keys.node);
    }
    out.max_lag_ms = keys.max_lag_ms;
    PGPLEX_ASSERT(out.route != Target::None || out.max_lag_ms >= 0);
    return HintStatus::Ok;
}

// --- 2. intent --------------------------------------------------------------------------------

const char* to_string(Intent intent) {
    switch (intent) {
        case Intent::None:
            return "default";
        case Intent::ReadOnly:
            return "read-only";
        case Intent::ReadWrite:
            return "read-write";
    }
    PGPLEX_UNREACHABLE();
}

bool parse_intent(std::string_view value, Intent& out) {
    constexpr std::string_view read_only[] = {"read-only", "read_only", "readonly", "ro"};
    constexpr std::string_view read_write[] = {"read-write", "read_write", "readwrite", "rw"};
    if (value.empty() || equals_ignore_case(value, "default")) {
        out = Intent::None;
        return true;
    }
    for (std::string_view name : read_only) {
        if (!equals_ignore_case(value, name)) continue;
        out = Intent::ReadOnly;
        return true;
    }
    for (std::string_view name : read_write) {
        if (!equals_ignore_case(value, name)) continue;
        out = Intent::ReadWrite;
        return true;
    }
    return false;
}

namespace {

// Reads the tokens of one SET / RESET statement (sql-set.html): keywords and names are
// case-insensitive, comments and whitespace may stand between any two tokens.
struct SetReader {
    std::string_view rest;

    void skip_blank() {
        while (!rest.empty()) {
            if (is_space(rest[0])) {
                rest.remove_prefix(1);
            } else if (rest.starts_with("--")) {
                size_t end = rest.find('\n');
                rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
            } else if (rest.starts_with("/*")) {
                size_t end = rest.find("*/", 2);
                rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 2);
            } else {
                return;
            }
        }
    }
    // A whole word: "set" does not match the head of "settings".
    bool word(std::string_view expected) {
        skip_blank();
        if (rest.size() < expected.size()) return false;
        if (!equals_ignore_case(rest.substr(0, expected.size()), expected)) return false;
        if (rest.size() > expected.size() && is_identifier_char(rest[expected.size()]))
            return false;
        rest.remove_prefix(expected.size());
        return true;
    }
    bool symbol(char expected) {
        skip_blank();
        if (rest.empty() || rest[0] != expected) return false;
        rest.remove_prefix(1);
        return true;
    }
    bool intent_name() { return word("pgplex") && symbol('.') && word("intent"); }
    bool at_end() {
        symbol(';');
        skip_blank();
        return rest.empty();
    }
    bool value(std::string& out);
};

// 'quoted' (with '' for a quote), DEFAULT (""), or a bare word; unlike PostgreSQL's
// grammar a bare word may hold '-', so that SET pgplex.intent = read-only works as the
// startup option does.
bool SetReader::value(std::string& out) {
    skip_blank();
    out.clear();
    if (!rest.empty() && rest[0] == '\'') {
        size_t at = 1;
        while (true) {
            size_t quote = rest.find('\'', at);
            if (quote == std::string_view::npos) return false;
            out.append(rest.substr(at, quote - at));
            if (quote + 1 < rest.size() && rest[quote + 1] == '\'') {
                out.push_back('\'');
                at = quote + 2;
                continue;
            }
            rest.remove_prefix(quote + 1);
            return true;
        }
    }
    if (word("default")) return true;
    size_t end = 0;
    while (end < rest.size() && (is_identifier_char(rest[end]) || rest[end] == '-')) end++;
    if (end == 0) return false;
    out.assign(rest.substr(0, end));
    rest.remove_prefix(end);
    return true;
}

}  // namespace

bool is_intent_set(std::string_view text, std::string& value) {
    SetReader reader{text};
    if (reader.word("reset")) {
        if (!reader.intent_name() || !reader.at_end()) return false;
        value.clear();
        return true;
    }
    if (!reader.word("set")) return false;
    // SET LOCAL would end with the transaction in PostgreSQL; the intent is read when a
    // transaction starts, so it is taken like SET.
    if (!reader.word("session")) (void)reader.word("local");
    if (!reader.intent_name()) return false;
    if (!reader.symbol('=') && !reader.word("to")) return false;
    std::string read;
    if (!reader.value(read) || !reader.at_end()) return false;
    value = std::move(read);
    return true;
}

}  // namespace pgplex::route
