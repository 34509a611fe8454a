// [gossip]: listen, peers and key_file load numeric and checked; each mistake is refused as
// "file:line: reason", and a key file others may read is refused like a TLS key would be.
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
const std::string key(64, 'k');

// A directory holding gossip.key (mode 0600 unless told).
void write_key(TempDir& dir, const std::string& text = key, mode_t mode = 0600) {
    dir.write("gossip.key", text);
    chmod((dir.path() + "/gossip.key").c_str(), mode);
}

std::string with_gossip(const std::string& body) {
    return std::string(minimal) + "[gossip]\n" + body;
}

}  // namespace

Test(config_gossip, without_gossip_the_appliance_decides_alone) {
    TempDir dir;
    pgplex::config::LoadResult result = load_text(dir, minimal);
    cr_assert(result.config != nullptr, "%s", result.error.c_str());
    cr_assert_not(result.config->gossip.enabled);
}

Test(config_gossip, listen_peers_and_key_load_numeric) {
    TempDir dir;
    write_key(dir, key + "\n");
    pgplex::config::LoadResult result =
        load_text(dir, with_gossip("listen = \"127.0.0.1:7946\"\n"
                                   "peers = [\"127.0.0.2:7946\", \"[::1]:7947\"]\n"
                                   "key_file = \"gossip.key\"\nlease = \"2s\"\n"));
    cr_assert(result.config != nullptr, "%s", result.error.c_str());
    const pgplex::config::Gossip& gossip = result.config->gossip;
    cr_assert(gossip.enabled);
    assert_text(gossip.self, "127.0.0.1:7946");
    cr_assert_eq(gossip.peer_names.size(), 2u);
    assert_text(gossip.peer_names[0], "127.0.0.2:7946");
    assert_text(gossip.peer_names[1], "[::1]:7947");
    cr_assert_eq(gossip.key.size(), 64u, "the trailing newline is not part of the key");
    cr_assert_eq(gossip.lease_ms, 2000);
    cr_assert_eq(gossip.probe_interval_ms, 500);
    assert_text(gossip.key_file, dir.path() + "/gossip.key");
}

Test(config_gossip, mistakes_are_refused_with_their_line) {
    TempDir dir;
    write_key(dir);
    std::string peers = "peers = [\"127.0.0.2:7946\"]\nkey_file = \"gossip.key\"\n";
    assert_text(refused(with_gossip(peers), dir), "DIR/pgplex.toml:4: [gossip] needs listen");
    assert_text(refused(with_gossip("listen = \"/tmp:7946\"\n" + peers), dir),
                "DIR/pgplex.toml:5: listen needs an IP address and port, not \"/tmp:7946\"");
    assert_text(refused(with_gossip("listen = \"127.0.0.1\"\n" + peers), dir),
                "DIR/pgplex.toml:5: listen has a bad address \"127.0.0.1\": expected host:port");
    assert_text(refused(with_gossip("listen = \"127.0.0.2:7946\"\n" + peers), dir),
                "DIR/pgplex.toml:6: peers names this appliance's own listen 127.0.0.2:7946");
    assert_text(refused(with_gossip("listen = \"127.0.0.1:7946\"\n"
                                    "peers = [\"127.0.0.2:7946\", \"127.0.0.2:7946\"]\n"
                                    "key_file = \"gossip.key\"\n"),
                        dir),
                "DIR/pgplex.toml:6: peers names 127.0.0.2:7946 twice");
    assert_text(refused(with_gossip("listen = \"127.0.0.1:7946\"\npeers = []\n"), dir),
                "DIR/pgplex.toml:4: [gossip] needs key_file");
    assert_text(refused(with_gossip("listen = \"127.0.0.1:7946\"\nfanout = 3\n"), dir),
                "DIR/pgplex.toml:6: unknown setting \"fanout\" in [gossip]");
    assert_text(
        refused(with_gossip("listen = \"127.0.0.1:7946\"\n" + peers + "probe_timeout = \"1s\"\n"),
                dir),
        "DIR/pgplex.toml:4: [gossip] probe_timeout must be shorter than probe_interval");
}

Test(config_gossip, a_short_or_readable_key_is_refused) {
    TempDir dir;
    std::string body =
        "listen = \"127.0.0.1:7946\"\npeers = [\"127.0.0.2:7946\"]\nkey_file = \"gossip.key\"\n";
    write_key(dir, "short\n");
    assert_text(refused(with_gossip(body), dir),
                "DIR/pgplex.toml:7: key_file \"DIR/gossip.key\" holds 5 bytes; at least 32 are "
                "needed (openssl rand -hex 32 makes one)");
    write_key(dir, key, 0644);
    assert_text(refused(with_gossip(body), dir),
                "DIR/pgplex.toml:7: key_file \"DIR/gossip.key\" may be read by others: chmod "
                "o-rwx it");
    assert_text(refused(with_gossip("listen = \"127.0.0.1:7946\"\nkey_file = \"none.key\"\n"), dir),
                "DIR/pgplex.toml:6: cannot read key_file \"DIR/none.key\": No such file or "
                "directory");
}
