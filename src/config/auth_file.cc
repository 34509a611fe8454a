// PgBouncer's userlist.txt (see auth_file.h), read line by line so every error names the
// line it is on. A line is `"user" "secret"`; anything after the second field is ignored,
// as PgBouncer ignores it. A user listed twice keeps the last secret, as in PgBouncer.
#include "pgplex/config/auth_file.h"

#include "pgplex/base/limits.h"

namespace pgplex::config {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

void skip_spaces(std::string_view& rest) {
    while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
}

// Reads a quoted field at the start of `rest` ("" inside stands for one quote) and moves
// past it. On error sets reason.
bool read_quoted(std::string_view& rest, std::string& field, std::string& reason) {
    field.clear();
    rest.remove_prefix(1);  // the opening quote
    for (;;) {
        size_t quote = rest.find('"');
        if (quote == std::string_view::npos) {
            reason = "unterminated quoted string";
            return false;
        }
        field.append(rest.substr(0, quote));
        rest.remove_prefix(quote + 1);
        if (rest.empty() || rest.front() != '"') return true;
        field.push_back('"');
        rest.remove_prefix(1);
    }
}

// One line that starts with a quote: user then secret.
bool parse_line(std::string_view line, std::string& user, std::string& secret,
                std::string& reason) {
    if (!read_quoted(line, user, reason)) return false;
    if (user.empty()) {
        reason = "empty user name";
        return false;
    }
    if (user.size() > limits::name_bytes_max) {
        reason = "user name longer than " + std::to_string(limits::name_bytes_max) + " bytes";
        return false;
    }
    skip_spaces(line);
    if (line.empty() || line.front() != '"') {
        reason = "missing quoted secret after user \"" + user + "\"";
        return false;
    }
    if (!read_quoted(line, secret, reason)) return false;
    if (secret.size() > limits::password_bytes_max) {
        reason = "secret of user \"" + user + "\" longer than " +
                 std::to_string(limits::password_bytes_max) + " bytes";
        return false;
    }
    return true;
}

}  // namespace

bool parse_auth_file(std::string_view path, std::string_view text,
                     std::unordered_map<std::string, std::string>& users, std::string& error) {
    std::unordered_map<std::string, std::string> parsed;
    std::string user;
    std::string secret;
    std::string reason;
    size_t line_number = 0;
    while (!text.empty()) {
        line_number++;
        size_t newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        skip_spaces(line);
        if (line.empty() || line.front() != '"') continue;  // blank, comment or other text
        if (!parse_line(line, user, secret, reason)) {
            error = std::string(path) + ":" + std::to_string(line_number) + ": " + reason;
            return false;
        }
        parsed.insert_or_assign(user, secret);
    }
    users = std::move(parsed);
    return true;
}

}  // namespace pgplex::config
