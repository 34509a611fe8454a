// Loading pgplex.toml: the documented example loads with every field right, defaults fill
// what is left out, and each kind of mistake is reported as exactly "file:line: reason".
// Each test writes its files into a fresh directory under /tmp.
#include <arpa/inet.h>
#include <criterion/criterion.h>

#include <netinet/in.h>
#include <sys/un.h>
#include "../support.h"

#include <string>
#include <thread>

#include "pgplex/config/config.h"

using pgplex::config::AuthType;
using pgplex::config::Config;
using pgplex::config::LoadResult;
using pgplex::config::PoolMode;
namespace config = pgplex::config;
using config_test::assert_refused;
using config_test::load_text;
using config_test::loaded;
using config_test::refused;
using config_test::TempDir;

namespace {

constexpr const char* example = R"([pgplex]
listen = ["127.0.0.1:6432"]
workers = 2
max_client_conn = 10000
pool_mode = "session"
default_pool_size = 20
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
server_idle_timeout = "600s"
server_lifetime = "3600s"
query_wait_timeout = "120s"

[databases.payam_dw]
host = "127.0.0.1"
port = 5432
dbname = "payam_db"
user = "dataplatform_ro"
password = "secret"
application_name = "readonly_client"
options = "-c default_transaction_read_only=on"
client_encoding = "UNICODE"
datestyle = "ISO"
pool_size = 10

[databases."*"]
host = "127.0.0.1"
port = 5432
)";

// The smallest valid [pgplex]: three lines, so settings added after it start at line 4.
constexpr const char* minimal = "[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"trust\"\n";

}  // namespace

