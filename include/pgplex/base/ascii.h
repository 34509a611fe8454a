// ASCII case folding for SQL keywords on the hot path: inline, no locale, no call (libc's
// tolower goes through the locale's table on every byte). Bytes outside A-Z are unchanged,
// as PostgreSQL folds unquoted identifiers only in ASCII.
#pragma once

namespace pgplex::base {

constexpr char ascii_lower(char ch) {
    return ch >= 'A' && ch <= 'Z' ? char(ch + ('a' - 'A')) : ch;
}

}  // namespace pgplex::base
