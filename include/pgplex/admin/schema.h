// The pgplex schema: SQL a DBA installs on each node (`pgplex --print-schema`, installed as
// /usr/share/pgplex/pgplex.sql): auth_query's default lookup, and the host metrics that
// balance = "load" uses.
#pragma once

namespace pgplex::admin {

extern const char* const schema_sql;

}  // namespace pgplex::admin
