// libFuzzer target for `pgplex import-pgbouncer`: any bytes as a pgbouncer.ini (and as a
// connection string) give entries and problems, never a crash, and the printed pgplex.toml
// always parses as TOML.
#include <toml++/toml.h>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgplex/tools/import_pgbouncer.h"
#include "pgplex/tools/pgbouncer_ini.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    pgplex::tools::IniDocument document;
    std::string section;
    pgplex::tools::parse_ini_text(text, "fuzz.ini", section, document,
                                  [&](const std::string&, uint32_t line) {
                                      document.problems.push_back({"fuzz.ini", line, "include"});
                                  });
    for (const pgplex::tools::IniProblem& problem : document.problems)
        if (problem.line == 0 || problem.reason.empty()) std::abort();
    std::vector<std::pair<std::string, std::string>> pairs;
    std::string reason;
    if (!pgplex::tools::parse_connection_string(text, pairs, reason) && reason.empty())
        std::abort();
    std::string toml = pgplex::tools::import_pgbouncer(document, "fuzz.ini");
    try {
        toml::table parsed = toml::parse(toml);
        (void)parsed;
    } catch (const toml::parse_error& error) {
        std::abort();  // the importer printed something that is not TOML
    }
    return 0;
}
