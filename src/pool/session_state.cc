// See session_state.h. A small lexer, not a SQL parser: it only has to find statement
// boundaries and read the head of SET and RESET statements (sql-set.html, sql-reset.html).
#include "pgplex/pool/session_state.h"

#include <cctype>

#include "pgplex/base/ascii.h"
#include "pgplex/base/assert.h"

namespace pgplex::pool {

namespace {

bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f';
}

}  // namespace

size_t skip_blank(std::string_view text, size_t at) {
    while (at < text.size()) {
        if (is_space(text[at])) {
            ++at;
        } else if (text.compare(at, 2, "--") == 0) {
            size_t end = text.find('\n', at);
            at = end == std::string_view::npos ? text.size() : end + 1;
        } else if (text.compare(at, 2, "/*") == 0) {
            size_t end = text.find("*/", at + 2);
            at = end == std::string_view::npos ? text.size() : end + 2;
        } else {
            break;
        }
    }
    return at;
}

size_t statement_end(std::string_view text, size_t at) {
    while (at < text.size()) {
        char ch = text[at];
        if (ch == ';') return at;
        if (ch == '\'' || ch == '"') {
            size_t end = text.find(ch, at + 1);
            while (end != std::string_view::npos && end + 1 < text.size() && text[end + 1] == ch)
                end = text.find(ch, end + 2);
            at = end == std::string_view::npos ? text.size() : end + 1;
        } else if (ch == '$') {
            size_t tag_end = at + 1;
            while (tag_end < text.size() &&
                   (isalnum(static_cast<unsigned char>(text[tag_end])) || text[tag_end] == '_'))
                ++tag_end;
            if (tag_end < text.size() && text[tag_end] == '$') {
                std::string_view tag = text.substr(at, tag_end - at + 1);
                size_t end = text.find(tag, tag_end + 1);
                at = end == std::string_view::npos ? text.size() : end + tag.size();
            } else {
                ++at;
            }
        } else if (text.compare(at, 2, "--") == 0 || text.compare(at, 2, "/*") == 0) {
            at = skip_blank(text, at);
        } else {
            ++at;
        }
    }
    return at;
}

namespace {

// The next word (letters, digits, '_', '.') in lower case, or a quoted identifier as is.
std::string next_word(std::string_view text, size_t& at) {
    at = skip_blank(text, at);
    std::string word;
    if (at < text.size() && text[at] == '"') {
        size_t end = text.find('"', at + 1);
        if (end == std::string_view::npos) return {};
        word = std::string(text.substr(at + 1, end - at - 1));
        at = end + 1;
        return word;
    }
    while (at < text.size()) {
        char ch = text[at];
        if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.') break;
        word += base::ascii_lower(ch);
        ++at;
    }
    return word;
}

std::string_view trimmed(std::string_view text) {
    size_t begin = skip_blank(text, 0);
    size_t end = text.size();
    while (end > begin && is_space(text[end - 1])) --end;
    return text.substr(begin, end - begin);
}

// SET [SESSION] name {TO | =} value | SET TIME ZONE value | SET ROLE ... | SET SESSION
// AUTHORIZATION ...; `at` is just past SET.
bool parse_set(std::string_view statement, size_t at, SetChange& out) {
    std::string word = next_word(statement, at);
    if (word == "transaction" || word == "constraints") return false;
    if (word == "local") {  // only SET LOCAL name TO DEFAULT matters here (ResetLocal)
        if (!parse_set(statement, at, out) || out.kind != SetKind::Reset) return false;
        out.kind = SetKind::ResetLocal;
        return true;
    }
    if (word == "session") {
        size_t after = at;
        std::string next = next_word(statement, after);
        if (next == "authorization" || next == "characteristics") {
            word = "session " + next;
            at = after;
        } else {
            word = next;
            at = after;
        }
    }
    if (word == "time") {
        size_t after = at;
        if (next_word(statement, after) == "zone") {
            word = "timezone";
            at = after;
        }
    }
    if (word.empty()) return false;
    out.name = word;
    out.sql = std::string(trimmed(statement));
    // SET name TO DEFAULT is RESET name.
    size_t value_at = skip_blank(statement, at);
    if (value_at < statement.size() && statement[value_at] == '=')
        ++value_at;
    else if (next_word(statement, value_at) != "to")
        value_at = skip_blank(statement, at);
    size_t probe = value_at;
    std::string value = next_word(statement, probe);
    bool only_default = value == "default" && skip_blank(statement, probe) == statement.size();
    out.kind = only_default ? SetKind::Reset : SetKind::Set;
    return true;
}

bool parse_reset(std::string_view statement, size_t at, SetChange& out) {
    std::string word = next_word(statement, at);
    if (word.empty()) return false;
    if (word == "all") {
        out.kind = SetKind::ResetAll;
        return true;
    }
    if (word == "session") {
        size_t after = at;
        if (next_word(statement, after) == "authorization") word = "session authorization";
    }
    if (word == "time") word = "timezone";
    out.kind = SetKind::Reset;
    out.name = word;
    return true;
}

}  // namespace

