// Reading the management console's commands: whitespace-separated words compared without
// regard to case, as PgBouncer's console reads them (admin.c's regular expressions take
// [ \t\n\r] as space and match command names case-insensitively). One copy for console.cc,
// show.cc and failover_commands.cc.
#pragma once

#include <string_view>

namespace pgplex::admin {

bool is_space(char c);
// text without the whitespace at either end.
std::string_view trimmed(std::string_view text);
// Cuts the next whitespace-separated word off the front of text ("" at its end).
std::string_view next_word(std::string_view& text);
// a and b are the same word, ignoring ASCII case.
bool same_word(std::string_view a, std::string_view b);

}  // namespace pgplex::admin
