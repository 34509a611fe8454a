// See session_state.h. A small lexer, not a SQL parser: it only has to find statement
// boundaries and read the head of SET and RESET statements (sql-set.html, sql-reset.html).
#include "pgplex/pool/session_state.h"

#include <cctype>

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
        word += char(tolower(static_cast<unsigned char>(ch)));
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
    if (word == "local" || word == "transaction" || word == "constraints") return false;
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

bool may_set(std::string_view query) {
    for (size_t i = 0; i + 3 <= query.size(); ++i) {
        char a = char(tolower(static_cast<unsigned char>(query[i])));
        if ((a == 's' || a == 'r' || a == 'd') &&
            (query.compare(i, 3, "set") == 0 || query.compare(i, 3, "SET") == 0 ||
             query.compare(i, 3, "Set") == 0 || query.compare(i, 3, "res") == 0 ||
             query.compare(i, 3, "RES") == 0 || query.compare(i, 3, "Res") == 0 ||
             query.compare(i, 3, "dis") == 0 || query.compare(i, 3, "DIS") == 0 ||
             query.compare(i, 3, "Dis") == 0))
            return true;
    }
    return false;
}

std::vector<SetChange> parse_set_statements(std::string_view query) {
    std::vector<SetChange> changes;
    size_t at = 0;
    while (at < query.size()) {
        size_t begin = skip_blank(query, at);
        size_t end = statement_end(query, begin);
        std::string_view statement = query.substr(begin, end - begin);
        size_t cursor = 0;
        std::string head = next_word(statement, cursor);
        SetChange change;
        bool found = false;
        if (head == "set")
            found = parse_set(statement, cursor, change);
        else if (head == "reset")
            found = parse_reset(statement, cursor, change);
        else if (head == "discard" && next_word(statement, cursor) == "all") {
            change.kind = SetKind::ResetAll;
            found = true;
        }
        if (found) changes.push_back(std::move(change));
        at = end + 1;
    }
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

bool may_deallocate(std::string_view query) {
    size_t at = skip_blank(query, 0);
    return query.size() - at >= 10 && (query[at] == 'd' || query[at] == 'D');
}

bool drops_prepared(std::string_view query) {
    size_t at = 0;
    while (at < query.size()) {
        size_t begin = skip_blank(query, at);
        size_t end = statement_end(query, begin);
        std::string_view statement = query.substr(begin, end - begin);
        size_t cursor = 0;
        std::string head = next_word(statement, cursor);
        if (head == "discard" || head == "deallocate") {
            std::string word = next_word(statement, cursor);
            if (head == "deallocate" && word == "prepare") word = next_word(statement, cursor);
            if (word == "all") return true;
        }
        at = end + 1;
    }
    return false;
}

void apply_change(std::vector<Setting>& settings, const SetChange& change) {
    switch (change.kind) {
        case SetKind::ResetAll:
            settings.clear();
            return;
        case SetKind::Reset:
        case SetKind::Set: {
            for (size_t i = 0; i < settings.size(); ++i) {
                if (settings[i].name != change.name) continue;
                settings.erase(settings.begin() + long(i));
                break;
            }
            if (change.kind == SetKind::Set) settings.push_back({change.name, change.sql, {}});
            return;
        }
    }
}

}  // namespace pgplex::pool
