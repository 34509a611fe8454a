// See hba.h.
#include "pgplex/config/hba.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace pgplex::config {

namespace {

constexpr size_t line_bytes_max = 8192;  // PostgreSQL's MAX_LINE is 8192 too
constexpr size_t rules_max = 10000;

// One name of a field's comma list, and whether it was quoted (a quoted keyword is a name).
struct Name {
    std::string text;
    bool quoted = false;
};
// One field of a line: its comma list (a field with no comma is a list of one).
struct Token {
    std::vector<Name> names;
    const std::string& text() const { return names.front().text; }
    bool single() const { return names.size() == 1; }
};

// Splits a line into fields at blanks and each field into names at commas, honouring
// double quotes ("" inside quotes is a quote) and ending at an unquoted '#'. False: an
// unterminated quote.
bool tokenize(std::string_view line, std::vector<Token>& fields) {
    Token current;
    Name name;
    bool in_field = false;
    bool in_quotes = false;
    auto end_field = [&]() {
        if (!in_field) return;
        current.names.push_back(std::move(name));
        fields.push_back(std::move(current));
        current = Token{};
        name = Name{};
        in_field = false;
    };
    for (size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (in_quotes) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                name.text += '"';
                ++i;
            } else if (c == '"') {
                in_quotes = false;
            } else {
                name.text += c;
            }
            continue;
        }
        if (c == '#') break;
        if (c == ' ' || c == '\t' || c == '\r') {
            end_field();
            continue;
        }
        in_field = true;
        if (c == '"') {
            in_quotes = true;
            name.quoted = true;
        } else if (c == ',') {
            current.names.push_back(std::move(name));
            name = Name{};
        } else {
            name.text += c;
        }
    }
    if (in_quotes) return false;
    end_field();
    return true;
}

bool parse_method(std::string_view text, HbaMethod& out) {
    static constexpr HbaMethod methods[] = {
        HbaMethod::Trust,       HbaMethod::Reject, HbaMethod::Md5, HbaMethod::Password,
        HbaMethod::ScramSha256, HbaMethod::Cert,   HbaMethod::Peer};
    for (HbaMethod method : methods) {
        if (text == to_string(method)) {
            out = method;
            return true;
        }
    }
    return false;
}

// "10.0.0.0/8", "::1/128", or a bare address (then the mask column gives the prefix).
bool parse_address(const std::string& text, sockaddr_storage& out, int& prefix, bool& has_prefix) {
    std::string host = text;
    has_prefix = false;
    size_t slash = text.find('/');
    if (slash != std::string::npos) {
        host = text.substr(0, slash);
        std::string bits = text.substr(slash + 1);
        if (bits.empty() || bits.size() > 3 ||
            !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return false;
        prefix = std::stoi(bits);
        has_prefix = true;
    }
    out = sockaddr_storage{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return !has_prefix || prefix <= 32;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return !has_prefix || prefix <= 128;
    }
    return false;
}

// A netmask ("255.255.255.0") as a prefix length; false if it is not contiguous.
bool mask_bits(const std::string& text, int family, int& prefix) {
    uint8_t bytes[16] = {};
    if (inet_pton(family, text.c_str(), bytes) != 1) return false;
    size_t size = family == AF_INET ? 4 : 16;
    prefix = 0;
    bool ended = false;
    for (size_t i = 0; i < size; ++i) {
        for (int bit = 7; bit >= 0; --bit) {
            bool set = (bytes[i] >> bit) & 1;
            if (set && ended) return false;
            if (set)
                ++prefix;
            else
                ended = true;
        }
    }
    return true;
}

const uint8_t* address_bytes(const sockaddr_storage& address, size_t& size) {
    if (address.ss_family == AF_INET) {
        size = 4;
        return reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr);
    }
    size = 16;
    return reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr);
}

bool prefix_matches(const uint8_t* a, const uint8_t* b, int bits) {
    int whole = bits / 8;
    if (memcmp(a, b, size_t(whole)) != 0) return false;
    int rest = bits % 8;
    if (rest == 0) return true;
    uint8_t mask = uint8_t(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool address_matches(const HbaRule& rule, const sockaddr* peer) {
    if (rule.any_address) return true;
    if (peer == nullptr) return false;
    sockaddr_storage client{};
    memcpy(&client, peer, peer->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) matches IPv4 rules.
    if (client.ss_family == AF_INET6 && rule.address.ss_family == AF_INET) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&client);
        if (!IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) return false;
        return prefix_matches(v6->sin6_addr.s6_addr + 12,
                              reinterpret_cast<const uint8_t*>(
                                  &reinterpret_cast<const sockaddr_in*>(&rule.address)->sin_addr),
                              rule.prefix_bits);
    }
    if (client.ss_family != rule.address.ss_family) return false;
    size_t size = 0;
    const uint8_t* mine = address_bytes(client, size);
    const uint8_t* theirs = address_bytes(rule.address, size);
    return prefix_matches(mine, theirs, rule.prefix_bits);
}

