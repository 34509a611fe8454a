"""Session state a server cannot be lent on with, in transaction pooling: session advisory
locks, WITH HOLD cursors and temporary tables. With pin_on_session_state (the default) the
client keeps its server while it holds any, and gives it back once it lets go; without it,
such statements get 0A000 and never reach a server."""

import psycopg
import pytest

from conftest import connect

TRANSACTION = {"pool_mode": "transaction"}


def plain(port):
    return connect(port, autocommit=True, prepare_threshold=None)


def one(conn, sql):
    return conn.execute(sql).fetchone()[0]


def pid(conn):
    return one(conn, "SELECT pg_backend_pid()")


def test_an_advisory_lock_pins_its_client_until_unlocked(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with plain(pgplex.port) as a, plain(pgplex.port) as b, \
            connect(cluster.port, autocommit=True) as direct:
        one(a, "SELECT pg_advisory_lock(4242)")
        assert pgplex.wait_log(r"pinned to its server", timeout=3)
        held_by = pid(a)
        for _ in range(5):
            assert pid(a) == held_by  # every transaction on the server holding the lock
            pid(b)
        assert one(direct, "SELECT pg_try_advisory_lock(4242)") is False
        assert one(a, "SELECT pg_advisory_unlock(4242)") is True  # no WARNING: same session
        assert pgplex.wait_log(r"unpinned from its server", timeout=3)
        assert one(direct, "SELECT pg_try_advisory_lock(4242)") is True


def test_a_temporary_table_lives_across_transactions(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with plain(pgplex.port) as a, plain(pgplex.port) as b:
        a.execute("CREATE TEMP TABLE scratch (x int)")
        for value in range(5):
            a.execute("INSERT INTO scratch VALUES (%s)" % value)
            one(b, "SELECT 1")
        assert one(a, "SELECT sum(x) FROM scratch") == 10
        a.execute("DROP TABLE scratch")
        assert pgplex.wait_log(r"unpinned from its server", timeout=3)


def test_a_with_hold_cursor_is_fetched_from_across_transactions(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with plain(pgplex.port) as a, plain(pgplex.port) as b:
        with a.transaction():
            a.execute("DECLARE numbers CURSOR WITH HOLD FOR SELECT generate_series(1, 9)")
        fetched = []
        for _ in range(3):
            fetched += [row[0] for row in a.execute("FETCH 3 FROM numbers").fetchall()]
            one(b, "SELECT 1")
        assert fetched == list(range(1, 10))
        a.execute("CLOSE numbers")
        assert pgplex.wait_log(r"unpinned from its server", timeout=3)


def test_a_pinned_client_that_leaves_releases_its_lock_and_server(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with connect(cluster.port, autocommit=True) as direct:
        a = plain(pgplex.port)
        one(a, "SELECT pg_advisory_lock(4343)")
        a.close()
        with plain(pgplex.port) as b:  # the pool's only server is free again
            assert one(b, "SELECT 1") == 1
        assert one(direct, "SELECT pg_try_advisory_lock(4343)") is True


def test_without_pinning_such_statements_get_0a000_and_never_run(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=1,
                         settings={**TRANSACTION, "pin_on_session_state": False})
    with plain(pgplex.port) as a, connect(cluster.port, autocommit=True) as direct:
        for sql in ("SELECT pg_advisory_lock(4444)",
                    "create  temporary table nope (x int)",
                    "BEGIN; DECLARE c CURSOR\n WITH HOLD FOR SELECT 1; COMMIT"):
            with pytest.raises(psycopg.errors.FeatureNotSupported) as raised:
                a.execute(sql)
            assert "pin_on_session_state" in raised.value.diag.message_hint
        assert one(a, "SELECT 1") == 1  # still usable, on a shared server
        assert one(direct, "SELECT pg_try_advisory_lock(4444)") is True
        assert one(direct, "SELECT pg_advisory_unlock(4444)") is True
        # Transaction-scoped locks are fine in transaction pooling.
        with a.transaction():
            a.execute("SELECT pg_advisory_xact_lock(4444)")
            assert one(a, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND pid = pg_backend_pid()") == 1


def test_pin_on_session_state_per_database(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings={**TRANSACTION, "pin_on_session_state": False},
                         databases={"payam_db": {"pin_on_session_state": True}})
    with plain(pgplex.port) as a:
        a.execute("CREATE TEMP TABLE allowed_here (x int)")
        a.execute("DROP TABLE allowed_here")
