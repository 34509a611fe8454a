// The pgplex schema: SQL a DBA installs on each node (`pgplex --print-schema`, installed as
// /usr/share/pgplex/pgplex.sql). Today it holds auth_query's default lookup.
#pragma once

namespace pgplex::admin {

extern const char* const schema_sql;

}  // namespace pgplex::admin
