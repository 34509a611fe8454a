"""Isolation in transaction pooling, one test per way it was found broken: a client's
session state (settings, role, session authorization, prepared statements) never reaches
another client, follows its own client from server to server, and a replay of it never
hurts anyone. Each test runs on a pool of one server connection, so every client's
transaction runs on the server the other client just used; where it matters, the same
steps on a direct connection give the expected answer."""

import psycopg
import pytest

from conftest import RawClient, ServerError, auth_file_secrets, connect, message

TRANSACTION = {"pool_mode": "transaction"}
ADMIN = "iso_admin"
ADMIN_PASSWORD = "iso-admin-secret"


def plain(port, **kwargs):
    return connect(port, autocommit=True, prepare_threshold=None, **kwargs)


def one(conn, sql):
    return conn.execute(sql).fetchone()[0]


@pytest.fixture
def roles(cluster):
    """A superuser that logs in through pgplex, and a role payam may SET ROLE to."""
    cluster.admin_psql(
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN}') THEN "
        f"CREATE ROLE {ADMIN} SUPERUSER LOGIN PASSWORD '{ADMIN_PASSWORD}'; END IF; "
        "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iso_reader') THEN "
        "CREATE ROLE iso_reader; END IF; END$$; GRANT iso_reader TO payam")


@pytest.fixture
def pooled(make_pgplex, cluster, roles):
    users = {**auth_file_secrets(cluster, "plain"), ADMIN: ADMIN_PASSWORD}
    iso = {"host": "127.0.0.1", "port": cluster.port, "dbname": "payam_db", "user": ADMIN,
           "password": ADMIN_PASSWORD, "pool_size": 1}
    return make_pgplex(pool_size=1, settings=TRANSACTION, users=users, databases={"iso": iso})


def test_set_config_of_one_client_is_not_in_force_for_the_next(pooled):
    a, b = plain(pooled.port), plain(pooled.port)
    try:
        default = one(b, "SHOW search_path")
        a.execute("SELECT set_config('search_path', 'a_schema', false)")
        assert one(b, "SHOW search_path") == default
        a.execute("DO $$BEGIN PERFORM set_config('work_mem', '7MB', false); END$$")
        assert one(b, "SHOW work_mem") != "7MB"
        # ... and both follow their own client.
        assert one(a, "SHOW search_path") == "a_schema"
        assert one(a, "SHOW work_mem") == "7MB"
        assert one(b, "SHOW search_path") == default
    finally:
        a.close()
        b.close()


def test_a_role_is_seen_only_by_the_client_that_set_it(pooled):
    admin = lambda: plain(pooled.port, dbname="iso", user=ADMIN,  # noqa: E731
                          password=ADMIN_PASSWORD)
    a, b = admin(), admin()
    try:
        a.execute("SET ROLE payam")
        assert one(b, "SELECT current_setting('role')") == "none"
        assert one(b, "SELECT count(*) > 0 FROM pg_config")  # superuser-only view
        assert one(a, "SELECT current_user") == "payam"
        a.execute("SET SESSION AUTHORIZATION payam")
        assert one(b, "SELECT session_user || '/' || current_user") == f"{ADMIN}/{ADMIN}"
        assert one(a, "SELECT session_user || '/' || current_setting('role')") == "payam/none"
        a.execute("RESET SESSION AUTHORIZATION")
        assert one(a, "SELECT session_user || '/' || current_user") == f"{ADMIN}/{ADMIN}"
        # A SET ROLE in a transaction that rolls back never happened.
        a.execute("BEGIN")
        a.execute("SET ROLE payam")
        a.execute("ROLLBACK")
        assert one(a, "SELECT current_user") == ADMIN
        a.execute("SET ROLE payam")
        a.execute("RESET ROLE")
        assert one(a, "SELECT current_user") == ADMIN
        assert one(b, "SELECT current_user") == ADMIN
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("statement, check, expected", [
    ("SET XML OPTION DOCUMENT", "SHOW xmloption", "document"),
    ("SET TIME ZONE 'Asia/Tokyo'", "SHOW timezone", "Asia/Tokyo"),
    ("SET NAMES 'LATIN1'", "SHOW client_encoding", "LATIN1"),
    ("SET SCHEMA 'other'", "SHOW search_path", "other"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
     "SHOW default_transaction_isolation", "serializable"),
    ("SET ROLE iso_reader", "SELECT current_user", "iso_reader"),
])
def test_set_forms_with_their_own_grammar_follow_their_client_and_only_it(
        pooled, statement, check, expected):
    a, b = plain(pooled.port), plain(pooled.port)
    try:
        before = one(b, check)
        assert before != expected
        a.execute(statement)
        assert one(b, check) == before, "another client's setting reached b"
        assert one(a, check) == expected
        assert one(b, check) == before
        a.execute("RESET ALL" if "ROLE" not in statement else "RESET ROLE")
        assert one(a, check) == before
    finally:
        a.close()
        b.close()


