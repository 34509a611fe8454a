// See pgbouncer_ini.h. The grammar is the one PgBouncer's ini reader accepts: "[section]",
// "key = value", "%include file", comments from ';' or '#' at the start of a line. Every
// problem names its file and line, because the importer reports rather than refuses.
#include "pgplex/tools/pgbouncer_ini.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace pgplex::tools {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

bool is_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == '*' || c == '$';
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

IniLine bad(std::string reason) {
    return {IniLineKind::Bad, {}, std::move(reason)};
}

// A quoted value: the text between the quotes, a doubled quote standing for one; nothing
// but spaces may follow the closing quote.
bool unquote(std::string_view text, std::string& out) {
    char quote = text.front();
    for (size_t i = 1; i < text.size(); ++i) {
        if (text[i] != quote) {
            out += text[i];
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == quote) {
            out += quote;
            ++i;
            continue;
        }
        return trimmed(text.substr(i + 1)).empty();
    }
    return false;
}

IniLine parse_pair(std::string_view line) {
    size_t equals = line.find('=');
    if (equals == std::string_view::npos) return bad("no \"=\" in this line");
    std::string_view key = trimmed(line.substr(0, equals));
    std::string_view value = trimmed(line.substr(equals + 1));
    if (key.empty()) return bad("no key before \"=\"");
    // Quoted keys name databases such as "my db"; other keys are plain words.
    std::string key_text;
    if (key.front() == '"') {
        if (!unquote(key, key_text) || key_text.empty()) return bad("bad quoted key");
    } else {
        for (char c : key)
            if (!is_key_char(c)) return bad("bad character in key");
        key_text = std::string(key);
    }
    std::string value_text;
    if (!value.empty() && (value.front() == '"' || value.front() == '\'')) {
        if (!unquote(value, value_text)) return bad("unterminated quoted value");
    } else {
        value_text = std::string(value);
    }
    return {IniLineKind::Pair, std::move(key_text), std::move(value_text)};
}

}  // namespace

IniLine parse_ini_line(std::string_view line) {
    line = trimmed(line);
    if (line.empty() || line.front() == ';' || line.front() == '#') return {};
    if (line.front() == '[') {
        if (line.back() != ']') return bad("section header without \"]\"");
        std::string_view name = trimmed(line.substr(1, line.size() - 2));
        if (name.empty()) return bad("empty section name");
        return {IniLineKind::Section, lower(name), {}};
    }
    if (line.substr(0, 8) == "%include") {
        std::string_view path = trimmed(line.substr(8));
        if (path.empty() || !is_space(line[8])) return bad("%include without a file");
        return {IniLineKind::Include, {}, std::string(path)};
    }
    return parse_pair(line);
}

namespace {

struct Reader {
    IniDocument& document;
    std::vector<std::string> open;  // canonical paths of the files being read, outermost first
    std::string section;
    size_t total_bytes = 0;  // of every file read so far

    bool read(const std::string& path, std::string& reason);
};

bool read_file(const std::string& path, std::string& text, std::string& reason) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
        reason = "is a directory";
        return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        reason = "cannot open it";
        return false;
    }
    char chunk[65536];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
        text.append(chunk, size_t(in.gcount()));
        if (text.size() > ini_file_bytes_max) {
            reason = "larger than " + std::to_string(ini_file_bytes_max) + " bytes";
            return false;
        }
    }
    return true;
}

std::string canonical(const std::string& path) {
    std::error_code error;
    std::filesystem::path resolved = std::filesystem::weakly_canonical(path, error);
    return error ? path : resolved.string();
}

bool Reader::read(const std::string& path, std::string& reason) {
    std::string text;
    if (!read_file(path, text, reason)) return false;
    total_bytes += text.size();
    if (total_bytes > ini_total_bytes_max) {
        reason =
            "the files read add up to more than " + std::to_string(ini_total_bytes_max) + " bytes";
        return false;
    }
    open.push_back(canonical(path));
    std::string directory = std::filesystem::path(path).parent_path().string();
    auto include = [&](const std::string& target, uint32_t line) {
        std::string resolved = target;
        if (target.front() != '/' && !directory.empty()) resolved = directory + "/" + target;
        std::string problem;
        if (std::find(open.begin(), open.end(), canonical(resolved)) != open.end())
            problem = "%include " + target + " is a cycle: it is already being read";
        else if (open.size() >= size_t(ini_include_depth_max))
            problem = "%include nested deeper than " + std::to_string(ini_include_depth_max);
        else if (std::string why; !read(resolved, why))
            problem = "cannot %include " + resolved + ": " + why;
        if (!problem.empty()) document.problems.push_back({path, line, problem});
    };
    parse_ini_text(text, path, section, document, include);
    open.pop_back();
    return true;
}

}  // namespace

bool read_ini(const std::string& path, IniDocument& document, std::string& reason) {
    Reader reader{document, {}, {}};
    return reader.read(path, reason);
}

namespace {

bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// A value after "key=": 'quoted' (\' and '' stand for a quote, \\ for a backslash) or a
// run of non-space characters.
bool connection_value(std::string_view& rest, std::string& out, std::string& reason) {
    if (rest.empty() || rest.front() != '\'') {
        size_t end = 0;
        while (end < rest.size() && !is_space(rest[end])) ++end;
        out = std::string(rest.substr(0, end));
        rest.remove_prefix(end);
        return true;
    }
    for (size_t i = 1; i < rest.size(); ++i) {
        char c = rest[i];
        bool escaped = (c == '\\' || c == '\'') && i + 1 < rest.size() &&
                       (rest[i + 1] == '\'' || (c == '\\' && rest[i + 1] == '\\'));
        if (escaped) {
            out += rest[++i];
        } else if (c == '\'') {
            rest.remove_prefix(i + 1);
            return true;
        } else {
            out += c;
        }
    }
    reason = "unterminated quoted value";
    return false;
}

}  // namespace

bool parse_connection_string(std::string_view text,
                             std::vector<std::pair<std::string, std::string>>& pairs,
                             std::string& reason) {
    std::string_view rest = trimmed(text);
    while (!rest.empty()) {
        size_t end = 0;
        while (end < rest.size() && is_word_char(rest[end])) ++end;
        if (end == 0) {
            reason = "expected a key at \"" + std::string(rest.substr(0, 20)) + "\"";
            return false;
        }
        std::string key = lower(rest.substr(0, end));
        rest = trimmed(rest.substr(end));
        if (rest.empty() || rest.front() != '=') {
            reason = "expected \"=\" after " + key;
            return false;
        }
        rest = trimmed(rest.substr(1));
        std::string value;
        if (!connection_value(rest, value, reason)) return false;
        pairs.emplace_back(std::move(key), std::move(value));
        rest = trimmed(rest);
    }
    return true;
}

}  // namespace pgplex::tools
