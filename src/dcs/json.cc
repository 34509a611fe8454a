// See dcs/json.h.
#include "pgplex/dcs/json.h"

#include <charconv>

namespace pgplex::dcs {

namespace {

class Parser {
  public:
    explicit Parser(std::string_view text) : text_(text) {}

    bool document(Json& out) {
        skip_space();
        if (!value(out, 0)) return false;
        skip_space();
        return at_ == text_.size() || fail("bytes after the value");
    }
    std::string reason;

  private:
    bool fail(const char* what) {
        if (reason.empty()) reason = std::string(what) + " at byte " + std::to_string(at_);
        return false;
    }
    void skip_space() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' ||
                                      text_[at_] == '\n' || text_[at_] == '\r'))
            ++at_;
    }
    bool literal(std::string_view word) {
        if (text_.substr(at_, word.size()) != word) return fail("a bad literal");
        at_ += word.size();
        return true;
    }
    bool value(Json& out, size_t depth) {
        if (depth >= json_depth_max) return fail("nesting too deep");
        if (at_ >= text_.size()) return fail("a value missing");
        switch (text_[at_]) {
            case '{':
                return object(out, depth);
            case '[':
                return array(out, depth);
            case '"':
                out.kind = Json::Kind::String;
                return string(out.text);
            case 't':
                out.kind = Json::Kind::Bool;
                out.boolean = true;
                return literal("true");
            case 'f':
                out.kind = Json::Kind::Bool;
                return literal("false");
            case 'n':
                out.kind = Json::Kind::Null;
                return literal("null");
            default:
                return number(out);
        }
    }
    bool object(Json& out, size_t depth) {
        out.kind = Json::Kind::Object;
        ++at_;  // {
        skip_space();
        if (at_ < text_.size() && text_[at_] == '}') return ++at_, true;
        for (;;) {
            skip_space();
            std::string key;
            if (at_ >= text_.size() || text_[at_] != '"') return fail("a member name missing");
            if (!string(key)) return false;
            skip_space();
            if (at_ >= text_.size() || text_[at_] != ':') return fail("':' missing");
            ++at_;
            skip_space();
            Json member;
            if (!value(member, depth + 1)) return false;
            out.names.push_back(std::move(key));
            out.values.push_back(std::move(member));
            skip_space();
            if (at_ < text_.size() && text_[at_] == ',') {
                ++at_;
                continue;
            }
            if (at_ < text_.size() && text_[at_] == '}') return ++at_, true;
            return fail("',' or '}' missing");
        }
    }
    bool array(Json& out, size_t depth) {
        out.kind = Json::Kind::Array;
        ++at_;  // [
        skip_space();
        if (at_ < text_.size() && text_[at_] == ']') return ++at_, true;
        for (;;) {
            skip_space();
            Json item;
            if (!value(item, depth + 1)) return false;
            out.items.push_back(std::move(item));
            skip_space();
            if (at_ < text_.size() && text_[at_] == ',') {
                ++at_;
                continue;
            }
            if (at_ < text_.size() && text_[at_] == ']') return ++at_, true;
            return fail("',' or ']' missing");
        }
    }
    bool number(Json& out) {
        size_t start = at_;
        if (at_ < text_.size() && text_[at_] == '-') ++at_;
        auto digits = [&] {
            size_t first = at_;
            while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
            return at_ > first;
        };
        if (at_ < text_.size() && text_[at_] == '0') {
            ++at_;
        } else if (!digits()) {
            return fail("an unexpected character");
        }
        if (at_ < text_.size() && text_[at_] == '.') {
            ++at_;
            if (!digits()) return fail("digits missing after '.'");
        }
        if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
            ++at_;
            if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
            if (!digits()) return fail("digits missing in an exponent");
        }
        out.kind = Json::Kind::Number;
        out.text.assign(text_.substr(start, at_ - start));
        return true;
    }
    bool hex4(uint32_t& out) {
        if (text_.size() - at_ < 4) return fail("a short \\u escape");
        out = 0;
        for (int i = 0; i < 4; ++i) {
            char c = text_[at_++];
            uint32_t digit = c >= '0' && c <= '9'   ? uint32_t(c - '0')
                             : c >= 'a' && c <= 'f' ? uint32_t(c - 'a' + 10)
                             : c >= 'A' && c <= 'F' ? uint32_t(c - 'A' + 10)
                                                    : 16;
            if (digit == 16) return fail("a bad \\u escape");
            out = out * 16 + digit;
        }
        return true;
    }
    static void put_utf8(std::string& out, uint32_t code) {
        if (code < 0x80) {
            out.push_back(char(code));
        } else if (code < 0x800) {
            out.push_back(char(0xc0 | (code >> 6)));
            out.push_back(char(0x80 | (code & 0x3f)));
        } else if (code < 0x10000) {
            out.push_back(char(0xe0 | (code >> 12)));
            out.push_back(char(0x80 | ((code >> 6) & 0x3f)));
            out.push_back(char(0x80 | (code & 0x3f)));
        } else {
            out.push_back(char(0xf0 | (code >> 18)));
            out.push_back(char(0x80 | ((code >> 12) & 0x3f)));
            out.push_back(char(0x80 | ((code >> 6) & 0x3f)));
            out.push_back(char(0x80 | (code & 0x3f)));
        }
    }
    bool escape(std::string& out) {
        if (at_ >= text_.size()) return fail("an unfinished escape");
        char c = text_[at_++];
        switch (c) {
            case '"':
            case '\\':
            case '/':
                out.push_back(c);
                return true;
            case 'b':
                out.push_back('\b');
                return true;
            case 'f':
                out.push_back('\f');
                return true;
            case 'n':
                out.push_back('\n');
                return true;
            case 'r':
                out.push_back('\r');
                return true;
            case 't':
                out.push_back('\t');
                return true;
            case 'u':
                break;
            default:
                return fail("a bad escape");
        }
        uint32_t code = 0;
        if (!hex4(code)) return false;
        if (code >= 0xdc00 && code <= 0xdfff) return fail("a lone low surrogate");
        if (code >= 0xd800 && code <= 0xdbff) {
            uint32_t low = 0;
            if (text_.substr(at_, 2) != "\\u") return fail("a lone high surrogate");
            at_ += 2;
            if (!hex4(low)) return false;
            if (low < 0xdc00 || low > 0xdfff) return fail("a bad surrogate pair");
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        }
        put_utf8(out, code);
        return true;
    }
    bool string(std::string& out) {
        ++at_;  // "
        for (;;) {
            if (at_ >= text_.size()) return fail("an unterminated string");
            char c = text_[at_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20)
                return fail("a control character in a string");
            if (c != '\\') {
                out.push_back(c);
                continue;
            }
            if (!escape(out)) return false;
        }
    }

    std::string_view text_;
    size_t at_ = 0;
};

}  // namespace

const Json* Json::get(std::string_view key) const {
    if (kind != Kind::Object) return nullptr;
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == key) return &values[i];
    return nullptr;
}

bool Json::integer(int64_t& out) const {
    if (kind != Kind::String && kind != Kind::Number) return false;
    const char* first = text.data();
    const char* last = first + text.size();
    auto [end, error] = std::from_chars(first, last, out);
    return error == std::errc{} && end == last && !text.empty();
}

bool parse_json(std::string_view text, Json& out, std::string& reason) {
    out = Json{};
    if (text.size() > json_bytes_max) {
        reason = "larger than " + std::to_string(json_bytes_max) + " bytes";
        return false;
    }
    Parser parser(text);
    if (parser.document(out)) return true;
    reason = parser.reason;
    out = Json{};
    return false;
}

std::string json_quote(std::string_view text) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char c : text) {
        unsigned char byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (byte < 0x20) {
            out += "\\u00";
            out.push_back(hex[byte >> 4]);
            out.push_back(hex[byte & 15]);
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
    return out;
}

}  // namespace pgplex::dcs
