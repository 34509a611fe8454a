// userlist.txt as PgBouncer reads it: quoted user and secret, doubled quotes, comments and
// other lines skipped, and every error naming the file and line it is on.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>
#include <unordered_map>

#include "pgplex/config/auth_file.h"

using pgplex::config::parse_auth_file;
using Users = std::unordered_map<std::string, std::string>;


namespace {

Users parsed(const std::string& text) {
    Users users;
    std::string error;
    cr_assert(parse_auth_file("userlist.txt", text, users, error), "%s", error.c_str());
    return users;
}

std::string refused(const std::string& text) {
    Users users{{"kept", "as is"}};
    std::string error;
    cr_assert_not(parse_auth_file("userlist.txt", text, users, error), "accepted %s", text.c_str());
    cr_assert_eq(users.size(), 1u, "a failed parse must leave users untouched");
    return error;
}

}  // namespace

Test(auth_file, quoted_user_and_secret_are_read) {
    Users users = parsed(
        "\"alice\" \"plain secret\"\n"
        "\"bob\" \"md53175bce1d3201d16594cebf9d7eb3f9d\"\n");
    cr_assert_eq(users.size(), 2u);
    assert_text(users["alice"], "plain secret");
    assert_text(users["bob"], "md53175bce1d3201d16594cebf9d7eb3f9d");
}

Test(auth_file, scram_secrets_with_dollars_and_colons_are_read_whole) {
    const char* secret =
        "SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==$X0HFWsITk7XQUUte4Nn2CICeo0"
        "ekIwKqSyyKacCi95g=:FlV5zPoYmFY314qfgLe5Wl2/yL/z6x7VDUfY85fr2HI=";
    Users users = parsed(std::string("\"alice\" \"") + secret + "\"");
    assert_text(users["alice"], secret);
}

Test(auth_file, doubled_quotes_stand_for_one_quote) {
    Users users = parsed("\"o\"\"brien\" \"say \"\"hi\"\"\"\n\"\"\"\" \"\"\n");
    assert_text(users["o\"brien"], "say \"hi\"");
    assert_text(users["\""], "");
}

Test(auth_file, comments_blank_and_unquoted_lines_are_skipped) {
    Users users = parsed(
        "; a comment\n"
        "# another\n"
        "\n"
        "   \t\n"
        "not a user line\n"
        "  \"indented\" \"ok\"\r\n");
    cr_assert_eq(users.size(), 1u);
    assert_text(users["indented"], "ok");
}

Test(auth_file, text_after_the_secret_is_ignored_as_pgbouncer_does) {
    Users users = parsed("\"alice\" \"secret\" \"extra\" ; trailing\n");
    assert_text(users["alice"], "secret");
}

Test(auth_file, a_user_listed_twice_keeps_the_last_secret) {
    Users users = parsed("\"alice\" \"first\"\n\"alice\" \"second\"\n");
    assert_text(users["alice"], "second");
}

Test(auth_file, an_empty_file_has_no_users) {
    cr_assert(parsed("").empty());
    cr_assert(parsed("\n\n; nothing\n").empty());
}

Test(auth_file, an_unterminated_user_is_an_error_on_its_line) {
    assert_text(refused("\"alice\" \"a\"\n\n\"bob b\n"),
                "userlist.txt:3: unterminated quoted string");
}

Test(auth_file, an_unterminated_secret_is_an_error_on_its_line) {
    assert_text(refused("; users\n\"alice\" \"secret\n\"bob\" \"b\"\n"),
                "userlist.txt:2: unterminated quoted string");
}

Test(auth_file, a_missing_secret_is_an_error) {
    assert_text(refused("\"alice\"\n"),
                "userlist.txt:1: missing quoted secret after user \"alice\"");
    assert_text(refused("\"a\" \"1\"\n\"alice\" secret\n"),
                "userlist.txt:2: missing quoted secret after user \"alice\"");
}

Test(auth_file, an_empty_user_name_is_an_error) {
    assert_text(refused("\"\" \"secret\""), "userlist.txt:1: empty user name");
}

Test(auth_file, over_long_names_and_secrets_are_errors) {
    std::string long_name(64, 'u');
    assert_text(refused("\"" + long_name + "\" \"x\""),
                "userlist.txt:1: user name longer than 63 bytes");
    parsed("\"" + std::string(63, 'u') + "\" \"" + std::string(996, 's') + "\"");
    assert_text(refused("\"u\" \"" + std::string(997, 's') + "\""),
                "userlist.txt:1: secret of user \"u\" longer than 996 bytes");
}

Test(auth_file, errors_name_the_path_as_given) {
    Users users;
    std::string error;
    cr_assert_not(parse_auth_file("/etc/pgplex/users.txt", "\n\"x", users, error));
    assert_text(error, "/etc/pgplex/users.txt:2: unterminated quoted string");
}
