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
-- once monitor_user may execute it. The 1-minute load average, the CPUs and the memory (total
-- and available, in bytes), from /proc, read with the owner's rights (pg_read_file); NULLs
-- where /proc cannot be read. Changing the OUT columns needs a DROP first, so it is dropped
-- when it still has the older shape.
DO $$
BEGIN
    IF to_regprocedure('pgplex.node_metrics()') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc
         WHERE oid = to_regprocedure('pgplex.node_metrics()')
           AND 'mem_available_bytes' = ANY (proargnames)) THEN
        DROP FUNCTION pgplex.node_metrics();
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION pgplex.node_metrics(
    OUT load1 float8, OUT cpus int, OUT mem_total_bytes int8, OUT mem_available_bytes int8)
RETURNS record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    meminfo text;
BEGIN
    BEGIN
        load1 := split_part(pg_read_file('/proc/loadavg'), ' ', 1)::float8;
        cpus := (SELECT count(*) FROM regexp_matches(pg_read_file('/proc/cpuinfo'),
                                                     '^processor\s*:', 'gn'))::int;
    EXCEPTION WHEN OTHERS THEN
        load1 := NULL;
        cpus := NULL;
    END;
    BEGIN
        meminfo := pg_read_file('/proc/meminfo');
        mem_total_bytes := (substring(meminfo FROM 'MemTotal:\s*(\d+) kB'))::int8 * 1024;
        mem_available_bytes := (substring(meminfo FROM 'MemAvailable:\s*(\d+) kB'))::int8 * 1024;
    EXCEPTION WHEN OTHERS THEN
        mem_total_bytes := NULL;
        mem_available_bytes := NULL;
    END;
END
$$;
REVOKE ALL ON FUNCTION pgplex.node_metrics() FROM PUBLIC;
COMMENT ON FUNCTION pgplex.node_metrics() IS
    'pgplex: the host''s 1-minute load average, CPUs and memory, for balance = "load"';

-- failover = "promote" and SWITCHOVER (pgplex.toml(5), pgplex(8)). The monitor promotes a
-- replica through pgplex.promote() when it may execute it, else with pg_promote() directly.
-- It refuses anything but a node in recovery, so a confused caller never "promotes" a
-- primary, and waits up to 10 s for the promotion to finish.
CREATE OR REPLACE FUNCTION pgplex.promote()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pgplex.promote(): this node is not in recovery: it is a primary already';
    END IF;
    IF pg_is_wal_replay_paused() THEN
        RAISE EXCEPTION 'pgplex.promote(): replay is paused on this node'
            USING HINT = 'Run SELECT pg_wal_replay_resume() if it may be promoted.';
    END IF;
    RETURN pg_promote(true, 10);
END
$$;
REVOKE ALL ON FUNCTION pgplex.promote() FROM PUBLIC;
COMMENT ON FUNCTION pgplex.promote() IS
    'pgplex: promotes this replica (pg_promote, waiting up to 10 s); refuses on a primary';

-- Fencing: a primary that another node replaced (it died and came back, or a switchover moved
-- away from it) is made read-only. ALTER SYSTEM cannot run inside a function, so the monitor
-- first runs ALTER SYSTEM SET default_transaction_read_only = on and pg_reload_conf() itself
-- (a file on this node only: ALTER DATABASE ... SET would be a catalog change, replicated to
-- the node being promoted). pgplex.fence() then checks that the setting took and ends every
-- other client session, so none keeps writing in a transaction begun before. Returns how many
-- sessions it ended.
CREATE OR REPLACE FUNCTION pgplex.fence()
RETURNS int
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ended int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_file_settings
                    WHERE name = 'default_transaction_read_only' AND applied
                      AND setting IN ('on', 'true', '1', 'yes')) THEN
        RAISE EXCEPTION 'pgplex.fence(): default_transaction_read_only is not on'
            USING HINT = 'Run ALTER SYSTEM SET default_transaction_read_only = on and '
                         'SELECT pg_reload_conf() first.';
    END IF;
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int INTO ended
      FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
       AND application_name NOT IN ('pgplex monitor', 'pgplex failover');
    RETURN ended;
END
$$;
REVOKE ALL ON FUNCTION pgplex.fence() FROM PUBLIC;
COMMENT ON FUNCTION pgplex.fence() IS
    'pgplex: after ALTER SYSTEM SET default_transaction_read_only = on, ends other sessions';

-- UNFENCE (pgplex(8)): the monitor runs ALTER SYSTEM RESET default_transaction_read_only and
-- pg_reload_conf(), then this, which checks the node is writable again by configuration.
CREATE OR REPLACE FUNCTION pgplex.unfence()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_file_settings
                WHERE name = 'default_transaction_read_only' AND applied
                  AND sourcefile LIKE '%postgresql.auto.conf'
                  AND setting IN ('on', 'true', '1', 'yes')) THEN
        RAISE EXCEPTION 'pgplex.unfence(): default_transaction_read_only is still on'
            USING HINT = 'Run ALTER SYSTEM RESET default_transaction_read_only and '
                         'SELECT pg_reload_conf() first.';
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION pgplex.unfence() FROM PUBLIC;
COMMENT ON FUNCTION pgplex.unfence() IS
    'pgplex: checks that fencing was lifted (ALTER SYSTEM RESET default_transaction_read_only)';

-- Then, for monitor_user (a superuser needs none of these; promote, fence and unfence also
-- need ALTER SYSTEM, which a superuser has, or PostgreSQL 15's
-- GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO monitor_user):
--   GRANT USAGE ON SCHEMA pgplex TO monitor_user;
--   GRANT EXECUTE ON FUNCTION pgplex.node_metrics() TO monitor_user;
--   GRANT EXECUTE ON FUNCTION pgplex.promote(), pgplex.fence(), pgplex.unfence()
--     TO monitor_user;
)SQL";

}  // namespace pgplex::admin
