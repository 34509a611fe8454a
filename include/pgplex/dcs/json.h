// A small JSON reader for etcd's v3 HTTP/JSON gateway answers (dcs/etcd_codec.h). Debian has
// no JSON library pgplex already depends on, and the answers are a few hundred bytes of plain
// objects, so a careful recursive-descent parser into a small tree is enough: RFC 8259
// syntax, strings decoded to UTF-8 (\u escapes and surrogate pairs), numbers kept as their
// text (etcd sends its 64-bit integers as strings anyway), nesting and size bounded. Every
// byte comes from outside: tests/fuzz/fuzz_etcd.cc runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::dcs {

// etcd's answers pgplex reads are small; a larger one is refused, not parsed.
constexpr size_t json_bytes_max = 1 << 20;
constexpr size_t json_depth_max = 32;

struct Json {
    enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };
    Kind kind = Kind::Null;
    bool boolean = false;
    std::string text;  // String: decoded; Number: as written
    std::vector<Json> items;
    // An object's members, in order, as two parallel vectors (a std::pair of the incomplete
    // Json would not compile); a repeated name: get() finds the first.
    std::vector<std::string> names;
    std::vector<Json> values;

    // The member named `key` of an object; null for anything else or a missing key.
    const Json* get(std::string_view key) const;
    // A String, or a Number (etcd writes int64 as strings, bools and small ints bare).
    bool integer(int64_t& out) const;
};

// Parses the whole of `text` (surrounding white space allowed). On failure `reason` says what
// and where.
bool parse_json(std::string_view text, Json& out, std::string& reason);

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);

}  // namespace pgplex::dcs
