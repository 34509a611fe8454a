// PgBouncer's userlist.txt format: one user a line, `"name" "secret"`, a doubled quote
// ("") standing for a quote inside a field. Lines that do not start with '"' (blank lines,
// comments starting with ';' or '#') are ignored, as PgBouncer does.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

namespace pgplex::config {

// Parses text read from `path` (path only for messages). On error returns false and sets
// error to "path:line: reason".
bool parse_auth_file(std::string_view path, std::string_view text,
                     std::unordered_map<std::string, std::string>& users, std::string& error);

}  // namespace pgplex::config