const std::vector<Setting>& settings_of(const Settings& settings) {
    static const std::vector<Setting> none;
    return settings ? *settings : none;
}

Settings SettingsCache::intern(std::vector<Setting> settings) {
    uint64_t key = settings.size();
    for (const Setting& setting : settings)
        key = key * 1099511628211u ^ std::hash<std::string>{}(setting.sql) ^
              std::hash<std::string>{}(setting.value);
    auto same = [&settings](const std::vector<Setting>& other) {
        if (other.size() != settings.size()) return false;
        for (size_t i = 0; i < other.size(); ++i)
            if (other[i].name != settings[i].name || other[i].sql != settings[i].sql ||
                other[i].value != settings[i].value)
                return false;
        return true;
    };
    auto [begin, end] = lists_.equal_range(key);
    for (auto it = begin; it != end; ++it)
        if (Settings held = it->second.lock(); held && same(*held)) return held;
    if (lists_.size() >= purge_at_) {
        for (auto it = lists_.begin(); it != lists_.end();)
            it = it->second.expired() ? lists_.erase(it) : std::next(it);
        purge_at_ = std::max<size_t>(64, lists_.size() * 2);
    }
    Settings made = std::make_shared<const std::vector<Setting>>(std::move(settings));
    lists_.emplace(key, made);
    return made;
}

bool may_set(std::string_view query) {
    // SET, RESET, DISCARD, PREPARE, DEALLOCATE: "set", "dis", "pre" or "dea" in any case.
    for (size_t i = 0; i + 3 <= query.size(); ++i) {
        char a = base::ascii_lower(query[i]);
        if (a != 's' && a != 'd' && a != 'p') continue;
        char b = base::ascii_lower(query[i + 1]);
        char c = base::ascii_lower(query[i + 2]);
        if ((a == 's' && b == 'e' && c == 't') || (a == 'd' && b == 'i' && c == 's') ||
            (a == 'p' && b == 'r' && c == 'e') || (a == 'd' && b == 'e' && c == 'a'))
            return true;
    }
    return false;
}

namespace {

// Calls visit(statement, head, cursor) for each statement of a query: its text, its first
// word in lower case, and where that word ends.
template <typename Visit>
void for_each_statement(std::string_view query, Visit visit) {
    size_t at = 0;
    while (at < query.size()) {
        size_t begin = skip_blank(query, at);
        size_t end = statement_end(query, begin);
        std::string_view statement = query.substr(begin, end - begin);
        size_t cursor = 0;
        std::string head = next_word(statement, cursor);
        visit(statement, head, cursor);
        at = end + 1;
    }
}

// DEALLOCATE [PREPARE] {name | ALL}, from just past DEALLOCATE.
void parse_deallocate_change(std::string_view statement, size_t cursor, SetChange& change) {
    size_t word_at = skip_blank(statement, cursor);
    change.name = next_word(statement, cursor);
    if (change.name == "prepare") {
        word_at = skip_blank(statement, cursor);
        change.name = next_word(statement, cursor);
    }
    bool quoted = word_at < statement.size() && statement[word_at] == '"';
    change.kind = change.name == "all" && !quoted ? SetKind::DeallocateAll : SetKind::Deallocate;
    if (change.kind == SetKind::DeallocateAll) change.name.clear();  // ALL names nothing
}

}  // namespace

