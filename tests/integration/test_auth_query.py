"""auth_query: users the auth file does not list are looked up on the server as auth_user.

Clients log in to payam_archive through the "*" alias; the lookup runs in payam_db
(auth_dbname), where the pgplex schema is installed.

The server's roles are made here, with SCRAM secrets; pgplex's auth file holds only
auth_user's password, so every other login proves itself against what the lookup returns
and pgplex logs in to the server with the keys of the client's own SCRAM exchange. The
lookup is the function `pgplex --print-schema` installs. PgBouncer's CVE history around
auth_query is replayed: a non-existent user never logs in as auth_user (CVE-2015-6817),
VALID UNTIL is honoured (CVE-2025-2291), and a client's search_path never changes what the
lookup resolves (CVE-2025-12819)."""

import subprocess
import time

import psycopg
import pytest

from conftest import HOST, PASSWORDS, conninfo, scram_secret
from test_admin_clusters import show

AUTH_USER = "pgplex_auth"
AUTH_PASSWORD = "auth-lookup-secret"
ROLES = {
    "aq_alice": ("alice-secret", None),
    "aq_carol": ("carol-secret", "2001-01-01 00:00:00+00"),   # expired long ago
    "aq_dave": ("dave-secret", "2100-01-01 00:00:00+00"),     # valid for a while yet
    "aq_erin": ("erin-secret", None),
}


