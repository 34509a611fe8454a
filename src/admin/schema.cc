// The text of the pgplex schema (schema.h).
#include "pgplex/admin/schema.h"

namespace pgplex::admin {

const char* const schema_sql =
    R"SQL(-- The pgplex schema. Install it on each node as a superuser; running it again is safe:
--   pgplex --print-schema | psql -d DBNAME
--   psql -d DBNAME -f /usr/share/pgplex/pgplex.sql
-- auth_query runs in auth_dbname (else the database the client asked for): install the
-- schema in every database clients log in to, or set auth_dbname.
CREATE SCHEMA IF NOT EXISTS pgplex;
REVOKE ALL ON SCHEMA pgplex FROM PUBLIC;

-- auth_query's default (pgplex.toml(5)): the secret of a role that may log in, and no
-- secret once its VALID UNTIL has passed (by the server's clock). SECURITY DEFINER lets
-- auth_user read pg_authid without any other right; the pinned search_path means nothing a
-- caller has set (a client's search_path included) changes what it reads.
CREATE OR REPLACE FUNCTION pgplex.user_lookup(
    i_username text, OUT uname text, OUT phash text, OUT valid_until timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.rolname::text,
           CASE WHEN a.rolvaliduntil < pg_catalog.now() THEN NULL ELSE a.rolpassword END,
           a.rolvaliduntil
      FROM pg_catalog.pg_authid AS a
     WHERE a.rolname OPERATOR(pg_catalog.=) i_username::pg_catalog.name AND a.rolcanlogin
$$;
REVOKE ALL ON FUNCTION pgplex.user_lookup(text) FROM PUBLIC;

-- Then, for the role named auth_user in pgplex.toml (its secret in the auth file):
--   GRANT USAGE ON SCHEMA pgplex TO pgplex_auth;
--   GRANT EXECUTE ON FUNCTION pgplex.user_lookup(text) TO pgplex_auth;

-- The host's load for balance = "load" (pgplex.toml(5)): the monitor reads it with each check
-- once monitor_user may execute it. The 1-minute load average and the CPUs, from /proc, read
-- with the owner's rights (pg_read_file); NULLs where /proc cannot be read.
CREATE OR REPLACE FUNCTION pgplex.node_metrics(OUT load1 float8, OUT cpus int)
RETURNS record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    load1 := split_part(pg_read_file('/proc/loadavg'), ' ', 1)::float8;
    cpus := (SELECT count(*) FROM regexp_matches(pg_read_file('/proc/cpuinfo'),
                                                 '^processor\s*:', 'gn'))::int;
EXCEPTION WHEN OTHERS THEN
    load1 := NULL;
    cpus := NULL;
END
$$;
REVOKE ALL ON FUNCTION pgplex.node_metrics() FROM PUBLIC;

-- Then, for monitor_user:
--   GRANT USAGE ON SCHEMA pgplex TO monitor_user;
--   GRANT EXECUTE ON FUNCTION pgplex.node_metrics() TO monitor_user;
)SQL";

}  // namespace pgplex::admin