Test(config_load, the_example_config_loads_with_every_field_right) {
    TempDir dir;
    dir.write("userlist.txt",
              "\"dataplatform_ro\" \"secret\"\n\"alice\" \"md5"
              "3175bce1d3201d16594cebf9d7eb3f9d\"\n");
    LoadResult result = load_text(dir, example);
    const Config& c = loaded(result);
    assert_text(c.path, (dir.path() + "/pgplex.toml"));
    cr_assert_eq(c.listen.size(), 1u);
    assert_text(c.listen[0].endpoint.to_string(), "127.0.0.1:6432");
    cr_assert_eq(c.listen[0].endpoint.address.ss_family, AF_INET);
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.max_client_conn, 10000);
    cr_assert_eq(c.pool_mode, PoolMode::Session);
    cr_assert_eq(c.default_pool_size, 20);
    cr_assert_eq(c.auth_type, AuthType::ScramSha256);
    assert_text(c.auth_file, (dir.path() + "/userlist.txt"));
    cr_assert_eq(c.users.size(), 2u);
    assert_text(c.users.at("dataplatform_ro"), "secret");
    assert_text(c.server_reset_query, "DISCARD ALL");
    cr_assert_eq(c.server_idle_timeout_ms, 600'000);
    cr_assert_eq(c.server_lifetime_ms, 3'600'000);
    cr_assert_eq(c.query_wait_timeout_ms, 120'000);
}

Test(config_load, settings_left_out_of_the_example_keep_their_defaults) {
    TempDir dir;
    dir.write("userlist.txt", "");
    LoadResult result = load_text(dir, example);
    const Config& c = loaded(result);
    cr_assert_eq(c.client_login_timeout_ms, 60'000);
    cr_assert_eq(c.server_connect_timeout_ms, 15'000);
    cr_assert_eq(c.shutdown_timeout_ms, 30'000);
    cr_assert(c.log_connections);
    cr_assert(c.log_disconnections);
    assert_text(c.log_level, "info");
    cr_assert_eq(c.buffer_size, 16384u);
    cr_assert_eq(c.buffer_count, 2048u);
    cr_assert_eq(c.reserve_pool_size, 0);
    cr_assert_eq(c.reserve_pool_timeout_ms, 5'000);
    cr_assert_eq(c.reserve_pool_size_of(c.aliases.at(0)), 0);
    cr_assert_eq(c.min_pool_size, 0);
    cr_assert_eq(c.min_pool_size_of(c.aliases.at(0)), 0);
}

Test(config_load, the_example_alias_has_every_field_right) {
    TempDir dir;
    dir.write("userlist.txt", "");
    LoadResult result = load_text(dir, example);
    const Config& c = loaded(result);
    cr_assert_eq(c.aliases.size(), 1u);
    const config::Alias& a = c.aliases[0];
    assert_text(a.name, "payam_dw");
    cr_assert_eq(a.line, 14u);
    assert_text(a.server.to_string(), "127.0.0.1:5432");
    cr_assert_eq(a.server.address.ss_family, AF_INET);
    assert_text(a.dbname, "payam_db");
    assert_text(a.user, "dataplatform_ro");
    assert_text(a.password, "secret");
    cr_assert_eq(a.pool_size, 10);
    cr_assert_eq(c.pool_size(a), 10);
    cr_assert_not(a.pool_mode_set);
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"application_name", "readonly_client"},
        {"client_encoding", "UTF8"},  // "UNICODE" is sent as its canonical name
        {"DateStyle", "ISO"},
        {"options", "-c default_transaction_read_only=on"},
    };
    cr_assert(a.startup_parameters == expected);
}

Test(config_load, the_star_database_becomes_the_fallback) {
    TempDir dir;
    dir.write("userlist.txt", "");
    LoadResult result = load_text(dir, example);
    const Config& c = loaded(result);
    cr_assert_not_null(c.fallback.get());
    assert_text(c.fallback->name, "*");
    cr_assert_eq(c.fallback->line, 26u);
    assert_text(c.fallback->server.to_string(), "127.0.0.1:5432");
    cr_assert(c.fallback->startup_parameters.empty());
    cr_assert_eq(c.fallback->pool_size, -1);
    cr_assert_eq(c.pool_size(*c.fallback), 20);
}

Test(config_load, find_alias_prefers_an_exact_name_then_the_fallback) {
    TempDir dir;
    dir.write("userlist.txt", "");
    LoadResult with_fallback = load_text(dir, example);
    const Config& c = loaded(with_fallback);
    cr_assert_eq(c.find_alias("payam_dw"), &c.aliases[0]);
    cr_assert_eq(c.find_alias("other"), c.fallback.get());
    cr_assert_eq(c.find_alias("PAYAM_DW"), c.fallback.get());

    LoadResult without = load_text(dir, std::string(minimal) + "[databases.app]\n");
    const Config& d = loaded(without);
    cr_assert_not_null(d.find_alias("app"));
    cr_assert_null(d.find_alias("other"));
}

Test(config_load, a_database_without_host_uses_the_default_unix_socket) {
    TempDir dir;
    LoadResult result = load_text(dir, std::string(minimal) + "[databases.app]\nport = 5433\n");
    const config::Alias& a = loaded(result).aliases.at(0);
    cr_assert(a.server.is_unix());
    assert_text(a.server.to_string(), "/var/run/postgresql/.s.PGSQL.5433");
    const auto* address = reinterpret_cast<const sockaddr_un*>(&a.server.address);
    cr_assert_eq(address->sun_family, AF_UNIX);
    assert_text(address->sun_path, "/var/run/postgresql/.s.PGSQL.5433");
}

Test(config_load, a_database_pool_mode_of_session_is_recorded) {
    TempDir dir;
    LoadResult result =
        load_text(dir, std::string(minimal) + "[databases.app]\npool_mode = \"session\"\n");
    const config::Alias& a = loaded(result).aliases.at(0);
    cr_assert(a.pool_mode_set);
    cr_assert_eq(a.pool_mode, PoolMode::Session);
}

Test(config_load, workers_zero_means_one_per_cpu) {
    TempDir dir;
    LoadResult result = load_text(dir, std::string(minimal) + "workers = 0\n");
    unsigned cpus = std::thread::hardware_concurrency();
    cr_assert_eq(loaded(result).workers, int(cpus == 0 ? 1 : cpus > 64 ? 64 : cpus));
}

Test(config_load, listen_accepts_several_addresses_a_star_and_ipv6) {
    TempDir dir;
    LoadResult result =
        load_text(dir, "[pgplex]\nauth_type = \"trust\"\nlisten = [\"*:6432\", \"[::1]:6433\"]\n");
    const Config& c = loaded(result);
    cr_assert_eq(c.listen.size(), 2u);
    const auto* any = reinterpret_cast<const sockaddr_in*>(&c.listen[0].endpoint.address);
    cr_assert_eq(any->sin_family, AF_INET);
    cr_assert_eq(any->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_assert_eq(ntohs(any->sin_port), 6432);
    cr_assert_eq(c.listen[1].endpoint.address.ss_family, AF_INET6);
    assert_text(c.listen[1].endpoint.to_string(), "[::1]:6433");
}

Test(config_load, durations_accept_units_and_whole_seconds) {
    TempDir dir;
    LoadResult result = load_text(dir, std::string(minimal) +
                                           "server_idle_timeout = \"250ms\"\n"
                                           "server_lifetime = \"10m\"\n"
                                           "query_wait_timeout = \"1h\"\n"
                                           "client_login_timeout = 5\n"
                                           "server_connect_timeout = \"0\"\n"
                                           "shutdown_timeout = 0\n");
    const Config& c = loaded(result);
    cr_assert_eq(c.server_idle_timeout_ms, 250);
    cr_assert_eq(c.server_lifetime_ms, 600'000);
    cr_assert_eq(c.query_wait_timeout_ms, 3'600'000);
    cr_assert_eq(c.client_login_timeout_ms, 5'000);
    cr_assert_eq(c.server_connect_timeout_ms, 0);
    cr_assert_eq(c.shutdown_timeout_ms, 0);
}

Test(config_load, parse_duration_ms_accepts_only_digits_and_a_known_unit) {
    int64_t ms = -1;
    cr_assert(config::parse_duration_ms("600s", ms) && ms == 600'000);
    cr_assert(config::parse_duration_ms("250ms", ms) && ms == 250);
    cr_assert(config::parse_duration_ms("10m", ms) && ms == 600'000);
    cr_assert(config::parse_duration_ms("1h", ms) && ms == 3'600'000);
    cr_assert(config::parse_duration_ms("42", ms) && ms == 42'000);
    cr_assert(config::parse_duration_ms("0", ms) && ms == 0);
    for (const char* bad : {"", "s", "-1s", "1.5s", "10 s", "10S", "10d", "1e3", " 1s", "1s ",
                            "999999999999999999h"}) {
        cr_assert_not(config::parse_duration_ms(bad, ms), "accepted \"%s\"", bad);
    }
}

Test(config_load, a_relative_auth_file_is_found_beside_the_config_file) {
    TempDir dir;
    dir.write("secrets/users.txt", "\"alice\" \"pw\"\n");
    LoadResult result =
        load_text(dir, std::string(minimal) + "auth_file = \"secrets/users.txt\"\n");
    const Config& c = loaded(result);
    assert_text(c.auth_file, (dir.path() + "/secrets/users.txt"));
    assert_text(c.users.at("alice"), "pw");
}

Test(config_load, an_absolute_auth_file_is_used_as_is) {
    TempDir dir, other;
    std::string users = other.write("users.txt", "\"bob\" \"pw\"\n");
    LoadResult result = load_text(dir, std::string(minimal) + "auth_file = \"" + users + "\"\n");
    const Config& c = loaded(result);
    assert_text(c.auth_file, users);
    cr_assert_eq(c.users.count("bob"), 1u);
}

Test(config_load, auth_file_errors_carry_the_auth_file_name_and_line) {
    TempDir dir;
    dir.write("userlist.txt", "\"alice\" \"pw\"\n; comment\n\"bob\" \"unterminated\n");
    assert_text(refused(std::string(minimal) + "auth_file = \"userlist.txt\"\n", dir),
                "DIR/userlist.txt:3: unterminated quoted string");
}

Test(config_load, a_missing_auth_file_is_an_error_on_its_line) {
    TempDir dir;
    assert_text(refused(std::string(minimal) + "auth_file = \"nope.txt\"\n", dir),
                "DIR/pgplex.toml:4: cannot read auth_file \"DIR/nope.txt\": No such file "
                "or directory");
}

Test(config_load, an_auth_file_that_is_not_a_regular_file_is_an_error) {
    TempDir dir;
    dir.write("users.d/placeholder", "");
    assert_text(refused(std::string(minimal) + "auth_file = \"users.d\"\n", dir),
                "DIR/pgplex.toml:4: cannot read auth_file \"DIR/users.d\": not a regular file");
}

Test(config_load, auth_file_is_required_unless_auth_type_is_trust) {
    TempDir dir;
    assert_text(refused("\n[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"md5\"\n", dir),
                "DIR/pgplex.toml:2: auth_file is required when auth_type is \"md5\"");
    assert_text(refused("[pgplex]\nlisten = \"127.0.0.1:6432\"\n", dir),
                "DIR/pgplex.toml:1: auth_file is required when auth_type is "
                "\"scram-sha-256\"");
}

Test(config_load, an_unknown_setting_names_its_section_and_line) {
    assert_refused(std::string(minimal) + "foo = 1\n",
                   "DIR/pgplex.toml:4: unknown setting \"foo\" in [pgplex]");
    assert_refused(std::string(minimal) +
                       "\n[databases.payam_dw]\nhost = \"127.0.0.1\"\n"
                       "hots = \"x\"\n",
                   "DIR/pgplex.toml:7: unknown setting \"hots\" in [databases.payam_dw]");
    assert_refused(std::string(minimal) + "[databases.\"*\"]\nbar = 1\n",
                   "DIR/pgplex.toml:5: unknown setting \"bar\" in [databases.\"*\"]");
}

Test(config_load, an_unknown_section_or_top_level_key_is_an_error) {
    assert_refused(std::string(minimal) + "[pgbouncer]\nlisten_port = 6432\n",
                   "DIR/pgplex.toml:4: unknown section [pgbouncer]");
    assert_refused(std::string("verbose = true\n") + minimal,
                   "DIR/pgplex.toml:1: unknown setting \"verbose\" outside any section");
}

Test(config_load, a_value_of_the_wrong_type_is_an_error) {
    assert_refused(std::string(minimal) + "max_client_conn = \"many\"\n",
                   "DIR/pgplex.toml:4: max_client_conn must be an integer");
    assert_refused(std::string(minimal) + "log_connections = \"yes\"\n",
                   "DIR/pgplex.toml:4: log_connections must be true or false");
    assert_refused(std::string(minimal) + "server_reset_query = 1\n",
                   "DIR/pgplex.toml:4: server_reset_query must be a string");
    assert_refused(std::string(minimal) + "[databases.app]\nport = \"5432\"\n",
                   "DIR/pgplex.toml:5: port must be an integer");
    assert_refused(std::string(minimal) + "[databases]\napp = 1\n",
                   "DIR/pgplex.toml:5: [databases.app] must be a table");
}

Test(config_load, a_value_out_of_range_is_an_error) {
    assert_refused(std::string(minimal) + "workers = 257\n",
                   "DIR/pgplex.toml:4: workers must be between 0 and 64");
    assert_refused(std::string(minimal) + "max_client_conn = 0\n",
                   "DIR/pgplex.toml:4: max_client_conn must be between 1 and 1000000");
    assert_refused(std::string(minimal) + "buffer_size = 5000\n",
                   "DIR/pgplex.toml:4: buffer_size must be a power of two between 4096 and "
                   "1048576");
    assert_refused(std::string(minimal) + "buffer_count = 65536\n",
                   "DIR/pgplex.toml:4: buffer_count must be a power of two between 64 and 32768");
    assert_refused(std::string(minimal) + "[databases.app]\nport = 0\n",
                   "DIR/pgplex.toml:5: port must be between 1 and 65535");
}

Test(config_load, an_unknown_word_lists_the_accepted_ones) {
    assert_refused(std::string(minimal) + "log_level = \"verbose\"\n",
                   "DIR/pgplex.toml:4: log_level must be one of \"error\", \"warning\", "
                   "\"notice\", \"info\", \"debug\"");
    assert_refused("[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"password\"\n",
                   "DIR/pgplex.toml:3: auth_type must be one of \"trust\", \"md5\", "
                   "\"scram-sha-256\", \"hba\"");
}

Test(config_load, a_bad_duration_is_an_error) {
    const char* reason =
        " must be a duration such as \"250ms\", \"600s\", \"10m\" or \"1h\", "
        "or a whole number of seconds";
    assert_refused(std::string(minimal) + "server_lifetime = \"1 hour\"\n",
                   (std::string("DIR/pgplex.toml:4: server_lifetime") + reason).c_str());
    assert_refused(std::string(minimal) + "query_wait_timeout = true\n",
                   (std::string("DIR/pgplex.toml:4: query_wait_timeout") + reason).c_str());
    assert_refused(std::string(minimal) + "shutdown_timeout = -5\n",
                   "DIR/pgplex.toml:4: shutdown_timeout must not be negative");
}

Test(config_load, pool_mode_transaction_is_taken_globally_and_per_alias) {
    TempDir dir;
    LoadResult result =
        load_text(dir, std::string(minimal) + "pool_mode = \"transaction\"\n" +
                           "[databases.app]\npool_mode = \"session\"\n" + "[databases.other]\n");
    const Config& c = loaded(result);
    cr_assert_eq(c.pool_mode, PoolMode::Transaction);
    cr_assert_eq(c.pool_mode_of(c.aliases.at(0), "alice"), PoolMode::Session);
    cr_assert_eq(c.pool_mode_of(c.aliases.at(1), "alice"), PoolMode::Transaction);
}

Test(config_load, pool_mode_statement_is_taken_everywhere_a_pool_mode_is) {
    TempDir dir;
    std::string text = std::string(minimal) +
                       "pool_mode = \"statement\"\n"
                       "[databases.app]\npool_mode = \"statement\"\n"
                       "[databases.other]\n"
                       "[users.alice]\npool_mode = \"statement\"\n";
    LoadResult result = load_text(dir, text);
    const Config& c = loaded(result);
    cr_assert_eq(c.pool_mode, PoolMode::Statement);
    cr_assert_eq(c.aliases.at(0).pool_mode, PoolMode::Statement);
    cr_assert_eq(c.pool_mode_of(c.aliases.at(1), "bob"), PoolMode::Statement);
    cr_assert_eq(c.user_settings.at("alice").pool_mode, PoolMode::Statement);
}

Test(config_load, a_bad_pool_mode_is_an_error) {
    const char* reason = " must be one of \"session\", \"transaction\", \"statement\"";
    assert_refused(std::string(minimal) + "pool_mode = \"statements\"\n",
                   (std::string("DIR/pgplex.toml:4: pool_mode") + reason).c_str());
    assert_refused(std::string(minimal) + "[databases.app]\npool_mode = \"Statement\"\n",
                   (std::string("DIR/pgplex.toml:5: pool_mode") + reason).c_str());
}

Test(config_load, reserve_pool_size_is_taken_globally_and_per_alias) {
    TempDir dir;
    std::string text = std::string(minimal) +
                       "reserve_pool_size = 3\n"
                       "reserve_pool_timeout = \"1500ms\"\n"
                       "[databases.app]\nreserve_pool_size = 0\n"
                       "[databases.other]\n";
    LoadResult result = load_text(dir, text);
    const Config& c = loaded(result);
    cr_assert_eq(c.reserve_pool_size, 3);
    cr_assert_eq(c.reserve_pool_timeout_ms, 1'500);
    cr_assert_eq(c.reserve_pool_size_of(c.aliases.at(0)), 0);
    cr_assert_eq(c.reserve_pool_size_of(c.aliases.at(1)), 3);
}

Test(config_load, a_bad_reserve_pool_setting_is_an_error) {
    assert_refused(std::string(minimal) + "reserve_pool_size = -1\n",
                   "DIR/pgplex.toml:4: reserve_pool_size must be between 0 and 10000");
    assert_refused(std::string(minimal) + "[databases.app]\nreserve_pool_size = \"2\"\n",
                   "DIR/pgplex.toml:5: reserve_pool_size must be an integer");
    assert_refused(std::string(minimal) + "[databases.app]\nreserve_pool_size = 10001\n",
                   "DIR/pgplex.toml:5: reserve_pool_size must be between 0 and 10000");
    assert_refused(std::string(minimal) + "reserve_pool_timeout = \"5 s\"\n",
                   "DIR/pgplex.toml:4: reserve_pool_timeout must be a duration such as "
                   "\"250ms\", \"600s\", \"10m\" or \"1h\", or a whole number of seconds");
    assert_refused(std::string(minimal) + "reserve_pool_timeout = -1\n",
                   "DIR/pgplex.toml:4: reserve_pool_timeout must not be negative");
}

Test(config_load, min_pool_size_is_taken_globally_and_per_alias_and_capped_at_the_pool_size) {
    TempDir dir;
    std::string text = std::string(minimal) +
                       "min_pool_size = 4\n"
                       "default_pool_size = 10\n"
                       "[databases.app]\nmin_pool_size = 0\n"
                       "[databases.other]\n"
                       "[databases.small]\npool_size = 2\n";
    LoadResult result = load_text(dir, text);
    const Config& c = loaded(result);
    cr_assert_eq(c.min_pool_size, 4);
    cr_assert_eq(c.min_pool_size_of(c.aliases.at(0)), 0);
    cr_assert_eq(c.min_pool_size_of(c.aliases.at(1)), 4);
    cr_assert_eq(c.aliases.at(2).min_pool_size, -1);
    cr_assert_eq(c.min_pool_size_of(c.aliases.at(2)), 2);  // PgBouncer caps it too
}

Test(config_load, a_bad_min_pool_size_is_an_error) {
    assert_refused(std::string(minimal) + "min_pool_size = -1\n",
                   "DIR/pgplex.toml:4: min_pool_size must be between 0 and 10000");
    assert_refused(std::string(minimal) + "min_pool_size = 1.5\n",
                   "DIR/pgplex.toml:4: min_pool_size must be an integer");
    assert_refused(std::string(minimal) + "[databases.app]\nmin_pool_size = 20000\n",
                   "DIR/pgplex.toml:5: min_pool_size must be between 0 and 10000");
}

// PgBouncer's precedence: [users] over the database over [pgbouncer], where the user is the
// one the pool logs in as (the alias's forced user, else the client's).
Test(config_load, a_users_pool_mode_wins_over_the_alias_and_pgplex_ones) {
    TempDir dir;
    std::string text = std::string(minimal) +
                       "pool_mode = \"session\"\n"
                       "[databases.app]\npool_mode = \"session\"\n"
                       "[databases.forced]\nuser = \"etl\"\npool_mode = \"transaction\"\n"
                       "[users.alice]\npool_mode = \"transaction\"\n"
                       "[users.etl]\npool_mode = \"session\"\n"
                       "[users.\"bob.smith\"]\n";
    LoadResult result = load_text(dir, text);
    const Config& c = loaded(result);
    const config::Alias& app = c.aliases.at(0);
    const config::Alias& forced = c.aliases.at(1);
    cr_assert_eq(c.user_settings.size(), 3u);
    cr_assert_eq(c.user_settings.at("alice").line, 10u);
    cr_assert_not(c.user_settings.at("bob.smith").pool_mode_set);
    cr_assert_eq(c.pool_mode_of(app, "alice"), PoolMode::Transaction);
    cr_assert_eq(c.pool_mode_of(app, "bob.smith"), PoolMode::Session);
    cr_assert_eq(c.pool_mode_of(app, "carol"), PoolMode::Session);
    cr_assert_eq(c.pool_mode_of(forced, "alice"), PoolMode::Session);
    cr_assert_eq(c.pool_mode_of(forced, "carol"), PoolMode::Session);
}

Test(config_load, a_bad_users_table_is_an_error) {
    assert_refused(std::string(minimal) + "[users]\nalice = \"pool_mode=session\"\n",
                   "DIR/pgplex.toml:5: [users.alice] must be a table");
    assert_refused(std::string(minimal) + "[users.alice]\nmax_user_connections = -1\n",
                   "DIR/pgplex.toml:5: max_user_connections must be between 0 and 1000000");
    assert_refused(std::string(minimal) + "[users.\"a b\"]\npool_size = 5\n",
                   "DIR/pgplex.toml:5: unknown setting \"pool_size\" in [users.\"a b\"]");
    assert_refused(std::string(minimal) + "[users.alice]\npool_mode = \"batch\"\n",
                   "DIR/pgplex.toml:5: pool_mode must be one of \"session\", \"transaction\", "
                   "\"statement\"");
    assert_refused(std::string(minimal) + "[users.alice]\npool_mode = 1\n",
                   "DIR/pgplex.toml:5: pool_mode must be a string");
    assert_refused(std::string("users = 1\n") + minimal,
                   "DIR/pgplex.toml:1: users must be a table");
    assert_refused(std::string(minimal) + "[users.\"\"]\n",
                   "DIR/pgplex.toml:4: user name must be 1 to 63 bytes long");
    assert_refused(std::string(minimal) + "[users." + std::string(64, 'u') + "]\n",
                   "DIR/pgplex.toml:4: user name must be 1 to 63 bytes long");
}

Test(config_load, a_bad_listen_address_is_an_error) {
    assert_refused("[pgplex]\nauth_type = \"trust\"\nlisten = \"127.0.0.1\"\n",
                   "DIR/pgplex.toml:3: bad listen address \"127.0.0.1\": expected host:port");
    assert_refused("[pgplex]\nauth_type = \"trust\"\nlisten = \"127.0.0.1:65536\"\n",
                   "DIR/pgplex.toml:3: bad listen address \"127.0.0.1:65536\": port must be a "
                   "number from 1 to 65535");
    assert_refused("[pgplex]\nauth_type = \"trust\"\nlisten = []\n",
                   "DIR/pgplex.toml:3: listen must name at least one address");
    assert_refused("[pgplex]\nauth_type = \"trust\"\nlisten = [6432]\n",
                   "DIR/pgplex.toml:3: listen must be a string or an array of strings");
    assert_refused("[pgplex]\nauth_type = \"trust\"\n",
                   "DIR/pgplex.toml:1: listen is required in [pgplex]");
}

Test(config_load, the_same_listen_address_twice_is_an_error) {
    assert_refused(
        "[pgplex]\nauth_type = \"trust\"\n"
        "listen = [\"127.0.0.1:6432\",\n  \"127.0.0.1:6432\"]\n",
        "DIR/pgplex.toml:4: listen address \"127.0.0.1:6432\" is given twice");
}

Test(config_load, an_unresolvable_host_is_an_error_on_the_host_line) {
    std::string error = refused(std::string(minimal) +
                                "[databases.app]\nport = 5432\nhost = \"no-such-host.invalid\"\n");
    // The resolver's own words follow (they differ with and without a network).
    const char* expected = "DIR/pgplex.toml:6: could not resolve host \"no-such-host.invalid\": ";
    cr_assert(error.starts_with(expected), "%s", error.c_str());
}

Test(config_load, a_password_without_a_user_is_an_error) {
    assert_refused(std::string(minimal) + "[databases.app]\npassword = \"pw\"\n",
                   "DIR/pgplex.toml:5: password is given without user");
}

Test(config_load, a_missing_pgplex_section_is_an_error) {
    assert_refused("", "DIR/pgplex.toml:1: no [pgplex] section");
    assert_refused("[databases.app]\nhost = \"127.0.0.1\"\n",
                   "DIR/pgplex.toml:1: no [pgplex] section");
}

Test(config_load, a_toml_syntax_error_reports_its_line) {
    std::string error = refused(std::string(minimal) + "\nworkers = = 2\n");
    cr_assert(error.starts_with("DIR/pgplex.toml:5: "), "%s", error.c_str());
    error = refused("[pgplex]\nlisten = \"127.0.0.1:6432\nauth_type = \"trust\"\n");
    cr_assert(error.starts_with("DIR/pgplex.toml:2: "), "%s", error.c_str());
}

Test(config_load, a_missing_config_file_is_an_error) {
    LoadResult result = config::load("/tmp/pgplex-no-such-dir/pgplex.toml");
    cr_assert_null(result.config.get());
    assert_text(result.error,
                "/tmp/pgplex-no-such-dir/pgplex.toml: cannot read: No such file or "
                "directory");
}

Test(config_load, names_of_modes_and_auth_types_read_as_in_the_config) {
    assert_text(config::to_string(PoolMode::Session), "session");
    assert_text(config::to_string(PoolMode::Transaction), "transaction");
    assert_text(config::to_string(PoolMode::Statement), "statement");
    assert_text(config::to_string(AuthType::Trust), "trust");
    assert_text(config::to_string(AuthType::Md5), "md5");
    assert_text(config::to_string(AuthType::ScramSha256), "scram-sha-256");
}

Test(config_load, pin_on_session_state_is_a_boolean_globally_and_per_alias) {
    TempDir dir;
    LoadResult result = load_text(dir, std::string(minimal) +
                                           "pin_on_session_state = false\n"
                                           "[databases.a]\npin_on_session_state = true\n"
                                           "[databases.b]\nport = 5433\n");
    const Config& c = loaded(result);
    cr_assert_not(c.pin_on_session_state);
    cr_assert(c.pin_on_session_state_of(*c.find_alias("a")));
    cr_assert_not(c.pin_on_session_state_of(*c.find_alias("b")));
    TempDir defaults;
    LoadResult plain = load_text(defaults, minimal);
    cr_assert(loaded(plain).pin_on_session_state, "on unless turned off");
    assert_refused(std::string(minimal) + "pin_on_session_state = \"yes\"\n",
                   "DIR/pgplex.toml:4: pin_on_session_state must be true or false");
    cr_assert_eq(loaded(plain).max_prepared_statements, 200);
    assert_refused(std::string(minimal) + "max_prepared_statements = -1\n",
                   "DIR/pgplex.toml:4: max_prepared_statements must be between 0 and 100000");
}

Test(config_load, unix_socket_dir_adds_a_socket_per_tcp_port_after_the_listen_addresses) {
    TempDir dir;
    LoadResult result = load_text(dir,
                                  "[pgplex]\nlisten = [\"127.0.0.1:6432\", \"127.0.0.2:6432\", "
                                  "\"127.0.0.1:7432\"]\nauth_type = \"trust\"\n"
                                  "unix_socket_dir = \"/run/pgx\"\nunix_socket_mode = \"0770\"\n");
    const config::Config& c = loaded(result);
    cr_assert_eq(c.listen.size(), 5u);
    assert_text(c.listen[3].endpoint.to_string(), "/run/pgx/.s.PGSQL.6432");
    assert_text(c.listen[4].endpoint.to_string(), "/run/pgx/.s.PGSQL.7432");
    cr_assert_eq(c.unix_socket_mode, 0770);
}

Test(config_load, unix_socket_dir_named_in_listen_too_is_not_added_twice) {
    TempDir dir;
    LoadResult result = load_text(dir,
                                  "[pgplex]\nlisten = [\"127.0.0.1:6432\", \"/run/pgx:6432\"]\n"
                                  "auth_type = \"trust\"\nunix_socket_dir = \"/run/pgx\"\n");
    cr_assert_eq(loaded(result).listen.size(), 2u);
}

Test(config_load, unix_socket_mode_must_be_octal_and_the_dir_absolute) {
    std::string error = refused(std::string(minimal) + "unix_socket_mode = \"0779\"\n");
    cr_assert(error.find("octal") != std::string::npos, "%s", error.c_str());
    error = refused(std::string(minimal) + "unix_socket_dir = \"run\"\n");
    cr_assert(error.find("absolute") != std::string::npos, "%s", error.c_str());
    TempDir dir;
    LoadResult result = load_text(dir, std::string(minimal) + "unix_socket_mode = 0o700\n");
    cr_assert_eq(loaded(result).unix_socket_mode, 0700);
}

// --- SET from the management console ---------------------------------------------------------

Test(load, set_takes_a_live_setting_checked_as_the_file_would_be) {
    std::string reason;
    cr_assert(pgplex::config::check_override("default_pool_size", "5", reason), "%s",
              reason.c_str());
    cr_assert(pgplex::config::check_override("query_wait_timeout", "'30s'", reason), "%s",
              reason.c_str());
    cr_assert(pgplex::config::check_override("server_reset_query", "DISCARD ALL", reason),
              "a bare word is a string, as PgBouncer's SET takes it: %s", reason.c_str());
    cr_assert_not(pgplex::config::check_override("default_pool_size", "many", reason));
    cr_assert(reason.find("default_pool_size") != std::string::npos, "%s", reason.c_str());
    cr_assert_not(pgplex::config::check_override("query_wait_timeout", "'soon'", reason));
    cr_assert_not(pgplex::config::check_override("listen", "'127.0.0.1:1'", reason),
                  "listen needs a restart");
    cr_assert_not(pgplex::config::check_override("no_such_setting", "1", reason));
    cr_assert(pgplex::config::check_override("log_level", "debug", reason), "%s", reason.c_str());
    cr_assert_not(pgplex::config::check_override("log_level", "chatty", reason));
}