@pytest.fixture(scope="module")
def lookup_roles(cluster):
    """auth_user, the login roles, and the pgplex schema in payam_db (installed twice:
    running it again must be safe)."""
    from conftest import pgplex_binary
    schema = subprocess.run([pgplex_binary(), "--print-schema"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
    assert "pgplex.user_lookup" in schema
    for _ in range(2):
        cluster.admin_psql(schema, dbname="payam_db")
    cluster.admin_psql(
        f"DROP ROLE IF EXISTS {AUTH_USER}; CREATE ROLE {AUTH_USER} LOGIN PASSWORD "
        f"'{AUTH_PASSWORD}'", dbname="payam_db")
    cluster.admin_psql(f"GRANT USAGE ON SCHEMA pgplex TO {AUTH_USER};"
                       f"GRANT EXECUTE ON FUNCTION pgplex.user_lookup(text) TO {AUTH_USER}",
                       dbname="payam_db")
    for role, (password, until) in ROLES.items():
        valid = f" VALID UNTIL '{until}'" if until else ""
        cluster.admin_psql(f"DROP ROLE IF EXISTS {role}; "
                           f"CREATE ROLE {role} LOGIN PASSWORD '{password}'{valid}")
    return cluster


def auth_query_pgplex(make_pgplex, settings=None, databases=None, users=None):
    """pgplex whose auth file holds only auth_user (and payam, the admin user)."""
    return make_pgplex(
        settings={"auth_user": AUTH_USER, "auth_dbname": "payam_db", "admin_users": ["payam"],
                  **(settings or {})},
        users=users or {AUTH_USER: AUTH_PASSWORD, "payam": PASSWORDS["payam"]},
        databases=databases)


def login(port, user, password, dbname="payam_archive", **extra):
    with psycopg.connect(conninfo(port, dbname, user, password=password, **extra),
                         connect_timeout=10, autocommit=True) as conn:
        return conn.execute("SELECT current_user, current_setting('search_path')").fetchone()


def login_error(port, user, password, dbname="payam_archive", **extra):
    with pytest.raises(psycopg.OperationalError) as caught:
        login(port, user, password, dbname, **extra)
    return str(caught.value)


def lookups(port, expected=None):
    """(lookups, failed lookups) of SHOW WORKERS, which workers publish each tick: waits up to
    2 s for `expected` when given."""
    deadline = time.monotonic() + 2
    while True:
        rows = show(port, "SHOW WORKERS")
        counts = (sum(int(row["auth_queries"]) for row in rows),
                  sum(int(row["auth_query_failures"]) for row in rows))
        if expected is None or counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def test_a_user_only_the_server_knows_logs_in_with_scram(lookup_roles, make_pgplex):
    """The secret comes from the server; pgplex stores no password for aq_alice, and logs in
    to the server as aq_alice with the keys of her own SCRAM exchange."""
    pgplex = auth_query_pgplex(make_pgplex, settings={"workers": 1})
    assert login(pgplex.port, "aq_alice", "alice-secret")[0] == "aq_alice"
    assert login(pgplex.port, "aq_alice", "alice-secret")[0] == "aq_alice"
    assert "password authentication failed" in login_error(pgplex.port, "aq_alice", "wrong")
    # Three logins of one user within auth_cache_ttl: one lookup.
    assert lookups(pgplex.port, (1, 0)) == (1, 0)
    assert pgplex.wait_log(r'auth_query for user "aq_alice" failed', timeout=0) is None


def test_a_user_no_one_knows_never_logs_in_as_auth_user(lookup_roles, make_pgplex):
    """CVE-2015-6817: an unknown user with auth_user's password is refused, as is any
    password; auth_user itself logs in with its auth file secret, looked up by nobody."""
    pgplex = auth_query_pgplex(make_pgplex)
    for password in (AUTH_PASSWORD, "", "anything"):
        error = login_error(pgplex.port, "aq_nobody", password or "x")
        assert 'password authentication failed for user "aq_nobody"' in error, error
    assert login(pgplex.port, AUTH_USER, AUTH_PASSWORD)[0] == AUTH_USER
    assert pgplex.wait_log(r'auth_query found no password for user "aq_nobody"')


def test_valid_until_is_honoured(lookup_roles, make_pgplex):
    """CVE-2025-2291: a role whose VALID UNTIL has passed cannot log in with its right
    password; one valid until a later date can."""
    pgplex = auth_query_pgplex(make_pgplex)
    error = login_error(pgplex.port, "aq_carol", "carol-secret")
    assert 'password authentication failed for user "aq_carol"' in error, error
    assert login(pgplex.port, "aq_dave", "dave-secret")[0] == "aq_dave"


def test_valid_until_is_honoured_by_pgplex_itself(lookup_roles, make_pgplex):
    """An auth_query that returns the secret of an expired role with its VALID UNTIL (as a
    hand-written one may) still does not let it in: pgplex checks the third column."""
    lookup_roles.admin_psql(
        "CREATE OR REPLACE FUNCTION public.aq_raw_lookup(name text) "
        "RETURNS TABLE (uname text, phash text, valid_until timestamptz) "
        "LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$ "
        "SELECT rolname::text, rolpassword, rolvaliduntil FROM pg_authid "
        "WHERE rolname = name $$;"
        f"GRANT EXECUTE ON FUNCTION public.aq_raw_lookup(text) TO {AUTH_USER}",
        dbname="payam_db")
    pgplex = auth_query_pgplex(make_pgplex, settings={
        "auth_query": "SELECT uname, phash, valid_until FROM public.aq_raw_lookup($1)"})
    assert "password authentication failed" in login_error(pgplex.port, "aq_carol",
                                                           "carol-secret")
    assert pgplex.wait_log(r'user "aq_carol" has an expired password')
    assert login(pgplex.port, "aq_dave", "dave-secret")[0] == "aq_dave"


def test_a_client_search_path_does_not_change_the_lookup(lookup_roles, make_pgplex):
    """CVE-2025-12819: with an auth_query that names its function without a schema, a
    client that logs in with search_path pointing at its own user_lookup (returning a
    secret it knows) must not get in with that secret; the lookup never runs under a
    client's settings. The real password works, under the client's search_path."""
    evil = scram_secret("attacker-secret")
    lookup_roles.admin_psql(
        "CREATE SCHEMA IF NOT EXISTS aq_evil;"
        "CREATE OR REPLACE FUNCTION aq_evil.user_lookup(name text) "
        "RETURNS TABLE (uname text, phash text, valid_until timestamptz) "
        f"LANGUAGE sql AS $$ SELECT name, '{evil}'::text, NULL::timestamptz $$;"
        "CREATE OR REPLACE FUNCTION public.user_lookup(name text) "
        "RETURNS TABLE (uname text, phash text, valid_until timestamptz) "
        "LANGUAGE sql AS $$ SELECT * FROM pgplex.user_lookup(name) $$;"
        f"GRANT USAGE ON SCHEMA aq_evil TO PUBLIC;"
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aq_evil TO PUBLIC",
        dbname="payam_db")
    pgplex = auth_query_pgplex(make_pgplex, settings={
        "auth_query": "SELECT uname, phash, valid_until FROM user_lookup($1)"})
    error = login_error(pgplex.port, "aq_erin", "attacker-secret",
                        options="'-c search_path=aq_evil'")
    assert "password authentication failed" in error, error
    user, search_path = login(pgplex.port, "aq_erin", "erin-secret",
                              options="'-c search_path=aq_evil'")
    assert (user, search_path) == ("aq_erin", "aq_evil")


def test_a_failing_lookup_says_so(lookup_roles, make_pgplex):
    """auth_user with a wrong password, or an auth_query returning the wrong shape: the
    client hears pgplex could not look it up (08001), the log says why, SHOW WORKERS counts it;
    nothing logs in."""
    pgplex = auth_query_pgplex(make_pgplex,
                               users={AUTH_USER: "not-its-password", "payam": PASSWORDS["payam"]})
    error = login_error(pgplex.port, "aq_alice", "alice-secret")
    assert 'could not look up the password of user "aq_alice"' in error, error
    assert pgplex.wait_log(r'auth_query for user "aq_alice" failed: its server said 28P01')
    assert lookups(pgplex.port, (1, 1)) == (1, 1)

    broken = auth_query_pgplex(make_pgplex, settings={"auth_query": "SELECT $1::text"})
    error = login_error(broken.port, "aq_alice", "alice-secret")
    assert "could not look up" in error, error
    assert broken.wait_log(r"auth_query must return 2 or 3 columns")
    assert login(broken.port, "payam", PASSWORDS["payam"])[0] == "payam"  # the file still works


def test_per_database_auth_user(lookup_roles, make_pgplex):
    """An alias's auth_user applies to its clients only; elsewhere unknown users stay
    unknown."""
    lookup_roles.admin_psql(
        "DROP ROLE IF EXISTS aq_auth2; CREATE ROLE aq_auth2 LOGIN PASSWORD 'auth2-secret';"
        "GRANT USAGE ON SCHEMA pgplex TO aq_auth2;"
        "GRANT EXECUTE ON FUNCTION pgplex.user_lookup(text) TO aq_auth2", dbname="payam_db")
    pgplex = make_pgplex(
        settings={"admin_users": ["payam"]},
        users={"aq_auth2": "auth2-secret", "payam": PASSWORDS["payam"]},
        databases={"with_lookup": {"host": HOST, "port": lookup_roles.port,
                                   "dbname": "payam_db", "auth_user": "aq_auth2"}})
    assert login(pgplex.port, "aq_alice", "alice-secret", dbname="with_lookup")[0] == "aq_alice"
    error = login_error(pgplex.port, "aq_alice", "alice-secret")
    assert "password authentication failed" in error, error


def test_auth_cache_ttl(lookup_roles, make_pgplex):
    """With auth_cache_ttl = 0 every login asks the server: a changed password counts at
    once, and the old one is refused."""
    pgplex = auth_query_pgplex(make_pgplex, settings={"auth_cache_ttl": 0})
    try:
        assert login(pgplex.port, "aq_erin", "erin-secret")[0] == "aq_erin"
        lookup_roles.admin_psql("ALTER ROLE aq_erin PASSWORD 'erin-new'")
        assert login(pgplex.port, "aq_erin", "erin-new")[0] == "aq_erin"
        assert "password authentication failed" in login_error(pgplex.port, "aq_erin",
                                                               "erin-secret")
        assert lookups(pgplex.port, (3, 0)) == (3, 0)
    finally:
        lookup_roles.admin_psql("ALTER ROLE aq_erin PASSWORD 'erin-secret'")


def test_auth_query_with_hba(lookup_roles, make_pgplex, tmp_path):
    """auth_type = "hba": the matching rule's method checks the looked-up secret."""
    hba = tmp_path / "pgplex_hba.conf"
    hba.write_text("host all aq_dave 127.0.0.1/32 password\n"
                   "host all all 127.0.0.1/32 scram-sha-256\n")
    pgplex = auth_query_pgplex(make_pgplex, settings={"auth_type": "hba",
                                                      "auth_hba_file": str(hba)})
    assert login(pgplex.port, "aq_alice", "alice-secret")[0] == "aq_alice"
    assert login(pgplex.port, "aq_dave", "dave-secret")[0] == "aq_dave"
    assert "password authentication failed" in login_error(pgplex.port, "aq_dave", "nope")


def test_many_logins_at_once_share_two_lookup_connections(lookup_roles, make_pgplex):
    """Logins of several users at once wait for the lookup pool's two servers, and all get
    in; the lookup connections carry pgplex's own application_name."""
    import concurrent.futures
    pgplex = auth_query_pgplex(make_pgplex)
    users = [("aq_alice", "alice-secret"), ("aq_dave", "dave-secret"),
             ("aq_erin", "erin-secret")] * 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda pair: login(pgplex.port, *pair)[0], users))
    assert results == [user for user, _ in users]
    count = int(lookup_roles.admin_psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgplex auth_query'"))
    assert 1 <= count <= 2, count  # the lookup pool holds two servers at most


def test_auth_query_must_name_the_user(cluster, make_pgplex):
    """A bad auth_query is refused at load with file, line and reason."""
    pgplex = make_pgplex(settings={"auth_user": AUTH_USER, "auth_query": "SELECT 1"},
                         start=False)
    pgplex.write()
    result = subprocess.run([pgplex.binary, "--check", str(pgplex.config_path)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "config.toml:" in result.stderr and "auth_query must name the user" in result.stderr


def test_a_routed_client_is_looked_up_on_its_cluster(replicated, make_cluster_pgplex):
    """A client of an alias over a cluster: the lookup runs on a healthy node of the cluster
    (its primary), and the looked-up user's statements then route as anyone's."""
    from conftest import pgplex_binary, wait_until
    schema = subprocess.run([pgplex_binary(), "--print-schema"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
    primary = replicated.primary
    replicated.admin_psql(primary, schema, dbname="payam_db")
    replicated.admin_psql(
        primary, f"DROP ROLE IF EXISTS {AUTH_USER}; CREATE ROLE {AUTH_USER} LOGIN PASSWORD "
        f"'{AUTH_PASSWORD}'; DROP ROLE IF EXISTS aq_routed; "
        "CREATE ROLE aq_routed LOGIN PASSWORD 'routed-secret'")
    replicated.admin_psql(primary, f"GRANT USAGE ON SCHEMA pgplex TO {AUTH_USER};"
                          f"GRANT EXECUTE ON FUNCTION pgplex.user_lookup(text) TO {AUTH_USER}",
                          dbname="payam_db")
    replicated.wait_replayed()
    pgplex = make_cluster_pgplex(
        replicated, aliases={"rdb": {"cluster": "c1", "dbname": "payam_db",
                                     "pool_mode": "transaction"}},
        settings={"auth_user": AUTH_USER},
        users={AUTH_USER: AUTH_PASSWORD, "payam": PASSWORDS["payam"]})

    def logs_in():
        try:
            return login(pgplex.port, "aq_routed", "routed-secret", dbname="rdb")[0]
        except psycopg.OperationalError:
            return None
    assert wait_until(lambda: logs_in() == "aq_routed", 10), pgplex.log()[-2000:]
    assert "password authentication failed" in login_error(pgplex.port, "aq_routed", "nope",
                                                           dbname="rdb")


def test_a_monitor_without_rights_on_the_pgplex_schema_still_sees_its_node(lookup_roles,
                                                                           make_pgplex):
    """The pgplex schema is installed, but monitor_user has no USAGE on it: the checks go on
    without the metrics (looking the function up would raise "permission denied for
    schema"), and the node is up."""
    from conftest import FAST_CHECKS, wait_until
    pgplex = make_pgplex(
        settings={"admin_users": ["payam"]},
        clusters={"c9": {"nodes": [f"{HOST}:{lookup_roles.port}"], "monitor_user": "payam",
                         "monitor_password": PASSWORDS["payam"], "monitor_dbname": "payam_db",
                         **FAST_CHECKS}})

    def up():
        rows = show(pgplex.port, "SHOW NODES")
        return rows and all(row["health"] == "up" for row in rows) and rows
    rows = wait_until(up, 10)
    assert rows, show(pgplex.port, "SHOW NODES")
    assert rows[0]["load1"] == "" and rows[0]["last_error"] == "", rows
