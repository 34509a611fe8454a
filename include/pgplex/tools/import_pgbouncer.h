// `pgplex import-pgbouncer FILE`: prints the pgplex.toml equivalent of a PgBouncer
// configuration. Every PgBouncer setting either becomes a pgplex setting or a comment
// "# unmapped: FILE:LINE: key: why", so nothing is dropped silently; the result is for an
// operator to read and `pgplex --check`, not to be trusted blindly.
#pragma once

#include <string>
#include <string_view>

#include "pgplex/tools/pgbouncer_ini.h"

namespace pgplex::tools {

// The pgplex.toml text for `document` (read from `source`, named in the header comment).
// Always valid TOML, whatever the input (the fuzz target checks it).
std::string import_pgbouncer(const IniDocument& document, const std::string& source);

// `text` as a TOML basic string: escaped, and valid UTF-8 (a bad byte becomes U+FFFD).
std::string toml_string(std::string_view text);

// The subcommand: argv[1] is "import-pgbouncer", argv[2] the file. Returns the exit code:
// 0 printed, 1 the file cannot be read, 2 bad usage.
int import_pgbouncer_main(int argc, char** argv);

}  // namespace pgplex::tools
