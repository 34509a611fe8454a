// pgplex: parse the command line, load the configuration, and hand over to the control
// thread. `pgplex --check CONFIG` only validates.
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "pgplex/admin/schema.h"
#include "pgplex/base/log.h"
#include "pgplex/config/config.h"
#include "pgplex/control.h"
#include "pgplex/tools/import_pgbouncer.h"

namespace {

const char* usage =
    "usage: pgplex [--check | --takeover] CONFIG | --print-schema\n"
    "  CONFIG     the TOML configuration file (see pgplex.toml(5))\n"
    "  --check    validate CONFIG and its auth file, print any error as FILE:LINE: reason,\n"
    "             and exit 0 when it is good, 1 when it is not\n"
    "  --takeover take over from the pgplex running with CONFIG (its takeover_socket):\n"
    "             its listening sockets, and each client as it goes idle, keep working\n"
    "  --print-schema  print the SQL of the pgplex schema (auth_query's lookup function)\n"
    "             to install on each node, and exit\n"
    "  --version  print the version and exit\n"
    "  --help     print this and exit\n";

// Clients and servers are fixed files of the rings; the table sizes are bounded by
// RLIMIT_NOFILE, so take all the hard limit allows.
void raise_file_limit() {
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) != 0) return;
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::strcmp(argv[1], "import-pgbouncer") == 0)
        return pgplex::tools::import_pgbouncer_main(argc, argv);
    bool check = false;
    bool take_over = false;
    std::string path;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--check" || arg == "-c") {
            check = true;
        } else if (arg == "--takeover") {
            take_over = true;
        } else if (arg == "--help" || arg == "-h") {
            fputs(usage, stdout);
            return 0;
        } else if (arg == "--print-schema") {
            fputs(pgplex::admin::schema_sql, stdout);
            return 0;
        } else if (arg == "--version" || arg == "-V") {
            puts("pgplex " PGPLEX_VERSION);
            return 0;
        } else if (!arg.empty() && arg[0] == '-') {
            fprintf(stderr, "pgplex: unknown option %s\n%s", arg.c_str(), usage);
            return 2;
        } else if (path.empty()) {
            path = arg;
        } else {
            fprintf(stderr, "pgplex: more than one CONFIG given\n%s", usage);
            return 2;
        }
    }
    if (path.empty()) {
        fputs(usage, stderr);
        return 2;
    }
    pgplex::config::LoadResult loaded = pgplex::config::load(path);
    if (!loaded.config) {
        fprintf(stderr, "%s\n", loaded.error.c_str());
        return 1;
    }
    if (check) {
        printf("%s: ok\n", path.c_str());
        return 0;
    }
    raise_file_limit();
    return pgplex::run_control(loaded.config, take_over);
}
