// Helpers shared by the Criterion unit tests.
#pragma once

#include <criterion/criterion.h>

#include <string>

// Criterion's string assertions keep only the pointers they are given; these copies keep
// the text of a temporary std::string alive for the check.
#define assert_text(actual, expected)                                 \
    do {                                                              \
        const std::string actual_text = (actual);                     \
        const std::string expected_text = (expected);                 \
        cr_assert_str_eq(actual_text.c_str(), expected_text.c_str()); \
    } while (0)