std::vector<SetChange> parse_set_statements(std::string_view query) {
    std::vector<SetChange> changes;
    for_each_statement(
        query, [&changes](std::string_view statement, const std::string& head, size_t cursor) {
            SetChange change;
            bool found = false;
            if (head == "set") {
                found = parse_set(statement, cursor, change);
            } else if (head == "reset") {
                found = parse_reset(statement, cursor, change);
            } else if (head == "discard" && next_word(statement, cursor) == "all") {
                change.kind = SetKind::ResetAll;
                changes.push_back(change);
                change.kind = SetKind::DeallocateAll;
                found = true;
            } else if (head == "prepare") {
                change.kind = SetKind::Prepare;
                change.name = next_word(statement, cursor);
                change.sql = std::string(trimmed(statement));
                found = !change.name.empty() && change.name != "transaction";
            } else if (head == "deallocate") {
                parse_deallocate_change(statement, cursor, change);
                found = change.kind == SetKind::DeallocateAll || !change.name.empty();
            }
            if (found) changes.push_back(std::move(change));
        });
    return changes;
}

bool parse_deallocate(std::string_view query, std::string& name, bool& all) {
    size_t begin = skip_blank(query, 0);
    size_t end = statement_end(query, begin);
    if (skip_blank(query, end < query.size() ? end + 1 : end) != query.size()) return false;
    std::string_view statement = query.substr(begin, end - begin);
    size_t cursor = 0;
    if (next_word(statement, cursor) != "deallocate") return false;
    size_t after = cursor;
    std::string word = next_word(statement, after);
    if (word == "prepare") {
        cursor = after;
        after = cursor;
        word = next_word(statement, after);
    }
    if (word.empty() || skip_blank(statement, after) != statement.size()) return false;
    // A quoted "all" is a name; next_word keeps quoted identifiers as they are.
    all = word == "all" && statement[skip_blank(statement, cursor)] != '"';
    name = all ? std::string() : word;
    return true;
}

namespace {

bool contains_word_ci(std::string_view text, std::string_view word) {
    for (size_t i = 0; i + word.size() <= text.size(); ++i) {
        size_t j = 0;
        while (j < word.size() && base::ascii_lower(text[i + j]) == word[j]) ++j;
        if (j == word.size()) return true;
    }
    return false;
}

// DECLARE name ... WITH HOLD FOR ...: the words WITH HOLD before FOR.
bool has_with_hold(std::string_view statement, size_t cursor) {
    std::string previous;
    while (cursor < statement.size()) {
        std::string word = next_word(statement, cursor);
        if (word.empty()) {
            ++cursor;
            continue;
        }
        if (word == "for") return false;
        if (previous == "with" && word == "hold") return true;
        previous = std::move(word);
    }
    return false;
}

// CREATE [OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY} ..., or SELECT ... INTO TEMP.
bool creates_temp(std::string_view statement, const std::string& head, size_t cursor) {
    if (head == "create") {
        std::string word = next_word(statement, cursor);
        if (word == "or") {
            next_word(statement, cursor);  // replace
            word = next_word(statement, cursor);
        }
        if (word == "global" || word == "local") word = next_word(statement, cursor);
        return word == "temp" || word == "temporary";
    }
    if (head != "select" && head != "with") return false;
    while (cursor < statement.size()) {
        std::string word = next_word(statement, cursor);
        if (word.empty()) {
            ++cursor;
            continue;
        }
        if (word != "into") continue;
        std::string target = next_word(statement, cursor);
        return target == "temp" || target == "temporary";
    }
    return false;
}

}  // namespace

