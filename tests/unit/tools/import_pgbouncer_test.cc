// pgplex import-pgbouncer: PgBouncer's ini lines and connection strings as PgBouncer reads
// them, and the pgplex.toml it prints: every setting either taken or a comment naming its
// file:line, and a result that pgplex itself loads.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>
#include <utility>
#include <vector>

#include "pgplex/tools/import_pgbouncer.h"
#include "pgplex/tools/pgbouncer_ini.h"

using namespace pgplex::tools;
using config_test::TempDir;

namespace {

IniDocument document_of(const std::string& text) {
    IniDocument document;
    std::string section;
    parse_ini_text(text, "pgbouncer.ini", section, document,
                   [&](const std::string& path, uint32_t line) {
                       document.problems.push_back({"pgbouncer.ini", line, "include " + path});
                   });
    return document;
}

std::string imported(const std::string& text) {
    return import_pgbouncer(document_of(text), "pgbouncer.ini");
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

#define assert_contains(text, part)                                                     \
    cr_assert(contains((text), (part)), "no \"%s\" in:\n%s", std::string(part).c_str(), \
              std::string(text).c_str())

}  // namespace

Test(import_pgbouncer, sections_keys_quotes_and_comments_are_read_as_pgbouncer_does) {
    IniDocument document = document_of(
        "; comment\n# comment\n[PgBouncer]\n  Listen_Port = 6433  \n"
        "auth_query = \"SELECT \"\"x\"\"\"\n[databases]\n\"my db\" = dbname=x\n");
    cr_assert_eq(document.entries.size(), 3u);
    assert_text(document.entries[0].section, "pgbouncer");
    assert_text(document.entries[0].key, "Listen_Port");
    assert_text(document.entries[0].value, "6433");
    cr_assert_eq(document.entries[0].line, 4u);
    assert_text(document.entries[1].value, "SELECT \"x\"");
    assert_text(document.entries[2].key, "my db");
    cr_assert(document.problems.empty());
}

Test(import_pgbouncer, a_line_that_is_not_a_setting_is_a_problem_with_its_line) {
    IniDocument document = document_of("[pgbouncer]\nno equals sign\n[broken\nk = 'open\n");
    cr_assert_eq(document.problems.size(), 3u);
    cr_assert_eq(document.problems[0].line, 2u);
    cr_assert_eq(document.problems[2].line, 4u);
}

Test(import_pgbouncer, connection_strings_take_quoted_values_with_escapes) {
    std::vector<std::pair<std::string, std::string>> pairs;
    std::string reason;
    cr_assert(
        parse_connection_string("host=h  port = 5433 dbname='a ''b'' \\'c' user=", pairs, reason),
        "%s", reason.c_str());
    cr_assert_eq(pairs.size(), 4u);
    assert_text(pairs[2].second, "a 'b' 'c");
    assert_text(pairs[3].second, "");
    pairs.clear();
    cr_assert_not(parse_connection_string("host='open", pairs, reason));
    cr_assert_not(parse_connection_string("=x", pairs, reason));
}

Test(import_pgbouncer, listen_settings_become_one_listen_array) {
    std::string toml = imported(
        "[pgbouncer]\nlisten_addr = *, ::1\nlisten_port = 6440\nunix_socket_dir = /run/pg\n");
    assert_contains(toml, "listen = [\"*:6440\", \"[::1]:6440\", \"/run/pg:6440\"]\n");
}

Test(import_pgbouncer, settings_with_the_same_meaning_keep_their_name_and_times_become_ms) {
    std::string toml = imported(
        "[pgbouncer]\npool_mode = Transaction\ndefault_pool_size = 30\nserver_lifetime = 1.5\n"
        "log_connections = 0\nadmin_users = alice, bob\nclient_tls_sslmode = require\n");
    assert_contains(toml, "pool_mode = \"transaction\"\n");
    assert_contains(toml, "default_pool_size = 30\n");
    assert_contains(toml, "server_lifetime = \"1500ms\"\n");
    assert_contains(toml, "log_connections = false\n");
    assert_contains(toml, "admin_users = [\"alice\", \"bob\"]\n");
    assert_contains(toml, "client_tls_sslmode = \"require\"\n");
}

Test(import_pgbouncer, a_setting_pgplex_does_not_take_is_a_comment_with_file_line_and_why) {
    std::string toml = imported("[pgbouncer]\nlogfile = /var/log/x.log\n\nfoo_bar = 1\n");
    assert_contains(toml, "# unmapped: pgbouncer.ini:2: logfile: pgplex logs to stderr");
    assert_contains(toml, "# unmapped: pgbouncer.ini:4: foo_bar: not a PgBouncer setting");
}

Test(import_pgbouncer, databases_become_tables_and_their_unknown_keys_comments) {
    std::string toml = imported(
        "[databases]\n* = host=127.0.0.1 port=5432\n"
        "app = host=db1 dbname=app_db password=secret max_db_connections=5 reserve_pool=2 "
        "connect_query=x\n");
    assert_contains(toml, "[databases.\"*\"]\nhost = \"127.0.0.1\"\nport = 5432\n");
    assert_contains(toml, "[databases.\"app\"]\nhost = \"db1\"\ndbname = \"app_db\"\n");
    assert_contains(toml, "password = \"secret\"\nmax_db_connections = 5\nreserve_pool_size = 2\n");
    assert_contains(toml, "# unmapped: pgbouncer.ini:3: connect_query=x:");
}

Test(import_pgbouncer, a_database_defined_twice_keeps_the_last_definition_only) {
    std::string toml = imported("[databases]\nx = host=a port=1\nx = host=b\n");
    assert_contains(toml, "[databases.\"x\"]\nhost = \"b\"\n");
    cr_assert_not(contains(toml, "port = 1"));
}

Test(import_pgbouncer, users_keep_pool_mode_and_limits_and_peers_are_comments) {
    std::string toml = imported(
        "[users]\nbob = pool_mode=statement max_user_connections=3 pool_size=4\n"
        "[peers]\n1 = host=x\n");
    assert_contains(toml, "[users.\"bob\"]\npool_mode = \"statement\"\nmax_user_connections = 3\n");
    assert_contains(toml, "# unmapped: pgbouncer.ini:2: pool_size=4:");
    assert_contains(toml, "# unmapped: pgbouncer.ini:4: [peers] 1:");
}

Test(import_pgbouncer, auth_type_without_a_pgplex_method_is_a_comment) {
    assert_contains(imported("[pgbouncer]\nauth_type = pam\n"), "auth_type = pam: pgplex has");
    assert_contains(imported("[pgbouncer]\nauth_type = any\n"), "auth_type = \"trust\"\n");
    assert_contains(imported("[pgbouncer]\n"), "auth_type = \"md5\"\n");
}

Test(import_pgbouncer, pgbouncer_defaults_that_pgplex_does_not_share_are_written) {
    std::string toml = imported("[pgbouncer]\nserver_tls_sslmode = disable\n");
    assert_contains(toml, "max_client_conn = 100\n");
    assert_contains(toml, "server_tls_sslmode = \"disable\"\n");
    assert_contains(toml, "# max_client_conn: not in the file; PgBouncer's default");
    cr_assert_not(contains(toml, "# server_tls_sslmode: not in the file"));
}

Test(import_pgbouncer, strings_are_escaped_and_bad_utf8_replaced) {
    assert_text(toml_string("a\"b\\c\x01"), "\"a\\\"b\\\\c\\u0001\"");
    assert_text(toml_string("\xc3\xa9\xff"), "\"\xc3\xa9\\uFFFD\"");
}

Test(import_pgbouncer, includes_are_followed_beside_the_including_file_and_cycles_refused) {
    TempDir dir;
    dir.write("conf.d/extra.ini", "default_pool_size = 7\n%include ../pgbouncer.ini\n");
    std::string main = dir.write("pgbouncer.ini", "[pgbouncer]\n%include conf.d/extra.ini\n");
    IniDocument document;
    std::string reason;
    cr_assert(read_ini(main, document, reason), "%s", reason.c_str());
    cr_assert_eq(document.entries.size(), 1u);
    assert_text(document.entries[0].section, "pgbouncer");
    cr_assert_eq(document.problems.size(), 1u);
    assert_contains(document.problems[0].reason, "cycle");
    cr_assert_eq(document.problems[0].line, 2u);
    cr_assert_not(read_ini(dir.path() + "/missing.ini", document, reason));
}

Test(import_pgbouncer, the_result_loads_in_pgplex) {
    TempDir dir;
    dir.write("userlist.txt", "\"app\" \"secret\"\n");
    std::string ini = dir.write("pgbouncer.ini",
                                "[databases]\n* = host=127.0.0.1 port=5432\n"
                                "app = host=127.0.0.1 dbname=app pool_size=5 pool_mode=session\n"
                                "[users]\napp = pool_mode=transaction\n"
                                "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 6543\n"
                                "unix_socket_dir =\nauth_file = userlist.txt\n"
                                "logfile = /tmp/x.log\nserver_lifetime = 60\n");
    IniDocument document;
    std::string reason;
    cr_assert(read_ini(ini, document, reason));
    std::string toml = import_pgbouncer(document, ini);
    pgplex::config::LoadResult result = pgplex::config::load(dir.write("pgplex.toml", toml));
    cr_assert_not_null(result.config.get(), "%s\n%s", result.error.c_str(), toml.c_str());
    cr_assert_eq(result.config->aliases.size(), 1u);
    cr_assert_not_null(result.config->fallback.get());
    cr_assert_eq(result.config->server_lifetime_ms, 60'000);
}