def test_a_prepare_that_cannot_be_replayed_kills_nobody(pooled):
    a, b = plain(pooled.port), plain(pooled.port)
    try:
        a.execute("CREATE TEMP TABLE pcachetest (x int)")
        a.execute("PREPARE prepstmt AS SELECT * FROM pcachetest")
        a.execute("DROP TABLE pcachetest")  # no more session state: a is lent out again
        assert one(b, "SELECT 1") == 1
        assert one(a, "SELECT 2") == 2
        assert one(b, "SELECT 3") == 3
        # a's own statement answers as directly: its table is gone.
        with pytest.raises(psycopg.errors.Error):
            a.execute("EXECUTE prepstmt")
        assert one(a, "SELECT 4") == 4
    finally:
        a.close()
        b.close()


def test_a_clients_own_bad_prepare_reaches_only_it_as_directly(pooled, cluster):
    a, b = plain(pooled.port), plain(pooled.port)
    try:
        with pytest.raises(psycopg.errors.UndefinedTable):
            a.execute("PREPARE p1 AS SELECT * FROM no_such_table")
        assert one(b, "SELECT 1") == 1
        assert one(a, "SELECT count(*) FROM pg_prepared_statements") == 0
        a.execute("PREPARE p1 AS SELECT 41 + 1")
        assert one(b, "SELECT count(*) FROM pg_prepared_statements") == 0
        assert one(a, "EXECUTE p1") == 42
        assert one(a, "SELECT statement FROM pg_prepared_statements") == "PREPARE p1 AS SELECT 41 + 1"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_reset_goes_back_to_the_clients_startup_value(make_pgplex, cluster, mode):
    pgplex = make_pgplex(pool_size=1, settings={"pool_mode": mode})
    options = "-c DateStyle=SQL,DMY -c extra_float_digits=2"
    direct = psycopg.connect(host=cluster.dir, port=cluster.port, dbname="payam_db",
                             user="payam", autocommit=True, options=options)
    pooled = plain(pgplex.port, options=options)
    try:
        for conn in (direct, pooled):
            conn.execute("SET DateStyle = 'German'")
        steps = ["RESET DateStyle", "SET DateStyle = 'ISO'; RESET ALL",
                 "SET extra_float_digits = 0", "SET extra_float_digits TO DEFAULT",
                 "SET DateStyle = 'Postgres'", "DISCARD ALL"]
        for step in steps:
            seen = []
            for conn in (direct, pooled):
                conn.execute(step)
                seen.append((one(conn, "SHOW DateStyle"), one(conn, "SHOW extra_float_digits")))
            assert seen[0] == seen[1], f"after {step!r}: direct {seen[0]}, pgplex {seen[1]}"
        assert seen[0] == ("SQL, DMY", "2")
    finally:
        direct.close()
        pooled.close()


def test_a_failed_deallocate_stays_undone_when_the_next_query_rides_the_same_lease(make_pgplex):
    # The Query resets a startup parameter, so pgplex follows it with its own Query; the
    # client's next Query, sent without waiting, reaches the server before that follow-up's
    # reply and runs on the same lease. Its commit must not count the failed Query's
    # DEALLOCATE ALL as done: directly, p1 is still there.
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db", application_name="start")
        client.query("PREPARE p1 (int) AS SELECT $1 * 3")
        client.send(message(b"Q", b"SELECT 1/0; DEALLOCATE ALL; SET application_name TO DEFAULT\0")
                    + message(b"Q", b"SELECT 1\0"))
        with pytest.raises(ServerError) as raised:
            client.results()
        assert raised.value.sqlstate == "22012"
        assert client.results() == [["1"]]
        assert client.query("EXECUTE p1(2)") == [["6"]]
        assert client.query("SHOW application_name") == [["start"]]


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_client_that_leaves_while_its_settings_are_read_leaves_no_setting_behind(
        make_pgplex, mode):
    # A client whose transaction pgplex cannot read from its text (a DO block) gets its
    # settings read back from the server; one that closes right away leaves while that read
    # is in flight. The server must not go to the next client as if the read had found what
    # pgplex replayed before: b wants what a started with, and must not get what a's DO set.
    pgplex = make_pgplex(pool_size=1, settings={"pool_mode": mode, "server_reset_query": ""})
    startup = "-c default_transaction_isolation=serializable"
    for attempt in range(25):
        a = plain(pgplex.port, options=startup)
        a.execute("DO $$BEGIN PERFORM set_config('default_transaction_isolation', "
                  "'read committed', false); END$$")
        a.close()  # Terminate as soon as the DO's ReadyForQuery is in
        with plain(pgplex.port, options=startup) as b:
            assert one(b, "SHOW default_transaction_isolation") == "serializable", attempt