uint8_t detect_session_state(std::string_view query) {
    uint8_t kinds = no_session_state;
    bool advisory = contains_word_ci(query, "advisory_lock");
    bool temp = contains_word_ci(query, "temp");
    bool hold = contains_word_ci(query, "hold");
    if (!advisory && !temp && !hold) return kinds;  // the common case: one pass, done
    for_each_statement(query,
                       [&](std::string_view statement, const std::string& head, size_t cursor) {
                           if (advisory && (contains_word_ci(statement, "pg_advisory_lock") ||
                                            contains_word_ci(statement, "pg_try_advisory_lock")))
                               kinds |= advisory_lock;
                           if (hold && head == "declare" && has_with_hold(statement, cursor))
                               kinds |= hold_cursor;
                           if (temp && creates_temp(statement, head, cursor)) kinds |= temp_table;
                       });
    return kinds;
}

std::string describe_session_state(uint8_t kinds) {
    std::string out;
    auto add = [&out](const char* what) { out += out.empty() ? what : std::string(", ") + what; };
    if (kinds & advisory_lock) add("session advisory locks");
    if (kinds & hold_cursor) add("WITH HOLD cursors");
    if (kinds & temp_table) add("temporary tables");
    return out;
}

bool may_deallocate(std::string_view query) {
    size_t at = skip_blank(query, 0);
    return query.size() - at >= 10 && (query[at] == 'd' || query[at] == 'D');
}

bool discards_all(std::string_view query) {
    bool discards = false;
    for_each_statement(
        query, [&discards](std::string_view statement, const std::string& head, size_t cursor) {
            discards = discards || (head == "discard" && next_word(statement, cursor) == "all");
        });
    return discards;
}

bool drops_prepared(std::string_view query) {
    bool drops = false;
    for_each_statement(
        query, [&drops](std::string_view statement, const std::string& head, size_t cursor) {
            SetChange change;
            if (head == "deallocate") parse_deallocate_change(statement, cursor, change);
            drops = drops || change.kind == SetKind::DeallocateAll ||
                    (head == "discard" && next_word(statement, cursor) == "all");
        });
    return drops;
}

void apply_prepare_change(std::vector<Setting>& prepared, const SetChange& change) {
    switch (change.kind) {
        case SetKind::DeallocateAll:
            prepared.clear();
            return;
        case SetKind::Prepare:
        case SetKind::Deallocate:
            for (size_t i = 0; i < prepared.size(); ++i) {
                if (prepared[i].name != change.name) continue;
                // PREPARE of a name in use fails in PostgreSQL: the first one stays.
                if (change.kind == SetKind::Prepare) return;
                prepared.erase(prepared.begin() + long(i));
                return;
            }
            if (change.kind == SetKind::Prepare) prepared.push_back({change.name, change.sql, {}});
            return;
        case SetKind::Set:
        case SetKind::Reset:
        case SetKind::ResetAll:
        case SetKind::ResetLocal:
            return;
    }
}

std::vector<Setting> prepared_sync(const std::vector<Setting>& client,
                                   const std::vector<Setting>& server) {
    auto same_context = [](const Setting& a, const Setting& b) {
        if (a.context == b.context) return true;
        return a.context && b.context && same_settings(*a.context, *b.context);
    };
    auto holds = [&](const std::vector<Setting>& list, const Setting& what) {
        for (const Setting& item : list)
            if (item.name == what.name && item.sql == what.sql && same_context(item, what))
                return true;
        return false;
    };
    std::vector<Setting> out;
    for (const Setting& got : server)
        if (!holds(client, got))
            out.push_back({got.name, "DEALLOCATE " + quote_identifier(got.name), {}, {}});
    for (const Setting& want : client)
        if (!holds(server, want)) out.push_back(want);
    return out;
}

bool same_settings(const std::vector<Setting>& a, const std::vector<Setting>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
    return true;
}

void identity_sync(std::string& sql, const std::string* want_authorization,
                   const std::string* have_authorization, const std::string* want_role,
                   const std::string* have_role, bool local) {
    auto differ = [](const std::string* want, const std::string* have) {
        return (want == nullptr) != (have == nullptr) || (want != nullptr && *want != *have);
    };
    bool authorization_changes = differ(want_authorization, have_authorization);
    if (authorization_changes) {
        std::string set = local ? "SET LOCAL SESSION AUTHORIZATION " : "SET SESSION AUTHORIZATION ";
        sql += want_authorization != nullptr ? set + quote_literal(*want_authorization) + ";"
               : local                       ? set + "DEFAULT;"
                                             : std::string("RESET SESSION AUTHORIZATION;");
    }
    // A new authorization drops the role; SET LOCAL is not relied on for that.
    bool role_changes =
        authorization_changes ? want_role != nullptr || local : differ(want_role, have_role);
    if (!role_changes) return;
    std::string set = local ? "SET LOCAL ROLE " : "SET ROLE ";
    sql += want_role != nullptr ? set + quote_literal(*want_role) + ";"
           : local              ? set + "NONE;"
                                : std::string("RESET ROLE;");
}