bool name_matches(const std::vector<std::string>& names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

struct LineParser {
    const std::string& path;
    uint32_t line;
    std::string& error;

    bool fail(const std::string& reason) {
        error = path + ":" + std::to_string(line) + ": " + reason;
        return false;
    }
    bool parse(const std::vector<Token>& fields, HbaRule& rule) {
        rule.line = line;
        const std::string& type = fields[0].text();
        if (type == "local")
            rule.type = HbaType::Local;
        else if (type == "host")
            rule.type = HbaType::Host;
        else if (type == "hostssl")
            rule.type = HbaType::HostSsl;
        else if (type == "hostnossl")
            rule.type = HbaType::HostNoSsl;
        else if (type == "hostgssenc" || type == "hostnogssenc")
            return fail("connection type \"" + type + "\" is not supported (pgplex has no GSSAPI)");
        else
            return fail("invalid connection type \"" + type + "\"");
        size_t want = rule.type == HbaType::Local ? 4 : 5;
        if (fields.size() < want)
            return fail("end-of-line before " +
                        std::string(fields.size() < 2                ? "database specification"
                                    : fields.size() < 3              ? "role specification"
                                    : fields.size() < 4 && want == 5 ? "IP address specification"
                                                                     : "authentication method"));
        if (!parse_names(fields[1], true, rule) || !parse_names(fields[2], false, rule))
            return false;
        size_t method_at = 3;
        if (rule.type != HbaType::Local) {
            if (!parse_host(fields, rule, method_at)) return false;
            if (fields.size() <= method_at) return fail("end-of-line before authentication method");
        }
        if (!parse_method(fields[method_at].text(), rule.method))
            return fail("invalid authentication method \"" + fields[method_at].text() + "\"");
        if (rule.method == HbaMethod::Cert && rule.type != HbaType::HostSsl)
            return fail("cert authentication is only supported on hostssl connections");
        if (rule.method == HbaMethod::Peer && rule.type != HbaType::Local)
            return fail("peer authentication is only supported on local sockets");
        for (size_t i = method_at + 1; i < fields.size(); ++i) {
            if (fields[i].text().find('=') == std::string::npos)
                return fail("authentication option not in name=value format: " + fields[i].text());
        }
        return true;
    }
    bool parse_names(const Token& field, bool databases, HbaRule& rule) {
        for (const Name& item : field.names) {
            const std::string& name = item.text;
            bool keyword = !item.quoted;
            if (name.empty()) return fail("empty name in a comma list");
            if (keyword && name.starts_with("@")) return fail("@file inclusion is not supported");
            if (keyword && name == "all") {
                (databases ? rule.all_databases : rule.all_users) = true;
            } else if (databases && keyword && name == "sameuser") {
                rule.same_user = true;
            } else if (databases && keyword &&
                       (name == "samerole" || name == "samegroup" || name == "replication")) {
                return fail("database keyword \"" + name + "\" is not supported");
            } else if (!databases && keyword && name.starts_with("+")) {
                return fail("group membership (\"" + name + "\") is not supported");
            } else {
                (databases ? rule.databases : rule.users).push_back(name);
            }
        }
        return true;
    }
    bool parse_host(const std::vector<Token>& fields, HbaRule& rule, size_t& method_at) {
        const std::string& text = fields[3].text();
        if (text == "all") {
            rule.any_address = true;
            method_at = 4;
            return true;
        }
        if (text == "samehost" || text == "samenet")
            return fail("\"" + text + "\" is not supported; give the addresses");
        bool has_prefix = false;
        if (!parse_address(text, rule.address, rule.prefix_bits, has_prefix))
            return fail("invalid IP address \"" + text + "\" (host names are not supported)");
        method_at = 4;
        if (!has_prefix) {
            if (fields.size() < 6) return fail("end-of-line before netmask specification");
            if (!mask_bits(fields[4].text(), rule.address.ss_family, rule.prefix_bits))
                return fail("invalid IP mask \"" + fields[4].text() + "\"");
            method_at = 5;
        }
        return true;
    }
};

}  // namespace

const char* to_string(HbaMethod method) {
    switch (method) {
        case HbaMethod::Trust:
            return "trust";
        case HbaMethod::Reject:
            return "reject";
        case HbaMethod::Md5:
            return "md5";
        case HbaMethod::Password:
            return "password";
        case HbaMethod::ScramSha256:
            return "scram-sha-256";
        case HbaMethod::Cert:
            return "cert";
        case HbaMethod::Peer:
            return "peer";
    }
    return "?";
}

bool parse_hba(const std::string& path, std::string_view text, HbaRules& out, std::string& error) {
    out.path = path;
    out.rules.clear();
    uint32_t line = 0;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string_view::npos) end = text.size();
        std::string_view one = text.substr(at, end - at);
        at = end + 1;
        ++line;
        LineParser parser{path, line, error};
        if (one.size() > line_bytes_max) return parser.fail("line too long");
        if (one.find('\0') != std::string_view::npos) return parser.fail("NUL byte in the file");
        std::vector<Token> fields;
        if (!tokenize(one, fields)) return parser.fail("unterminated quoted string");
        if (fields.empty()) continue;
        if (out.rules.size() >= rules_max) return parser.fail("too many rules");
        HbaRule rule;
        if (!parser.parse(fields, rule)) return false;
        out.rules.push_back(std::move(rule));
    }
    return true;
}

const HbaRule* HbaRules::match(const HbaPeer& peer) const {
    for (const HbaRule& rule : rules) {
        if (peer.local != (rule.type == HbaType::Local)) continue;
        if (rule.type == HbaType::HostSsl && !peer.tls) continue;
        if (rule.type == HbaType::HostNoSsl && peer.tls) continue;
        if (!peer.local && !address_matches(rule, peer.address)) continue;
        bool database = rule.all_databases || (rule.same_user && peer.database == peer.user) ||
                        name_matches(rule.databases, peer.database);
        if (!database) continue;
        if (!rule.all_users && !name_matches(rule.users, peer.user)) continue;
        return &rule;
    }
    return nullptr;
}

}  // namespace pgplex::config
