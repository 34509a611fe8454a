// [dcs]: the etcd endpoints, Patroni's TLS and auth setting names, prefix and ttl load
// checked; each mistake is refused as "file:line: reason"; without [dcs] nothing changes.
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "../support.h"

#include <string>

#include "pgplex/config/config.h"

using config_test::load_text;
using config_test::refused;
using config_test::TempDir;

namespace {

constexpr const char* minimal = "[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"trust\"\n";

// [gossip] (lines 4-7) then [dcs] from line 8.
std::string with_dcs(TempDir& dir, const std::string& body) {
    dir.write("gossip.key", std::string(64, 'k'));
    chmod((dir.path() + "/gossip.key").c_str(), 0600);
    return std::string(minimal) +
           "[gossip]\nlisten = \"127.0.0.1:7946\"\nkey_file = \"gossip.key\"\n\n[dcs]\n" + body;
}

}  // namespace

Test(config_dcs, without_dcs_the_quorum_decides) {
    TempDir dir;
    pgplex::config::LoadResult result = load_text(dir, minimal);
    cr_assert(result.config != nullptr, "%s", result.error.c_str());
    cr_assert_not(result.config->dcs.enabled);
}

Test(config_dcs, endpoints_prefix_ttl_and_auth_load) {
    TempDir dir;
    dir.write("etcd.pass", "s3cret\n");
    chmod((dir.path() + "/etcd.pass").c_str(), 0600);
    dir.write("ca.pem", "ca");
    pgplex::config::LoadResult result = load_text(
        dir, with_dcs(dir,
                      "etcd = [\"http://127.0.0.1:2379/\", \"https://etcd2.example:2379\"]\n"
                      "prefix = \"/site/pgplex/\"\nttl = 5\nusername = \"pgplex\"\n"
                      "password_file = \"etcd.pass\"\ncacert = \"ca.pem\"\n"));
    cr_assert(result.config != nullptr, "%s", result.error.c_str());
    const pgplex::config::Dcs& dcs = result.config->dcs;
    cr_assert(dcs.enabled);
    cr_assert_eq(dcs.endpoints.size(), 2u);
    assert_text(dcs.endpoints[0], "http://127.0.0.1:2379");
    assert_text(dcs.prefix, "/site/pgplex");
    cr_assert_eq(dcs.ttl_s, 5);
    assert_text(dcs.password, "s3cret");
    assert_text(dcs.cacert, dir.path() + "/ca.pem");
    result = load_text(dir, with_dcs(dir, "etcd = [\"http://127.0.0.1:2379\"]\n"));
    cr_assert(result.config != nullptr, "%s", result.error.c_str());
    assert_text(result.config->dcs.prefix, "/pgplex");
    cr_assert_eq(result.config->dcs.ttl_s, 10);
}

Test(config_dcs, mistakes_are_refused_with_their_line) {
    TempDir dir;
    std::string etcd = "etcd = [\"http://127.0.0.1:2379\"]\n";
    assert_text(refused(with_dcs(dir, "ttl = 5\n"), dir),
                "DIR/pgplex.toml:8: [dcs] needs etcd = [\"http://host:2379\", ...]");
    assert_text(refused(with_dcs(dir, "etcd = []\n"), dir),
                "DIR/pgplex.toml:9: etcd needs at least one endpoint");
    assert_text(refused(with_dcs(dir, "etcd = [\"127.0.0.1:2379\"]\n"), dir),
                "DIR/pgplex.toml:9: etcd endpoint \"127.0.0.1:2379\" must start with http:// or "
                "https://");
    assert_text(refused(with_dcs(dir, "etcd = [\"http://127.0.0.1:2379/v3\"]\n"), dir),
                "DIR/pgplex.toml:9: etcd endpoint \"http://127.0.0.1:2379/v3\" needs a port "
                "number after the host (and no path)");
    assert_text(refused(with_dcs(dir, etcd + "ttl = 1\n"), dir),
                "DIR/pgplex.toml:10: ttl must be between 2 and 3600");
    assert_text(refused(with_dcs(dir, etcd + "prefix = \"pgplex\"\n"), dir),
                "DIR/pgplex.toml:10: prefix must start with / and hold at most 128 printable "
                "characters");
    assert_text(refused(with_dcs(dir, etcd + "username = \"u\"\n"), dir),
                "DIR/pgplex.toml:8: [dcs] username needs password or password_file");
    assert_text(refused(with_dcs(dir, etcd + "password = \"p\"\n"), dir),
                "DIR/pgplex.toml:8: [dcs] password needs username");
    assert_text(refused(with_dcs(dir, etcd + "cert = \"gossip.key\"\n"), dir),
                "DIR/pgplex.toml:8: [dcs] cert and key go together: set both or neither");
    assert_text(refused(with_dcs(dir, etcd + "cacert = \"none.pem\"\n"), dir),
                "DIR/pgplex.toml:10: cannot read cacert \"DIR/none.pem\": No such file or "
                "directory");
    assert_text(refused(with_dcs(dir, etcd + "hosts = 3\n"), dir),
                "DIR/pgplex.toml:10: unknown setting \"hosts\" in [dcs]");
    assert_text(refused(std::string(minimal) + "[dcs]\n" + etcd, dir),
                "DIR/pgplex.toml:4: [dcs] needs [gossip]: the appliances still find each other "
                "and share what they see of the nodes by gossip");
}

Test(config_dcs, a_password_file_others_may_read_is_refused) {
    TempDir dir;
    dir.write("etcd.pass", "s3cret\n");
    chmod((dir.path() + "/etcd.pass").c_str(), 0644);
    assert_text(refused(with_dcs(dir,
                                 "etcd = [\"http://127.0.0.1:2379\"]\nusername = \"u\"\n"
                                 "password_file = \"etcd.pass\"\n"),
                        dir),
                "DIR/pgplex.toml:11: password_file \"DIR/etcd.pass\" may be read by others: "
                "chmod o-rwx it");
}
