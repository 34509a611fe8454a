// Reading a client's LISTEN and UNLISTEN statements, and the channel lists they make.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>
#include <vector>

#include "pgplex/pool/notify.h"

using namespace pgplex::pool;

namespace {

ListenQuery parse(const char* query, std::vector<ListenChange>& changes) {
    return parse_listen(query, changes);
}

}  // namespace

Test(notify, a_plain_listen_folds_the_channel_to_lower_case) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("LISTEN Orders", changes), ListenQuery::Only);
    cr_assert_eq(changes.size(), 1u);
    cr_assert_eq(changes[0].kind, ListenKind::Listen);
    assert_text(changes[0].channel, "orders");
}

Test(notify, a_quoted_channel_keeps_its_case_and_doubled_quotes) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("listen \"Mixed \"\"Case\"\"\";", changes), ListenQuery::Only);
    cr_assert_eq(changes.size(), 1u);
    assert_text(changes[0].channel, "Mixed \"Case\"");
}

Test(notify, several_listen_and_unlisten_statements_are_read_in_order) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse(" /* hi */ LISTEN a; unlisten b ;UNLISTEN *; -- bye\n", changes),
                 ListenQuery::Only);
    cr_assert_eq(changes.size(), 3u);
    cr_assert_eq(changes[0].kind, ListenKind::Listen);
    cr_assert_eq(changes[1].kind, ListenKind::Unlisten);
    assert_text(changes[1].channel, "b");
    cr_assert_eq(changes[2].kind, ListenKind::UnlistenAll);
}

Test(notify, listen_among_other_statements_is_mixed) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("BEGIN; LISTEN a; COMMIT", changes), ListenQuery::Mixed);
    cr_assert_eq(parse("SELECT 1; UNLISTEN *", changes), ListenQuery::Mixed);
}

Test(notify, listen_in_strings_comments_and_other_words_is_not_listen) {
    std::vector<ListenChange> changes;
    cr_assert(may_listen("select 'LISTEN x'"));
    cr_assert_eq(parse("SELECT 'LISTEN x; UNLISTEN y'", changes), ListenQuery::None);
    cr_assert_eq(parse("SELECT 1 -- LISTEN x\n", changes), ListenQuery::None);
    cr_assert_eq(parse("listener_count()", changes), ListenQuery::None);
    cr_assert_eq(parse("NOTIFY x, 'LISTEN y'", changes), ListenQuery::None);
    cr_assert_not(may_listen("SELECT 1"));
}

Test(notify, what_pgplex_cannot_read_is_unreadable) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("LISTEN U&\"d\\0061t\"", changes), ListenQuery::Unreadable);
    cr_assert_eq(parse("LISTEN", changes), ListenQuery::Unreadable);
    cr_assert_eq(parse("LISTEN a b", changes), ListenQuery::Unreadable);
    cr_assert_eq(parse("LISTEN \"\"", changes), ListenQuery::Unreadable);
    cr_assert_eq(parse("UNLISTEN 'a'", changes), ListenQuery::Unreadable);
}

Test(notify, more_than_a_hundred_statements_are_too_many) {
    std::string query;
    for (int i = 0; i < 101; ++i) query += "LISTEN c" + std::to_string(i) + ";";
    std::vector<ListenChange> changes;
    cr_assert_eq(parse_listen(query, changes), ListenQuery::TooMany);
}

Test(notify, a_long_channel_is_cut_as_postgresql_cuts_identifiers) {
    std::vector<ListenChange> changes;
    std::string name(70, 'x');
    cr_assert_eq(parse_listen("LISTEN " + name, changes), ListenQuery::Only);
    cr_assert_eq(changes[0].channel.size(), 63u);
    // 31 two-byte characters and one more: never half a character.
    std::string wide;
    for (int i = 0; i < 32; ++i) wide += "\xc3\xa9";
    cr_assert_eq(parse_listen("LISTEN \"" + wide + "\"", changes), ListenQuery::Only);
    cr_assert_eq(changes[0].channel.size(), 62u);
}

Test(notify, the_listener_sql_quotes_the_channel) {
    assert_text(listen_sql(ListenKind::Listen, "a\"b"), "LISTEN \"a\"\"b\"");
    assert_text(listen_sql(ListenKind::Unlisten, "Orders"), "UNLISTEN \"Orders\"");
}

Test(notify, changes_apply_in_order) {
    std::vector<std::string> channels = {"a", "b"};
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("LISTEN c; UNLISTEN a; LISTEN b; UNLISTEN *; LISTEN d", changes),
                 ListenQuery::Only);
    apply_listen(channels, changes);
    cr_assert_eq(channels.size(), 1u);
    assert_text(channels[0], "d");
}

Test(notify, changes_and_errors_survive_their_encoding) {
    std::vector<ListenChange> changes;
    cr_assert_eq(parse("LISTEN a; UNLISTEN \"B c\"; UNLISTEN *", changes), ListenQuery::Only);
    std::vector<ListenChange> decoded;
    std::string_view error;
    cr_assert(decode_listen(encode_listen(changes), decoded, error));
    cr_assert_eq(decoded.size(), 3u);
    assert_text(decoded[1].channel, "B c");
    cr_assert_eq(decoded[2].kind, ListenKind::UnlistenAll);
    std::string body("SERROR\0C0A000\0\0", 15);
    std::string encoded = encode_listen_error(body);
    cr_assert_not(decode_listen(encoded, decoded, error));
    cr_assert_eq(error.size(), body.size());
}
