// PGPLEX_ASSERT: a check that stays on in release builds.
//
// Programmer errors crash, loudly and at once; bad input from a client, a server or a
// peer is never asserted on (it is answered with an ErrorResponse or a log line).
#pragma once

namespace pgplex::base {

[[noreturn]] void assert_fail(const char* file, int line, const char* expression);

}  // namespace pgplex::base

#define PGPLEX_ASSERT(expression)                                           \
    do {                                                                    \
        if (!(expression)) [[unlikely]]                                     \
            ::pgplex::base::assert_fail(__FILE__, __LINE__, #expression);   \
    } while (0)

#define PGPLEX_UNREACHABLE() ::pgplex::base::assert_fail(__FILE__, __LINE__, "unreachable")
