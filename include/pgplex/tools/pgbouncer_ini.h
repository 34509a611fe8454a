// PgBouncer's configuration as `pgplex import-pgbouncer` reads it: the ini file (with its
// %include files) and the connection strings of its [databases] and [users] sections.
//
// Parsing is pure (text in, entries out) so the fuzz target and the unit tests drive it
// without files; read_ini() adds the file system: %include, cycles and size limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgplex::tools {

// An ini file larger than PgBouncer's own configurations ever get is refused rather than
// read: the importer runs by hand, but an %include of /dev/zero must still end.
inline constexpr size_t ini_file_bytes_max = 4 << 20;
// All files read for one import together: %include is not nested past the depth limit, but
// a file may include another many times over (no cycle), which would multiply.
inline constexpr size_t ini_total_bytes_max = 16 << 20;
// %include nesting deeper than this is a mistake (PgBouncer has no limit; a cycle would
// recurse until the stack ends there).
inline constexpr int ini_include_depth_max = 16;

// One "key = value" line, in the section it was under, with where it was read.
struct IniEntry {
    std::string section;  // lower case: "pgbouncer", "databases", "users", "peers", ...
    std::string key;      // as written (database and user names keep their case)
    std::string value;    // unquoted
    std::string file;
    uint32_t line = 0;
};

// A line that was not understood, or an %include that could not be followed.
struct IniProblem {
    std::string file;
    uint32_t line = 0;
    std::string reason;
};

struct IniDocument {
    std::vector<IniEntry> entries;  // in file order, %include files in place
    std::vector<IniProblem> problems;
};

// One line's kind once parsed.
enum class IniLineKind : uint8_t {
    Blank,    // empty or a comment (';' or '#')
    Section,  // "[name]": name in IniLine::key, lower case
    Pair,     // "key = value"
    Include,  // "%include path": path in IniLine::value
    Bad,      // anything else: IniLine::value says why
};

struct IniLine {
    IniLineKind kind = IniLineKind::Blank;
    std::string key;
    std::string value;
};

// Parses one line (without its newline) as PgBouncer's ini reader does: keys are case
// insensitive, a value may be quoted with ' or " (a doubled quote stands for one).
IniLine parse_ini_line(std::string_view line);

// Parses the text of one file into `document`, section carried in and out through
// `section` (an %include continues the section it is in). Include lines call
// include(path, line) so the caller decides how to follow them.
template <typename Include>
void parse_ini_text(std::string_view text, const std::string& file, std::string& section,
                    IniDocument& document, Include&& include);

// Reads `path` and every file it %includes (relative paths beside the including file),
// refusing a cycle and nesting past ini_include_depth_max as problems. Returns false only
// when `path` itself cannot be read (reason set).
bool read_ini(const std::string& path, IniDocument& document, std::string& reason);

// A libpq-style connection string of [databases]/[users]: "key=value key='quoted value'".
// Returns false (reason set) on a syntax error; pairs holds what came before it.
bool parse_connection_string(std::string_view text,
                             std::vector<std::pair<std::string, std::string>>& pairs,
                             std::string& reason);

// ---- implementation of the template ----

template <typename Include>
void parse_ini_text(std::string_view text, const std::string& file, std::string& section,
                    IniDocument& document, Include&& include) {
    uint32_t number = 0;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view raw = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        ++number;
        IniLine line = parse_ini_line(raw);
        switch (line.kind) {
            case IniLineKind::Blank:
                break;
            case IniLineKind::Section:
                section = line.key;
                break;
            case IniLineKind::Pair:
                document.entries.push_back({section, line.key, line.value, file, number});
                break;
            case IniLineKind::Include:
                include(line.value, number);
                break;
            case IniLineKind::Bad:
                document.problems.push_back({file, number, line.value});
                break;
        }
    }
}

}  // namespace pgplex::tools
