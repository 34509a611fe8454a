// auth_hba_file: client authentication rules in pg_hba.conf's syntax (PostgreSQL's
// client-authentication docs; PgBouncer's auth_type = hba). Each line is
//   local      DATABASE USER METHOD [OPTIONS]
//   host       DATABASE USER ADDRESS METHOD [OPTIONS]     (also hostssl, hostnossl)
// with ADDRESS as CIDR ("10.0.0.0/8", "::1/128"), an address and a mask in two columns, or
// "all". DATABASE and USER are comma lists of names (double quotes keep a keyword a name);
// DATABASE may say "all" or "sameuser", USER "all". METHOD is trust, reject, md5, password,
// scram-sha-256, cert or peer. The first line that matches decides; none matching rejects.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgplex::config {

enum class HbaType : uint8_t { Local, Host, HostSsl, HostNoSsl };
enum class HbaMethod : uint8_t { Trust, Reject, Md5, Password, ScramSha256, Cert, Peer };

const char* to_string(HbaMethod method);

struct HbaRule {
    uint32_t line = 0;
    HbaType type = HbaType::Host;
    bool all_databases = false;
    bool same_user = false;              // "sameuser": the database named as the user
    std::vector<std::string> databases;  // besides the keywords
    bool all_users = false;
    std::vector<std::string> users;
    bool any_address = false;
    sockaddr_storage address{};  // family AF_INET or AF_INET6; host bits cleared
    int prefix_bits = 0;
    HbaMethod method = HbaMethod::Reject;
};

// Who is connecting, as the rules see it.
struct HbaPeer {
    bool local = false;  // over a Unix socket
    bool tls = false;
    const sockaddr* address = nullptr;  // TCP: the client's address; null when unknown
    std::string_view database;
    std::string_view user;
};

struct HbaRules {
    std::string path;
    std::vector<HbaRule> rules;
    // The first rule that matches, or null (the connection is rejected).
    const HbaRule* match(const HbaPeer& peer) const;
};

// Parses the file's text. On error: false, with error "PATH:LINE: reason".
bool parse_hba(const std::string& path, std::string_view text, HbaRules& out, std::string& error);

}  // namespace pgplex::config
