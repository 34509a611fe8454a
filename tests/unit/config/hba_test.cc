// auth_hba_file (config/hba.h): pg_hba.conf lines parsed as PostgreSQL reads them, the
// first match deciding, and refused lines named by file, line and reason.
#include "pgplex/config/hba.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "../support.h"

using pgplex::config::HbaMethod;
using pgplex::config::HbaPeer;
using pgplex::config::HbaRules;
using pgplex::config::parse_hba;

namespace {

HbaRules parsed(const std::string& text) {
    HbaRules rules;
    std::string error;
    cr_assert(parse_hba("hba.conf", text, rules, error), "%s", error.c_str());
    return rules;
}

std::string refused(const std::string& text) {
    HbaRules rules;
    std::string error;
    cr_assert(!parse_hba("hba.conf", text, rules, error), "accepted: %s", text.c_str());
    return error;
}

struct Address {
    sockaddr_storage storage{};
    explicit Address(const char* text) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
        if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
            v4->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
            v6->sin6_family = AF_INET6;
    }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// The method of the first rule matching, or "none".
std::string decide(const HbaRules& rules, const char* address, const char* database,
                   const char* user, bool tls = false) {
    Address peer(address);
    HbaPeer who;
    who.tls = tls;
    who.address = peer.get();
    who.database = database;
    who.user = user;
    const pgplex::config::HbaRule* rule = rules.match(who);
    return rule == nullptr ? "none" : pgplex::config::to_string(rule->method);
}

}  // namespace

Test(hba, first_match_wins_with_addresses_databases_and_users) {
    HbaRules rules = parsed(
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
        "host    all       evil  0.0.0.0/0  reject\n"
        "hostssl app,\"all\" alice 10.1.0.0/16 cert\n"
        "host    app       alice,bob 10.0.0.0 255.0.0.0 scram-sha-256   # inline comment\n"
        "host    sameuser  all   127.0.0.1/32 trust\n"
        "\n"
        "host    all       all   ::1/128   md5\n"
        "host    all       all   192.168.1.0/24 password\n");
    cr_assert_eq(rules.rules.size(), 6u);
    assert_text(decide(rules, "10.2.3.4", "app", "evil"), "reject");
    assert_text(decide(rules, "10.1.3.4", "app", "alice", true), "cert");
    assert_text(decide(rules, "10.1.3.4", "app", "alice", false), "scram-sha-256");
    assert_text(decide(rules, "10.1.3.4", "all", "alice", true), "cert");  // "all" quoted: a name
    assert_text(decide(rules, "10.1.3.4", "other", "alice", true), "none");
    assert_text(decide(rules, "11.0.0.1", "app", "bob"), "none");
    assert_text(decide(rules, "127.0.0.1", "carol", "carol"), "trust");
    assert_text(decide(rules, "127.0.0.1", "app", "carol"), "none");
    assert_text(decide(rules, "::1", "app", "dave"), "md5");
    assert_text(decide(rules, "::ffff:192.168.1.77", "x", "y"), "password");  // mapped IPv4
    assert_text(decide(rules, "192.168.2.1", "x", "y"), "none");
}

Test(hba, hostnossl_and_local_lines) {
    HbaRules rules = parsed(
        "local all all peer\n"
        "hostnossl all all all reject\n"
        "hostssl all all all scram-sha-256\n");
    assert_text(decide(rules, "10.0.0.1", "d", "u", false), "reject");
    assert_text(decide(rules, "10.0.0.1", "d", "u", true), "scram-sha-256");
    HbaPeer local;
    local.local = true;
    local.database = "d";
    local.user = "u";
    cr_assert(rules.match(local) != nullptr);
    assert_text(pgplex::config::to_string(rules.match(local)->method), "peer");
}

Test(hba, refused_lines_say_file_line_and_reason) {
    assert_text(refused("host all all 10.0.0.0/8 trust\nhots all all all trust\n"),
                "hba.conf:2: invalid connection type \"hots\"");
    assert_text(refused("host all all\n"),
                "hba.conf:1: end-of-line before IP address specification");
    assert_text(refused("host all all 10.0.0.0/33 trust\n"),
                "hba.conf:1: invalid IP address \"10.0.0.0/33\" (host names are not supported)");
    assert_text(refused("host all all 10.0.0.0 255.0.255.0 trust\n"),
                "hba.conf:1: invalid IP mask \"255.0.255.0\"");
    assert_text(refused("host all all all ldap\n"),
                "hba.conf:1: invalid authentication method \"ldap\"");
    assert_text(refused("host all all all cert\n"),
                "hba.conf:1: cert authentication is only supported on hostssl connections");
    assert_text(refused("host all \"unterminated all all trust\n"),
                "hba.conf:1: unterminated quoted string");
    assert_text(refused("host all +admins all trust\n"),
                "hba.conf:1: group membership (\"+admins\") is not supported");
    assert_text(refused("host @dbs all all trust\n"),
                "hba.conf:1: @file inclusion is not supported");
    assert_text(refused("host all all all trust clientcert\n"),
                "hba.conf:1: authentication option not in name=value format: clientcert");
}

Test(hba, an_address_only_rule_never_matches_an_unknown_address) {
    HbaRules rules = parsed("host all all 0.0.0.0/0 trust\n");
    HbaPeer who;
    who.database = "d";
    who.user = "u";
    cr_assert(rules.match(who) == nullptr);
}
