// The key=value context of log lines: pairs joined by blanks, values quoted when a reader
// would split them, and a context too long for its buffer cut, never overrun.
#include <criterion/criterion.h>

#include <string>

#include "pgplex/base/log.h"

using namespace pgplex::base;

Test(log_text, pairs_are_joined_by_blanks) {
    LogText text;
    text.add("client", std::string("1.4"));
    text.add("user", std::string("payam"));
    cr_assert_str_eq(text.c_str(), "client=1.4 user=payam");
}

Test(log_text, a_value_a_reader_would_split_is_quoted_and_escaped) {
    LogText text;
    text.add("user", std::string("a b"));
    text.add("db", std::string("x=\"y\""));
    text.add("app", std::string(""));
    cr_assert_str_eq(text.c_str(), "user=\"a b\" db=\"x=\\\"y\\\"\" app=\"\"");
}

Test(log_text, a_newline_in_a_value_does_not_start_a_line) {
    LogText text;
    text.add("user", std::string("evil\nLOG forged"));
    cr_assert_str_eq(text.c_str(), "user=\"evil LOG forged\"");
}

Test(log_text, a_context_longer_than_the_buffer_is_cut) {
    LogText text;
    text.add("user", std::string(1000, 'u'));
    text.add("db", std::string(1000, 'd'));
    cr_assert_eq(std::string(text.c_str()).size(), sizeof text.text - 1);
    cr_assert_eq(text.c_str()[0], 'u');
}