std::vector<std::string> prepare_in_context(const Setting& prepare,
                                            const std::vector<Setting>& applied) {
    auto none = [](const std::string&) -> const std::string* { return nullptr; };
    PGPLEX_ASSERT(prepare.context);
    SettingsSync local = settings_sync(*prepare.context, applied, none, true);
    return {"BEGIN;" + local.sql, prepare.sql, "COMMIT"};
}

std::string reset_follow_up_sql(const std::vector<Setting>& startup,
                                const std::vector<SetChange>& changes) {
    std::string values[2];  // session, local
    for (const Setting& setting : startup) {
        bool reset[2] = {false, false};
        for (const SetChange& change : changes) {
            reset[0] = reset[0] || change.kind == SetKind::ResetAll ||
                       (change.kind == SetKind::Reset && change.name == setting.name);
            reset[1] =
                reset[1] || (change.kind == SetKind::ResetLocal && change.name == setting.name);
        }
        for (int local = 0; local < 2; ++local)
            if (reset[local])
                values[local] += std::string(values[local].empty() ? "" : ",") + "(" +
                                 quote_literal(setting.name) + "," + quote_literal(setting.value) +
                                 ")";
    }
    std::string sql;
    for (int local = 0; local < 2; ++local)
        if (!values[local].empty())
            sql += std::string("SELECT pg_catalog.set_config(p.name, s.v, ") +
                   (local ? "true" : "false") + ") FROM (VALUES " + values[local] +
                   ") AS s(n, v) JOIN pg_catalog.pg_settings p ON pg_catalog.lower(p.name) = s.n "
                   "WHERE p.source <> 'session';";
    if (!sql.empty()) sql.pop_back();
    return sql;
}

std::string quote_literal(std::string_view text) {
    std::string out = "E'";
    for (char ch : text) {
        if (ch == '\'' || ch == '\\') out += ch;
        out += ch;
    }
    return out + "'";
}

std::string quote_identifier(std::string_view text) {
    std::string out = "\"";
    for (char ch : text) {
        if (ch == '"') out += ch;
        out += ch;
    }
    return out + "\"";
}

const std::string* value_of(const std::vector<Setting>& settings, std::string_view name) {
    for (const Setting& setting : settings)
        if (setting.name == name) return &setting.value;
    return nullptr;
}

void add_checked(std::vector<Setting>& out, std::string_view name, std::string_view value,
                 std::string_view login_user) {
    if (name == role_name && value == "none") return;
    if (name == authorization_name && value == login_user) return;
    out.push_back({std::string(name), {}, std::string(value)});
}

bool default_may_stand(const std::vector<Setting>& startup, const std::vector<Setting>& session,
                       std::string_view name) {
    const std::string* start = value_of(startup, name);
    const std::string* mine = value_of(session, name);
    return start == nullptr || mine == nullptr || *start == *mine;
}

std::vector<Setting> effective(const std::vector<Setting>& startup,
                               const std::vector<Setting>& session) {
    std::vector<Setting> out = session;
    for (const Setting& setting : startup)
        if (value_of(session, setting.name) == nullptr) out.push_back(setting);
    return out;
}

const std::string& session_check_sql() {
    static const std::string sql =
        std::string(settings_check_sql) + " UNION ALL SELECT '" +
        std::string(protocol_statement_row) +
        "', name FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql UNION ALL SELECT '" +
        std::string(listen_row) + "', pg_catalog.pg_listening_channels() UNION ALL SELECT '" +
        std::string(session_state_row) + "', (" + session_state_check_sql + ")::pg_catalog.text";
    return sql;
}

}  // namespace pgplex::pool
