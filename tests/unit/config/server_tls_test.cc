// Server TLS settings at every level (config/server_tls.h) and the auth and hardening
// settings of [pgplex]: the most specific level wins setting by setting, equal sets share
// one context, and impossible combinations are refused as "file:line: reason".
#include <criterion/criterion.h>

#include <string>

#include "../support.h"
#include "pgplex/config/config.h"

using config_test::load_text;
using config_test::loaded;
using config_test::refused;
using config_test::TempDir;
using pgplex::config::ChannelBinding;
using pgplex::config::Config;
using pgplex::config::LoadResult;
using pgplex::config::TlsNegotiation;
using pgplex::tls::SslMode;

namespace {

const std::string head = "[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"trust\"\n";

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

Test(config_server_tls, an_alias_overrides_pgplex_setting_by_setting) {
    TempDir dir;
    LoadResult result = load_text(
        dir, head +
                 "server_tls_sslmode = \"prefer\"\nserver_channel_binding = \"require\"\n"
                 "[databases.a]\nhost = \"127.0.0.1\"\nserver_tls_sslmode = \"require\"\n"
                 "[databases.b]\nhost = \"127.0.0.1\"\n"
                 "[databases.c]\nhost = \"127.0.0.1\"\nserver_channel_binding = \"disable\"\n");
    const Config& config = loaded(result);
    cr_assert_eq(config.server_tls->settings.mode, SslMode::Prefer);
    const auto* a = config.find_alias("a");
    const auto* b = config.find_alias("b");
    const auto* c = config.find_alias("c");
    cr_assert(a && b && c);
    cr_assert_not_null(a->server_tls.get());
    cr_assert_eq(a->server_tls->settings.mode, SslMode::Require);
    cr_assert_eq(a->server_tls->channel_binding, ChannelBinding::Require, "inherited");
    cr_assert(b->server_tls == nullptr || b->server_tls->same_as(*config.server_tls));
    cr_assert_eq(c->server_tls->settings.mode, SslMode::Prefer, "inherited");
    cr_assert_eq(c->server_tls->channel_binding, ChannelBinding::Disable);
    cr_assert_not_null(a->server_tls->context.get(), "require builds a context");
}

Test(config_server_tls, a_node_overrides_its_cluster_which_overrides_pgplex) {
    TempDir dir;
    LoadResult result =
        load_text(dir, head +
                           "[clusters.c]\nnodes = [\"127.0.0.1:25432\", \"127.0.0.1:25433\"]\n"
                           "server_tls_sslmode = \"require\"\n"
                           "[clusters.c.node_options.\"127.0.0.1:25433\"]\n"
                           "server_tls_sslmode = \"disable\"\n");
    const Config& config = loaded(result);
    const auto* cluster = config.find_cluster("c");
    cr_assert_not_null(cluster);
    const auto* first = cluster->find_node("127.0.0.1:25432");
    const auto* second = cluster->find_node("127.0.0.1:25433");
    cr_assert(first && second);
    cr_assert_eq(first->server_tls->settings.mode, SslMode::Require);
    cr_assert_eq(second->server_tls->settings.mode, SslMode::Disable);
    cr_assert_null(second->server_tls->context.get(), "disable starts in clear: no context");
    cr_assert_eq(config.server_tls->settings.mode, SslMode::Disable, "[pgplex] untouched");
}

Test(config_server_tls, impossible_combinations_are_refused_with_their_line) {
    std::string direct = refused(head +
                                 "server_tls_sslmode = \"prefer\"\n"
                                 "server_tls_negotiation = \"direct\"\n");
    cr_assert(contains(direct, "pgplex.toml:"), "%s", direct.c_str());
    cr_assert(contains(direct, "direct"), "%s", direct.c_str());
    std::string binding = refused(head + "server_channel_binding = \"require\"\n");
    cr_assert(contains(binding, "pgplex.toml:"), "%s", binding.c_str());
    std::string routed = refused(head +
                                 "[clusters.c]\nnodes = [\"127.0.0.1:25432\"]\n"
                                 "[databases.r]\ncluster = \"c\"\n"
                                 "server_tls_sslmode = \"require\"\n");
    cr_assert(contains(routed, "pgplex.toml:"), "%s", routed.c_str());
    std::string mode = refused(head + "server_tls_sslmode = \"sometimes\"\n");
    cr_assert(contains(mode, "pgplex.toml:4"), "%s", mode.c_str());
}

Test(config_server_tls, auth_and_hardening_settings_are_read_and_checked) {
    TempDir dir;
    LoadResult result =
        load_text(dir, head +
                           "auth_user = \"pgplex_auth\"\nauth_dbname = \"postgres\"\n"
                           "auth_cache_ttl = \"250ms\"\nclient_connect_rate_limit = 50\n"
                           "client_login_limit = 8\nclient_stall_timeout = \"30s\"\n"
                           "[databases.a]\nhost = \"127.0.0.1\"\nauth_user = \"other\"\n");
    const Config& config = loaded(result);
    cr_assert_str_eq(config.auth_user.c_str(), "pgplex_auth");
    cr_assert_str_eq(config.auth_query.c_str(),
                     "SELECT uname, phash, valid_until FROM pgplex.user_lookup($1)");
    cr_assert_str_eq(config.auth_dbname.c_str(), "postgres");
    cr_assert_eq(config.auth_cache_ttl_ms, 250);
    cr_assert_eq(config.client_connect_rate_limit, 50);
    cr_assert_eq(config.client_login_limit, 8);
    cr_assert_eq(config.client_stall_timeout_ms, 30'000);
    const auto* alias = config.find_alias("a");
    cr_assert_str_eq(config.auth_user_of(*alias).c_str(), "other");
    std::string no_parameter = refused(head + "auth_query = \"SELECT 1\"\n");
    cr_assert(contains(no_parameter, "pgplex.toml:4: auth_query must name the user"), "%s",
              no_parameter.c_str());
    std::string negative = refused(head + "client_login_limit = -1\n");
    cr_assert(contains(negative, "pgplex.toml:4"), "%s", negative.c_str());
}
