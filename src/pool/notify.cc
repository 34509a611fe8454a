// See notify.h. Reading LISTEN and UNLISTEN with the lexer session_state.cc uses for SET:
// statements are found at semicolons outside quotes and comments, and only their head is
// read. A channel is a ColId (sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS): folded to
// lower case unless double-quoted, and cut to NAMEDATALEN - 1 bytes as PostgreSQL cuts it.
#include "pgplex/pool/notify.h"

#include <algorithm>

#include "pgplex/base/limits.h"
#include "pgplex/pool/session_state.h"

namespace pgplex::pool {

namespace {

char ascii_lower(char ch) {
    return ch >= 'A' && ch <= 'Z' ? char(ch - 'A' + 'a') : ch;
}

bool identifier_start(char ch) {
    auto byte = static_cast<unsigned char>(ch);
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || byte >= 0x80;
}

bool identifier_char(char ch) {
    return identifier_start(ch) || (ch >= '0' && ch <= '9') || ch == '$';
}

// PostgreSQL's truncate_identifier: at most name_bytes_max bytes, never half a UTF-8
// character.
void truncate(std::string& name) {
    if (name.size() <= limits::name_bytes_max) return;
    size_t size = limits::name_bytes_max;
    while (size > 0 && (static_cast<unsigned char>(name[size]) & 0xc0) == 0x80) --size;
    name.resize(size);
}

// A double-quoted identifier from `at` (on the opening quote): "" stands for one quote.
bool read_quoted(std::string_view text, size_t& at, std::string& out) {
    for (++at; at < text.size(); ++at) {
        if (text[at] != '"') {
            out += text[at];
        } else if (at + 1 < text.size() && text[at + 1] == '"') {
            out += '"';
            ++at;
        } else {
            ++at;
            return !out.empty();  // a zero-length delimited identifier is an error
        }
    }
    return false;
}

bool read_identifier(std::string_view text, size_t& at, std::string& out) {
    out.clear();
    if (at >= text.size()) return false;
    if (text[at] == '"') {
        if (!read_quoted(text, at, out)) return false;
    } else if (identifier_start(text[at])) {
        while (at < text.size() && identifier_char(text[at])) out += ascii_lower(text[at++]);
    } else {
        return false;
    }
    truncate(out);
    return true;
}

enum class Read : uint8_t { Other, Listen, Unreadable };

// One statement (no semicolon, blanks skipped at its start).
Read read_statement(std::string_view statement, ListenChange& change) {
    size_t at = 0;
    std::string head;
    while (at < statement.size() && identifier_char(statement[at]))
        head += ascii_lower(statement[at++]);
    if (head != "listen" && head != "unlisten") return Read::Other;
    change.kind = head == "listen" ? ListenKind::Listen : ListenKind::Unlisten;
    at = skip_blank(statement, at);
    if (change.kind == ListenKind::Unlisten && at < statement.size() && statement[at] == '*') {
        change.kind = ListenKind::UnlistenAll;
        change.channel.clear();
        ++at;
    } else if (!read_identifier(statement, at, change.channel)) {
        return Read::Unreadable;
    }
    return skip_blank(statement, at) == statement.size() ? Read::Listen : Read::Unreadable;
}

}  // namespace

bool may_listen(std::string_view query) {
    static constexpr std::string_view word = "listen";
    for (size_t i = 0; i + word.size() <= query.size(); ++i) {
        if (ascii_lower(query[i]) != 'l') continue;
        size_t k = 1;
        while (k < word.size() && ascii_lower(query[i + k]) == word[k]) ++k;
        if (k == word.size()) return true;
    }
    return false;
}

ListenQuery parse_listen(std::string_view query, std::vector<ListenChange>& changes) {
    changes.clear();
    bool listens = false, others = false, unreadable = false;
    size_t at = 0;
    while (at < query.size()) {
        size_t begin = skip_blank(query, at);
        size_t end = statement_end(query, begin);
        at = end + 1;
        if (end == begin) continue;  // an empty statement, or the end
        ListenChange change;
        switch (read_statement(query.substr(begin, end - begin), change)) {
            case Read::Other:
                others = true;
                break;
            case Read::Unreadable:
                listens = unreadable = true;
                break;
            case Read::Listen:
                listens = true;
                changes.push_back(std::move(change));
                break;
        }
    }
    if (!listens) return ListenQuery::None;
    if (others) return ListenQuery::Mixed;
    if (unreadable) return ListenQuery::Unreadable;
    if (changes.size() > limits::listen_statements_per_query_max) return ListenQuery::TooMany;
    return ListenQuery::Only;
}

const char* listen_refusal(ListenQuery kind) {
    switch (kind) {
        case ListenQuery::Mixed:
            return "pgplex answers LISTEN and UNLISTEN itself in transaction pooling: send "
                   "them in a Query of their own, not with other statements";
        case ListenQuery::TooMany:
            return "too many LISTEN and UNLISTEN statements in one Query for pgplex "
                   "(at most 100)";
        case ListenQuery::Unreadable:
            return "pgplex cannot read this LISTEN or UNLISTEN statement (write the channel "
                   "as a plain or double-quoted identifier)";
        case ListenQuery::None:
        case ListenQuery::Only:
            break;
    }
    return "";
}

const char* listen_tag(ListenKind kind) {
    return kind == ListenKind::Listen ? "LISTEN" : "UNLISTEN";
}

std::string listen_sql(ListenKind kind, std::string_view channel) {
    if (kind == ListenKind::UnlistenAll) return "UNLISTEN *";
    std::string sql = kind == ListenKind::Listen ? "LISTEN \"" : "UNLISTEN \"";
    for (char ch : channel) {
        if (ch == '"') sql += '"';
        sql += ch;
    }
    sql += '"';
    return sql;
}

void apply_listen(std::vector<std::string>& channels, const std::vector<ListenChange>& changes) {
    for (const ListenChange& change : changes) {
        auto found = std::find(channels.begin(), channels.end(), change.channel);
        switch (change.kind) {
            case ListenKind::Listen:
                if (found == channels.end()) channels.push_back(change.channel);
                break;
            case ListenKind::Unlisten:
                if (found != channels.end()) channels.erase(found);
                break;
            case ListenKind::UnlistenAll:
                channels.clear();
                break;
        }
    }
}

std::string encode_listen(const std::vector<ListenChange>& changes) {
    std::string text = "C";
    for (const ListenChange& change : changes) {
        text += change.kind == ListenKind::Listen     ? 'L'
                : change.kind == ListenKind::Unlisten ? 'U'
                                                      : '*';
        text += change.channel;
        text += '\0';
    }
    return text;
}

std::string encode_listen_error(std::string_view error_body) {
    std::string text = "E";
    text += error_body;
    return text;
}

bool decode_listen(std::string_view text, std::vector<ListenChange>& changes,
                   std::string_view& error_body) {
    changes.clear();
    if (!text.empty() && text[0] == 'E') {
        error_body = text.substr(1);
        return false;
    }
    size_t at = 1;
    while (at < text.size()) {
        size_t end = text.find('\0', at);
        if (end == std::string_view::npos) break;
        ListenChange change;
        change.kind = text[at] == 'L'   ? ListenKind::Listen
                      : text[at] == 'U' ? ListenKind::Unlisten
                                        : ListenKind::UnlistenAll;
        change.channel.assign(text.substr(at + 1, end - at - 1));
        changes.push_back(std::move(change));
        at = end + 1;
    }
    return true;
}

}  // namespace pgplex::pool
