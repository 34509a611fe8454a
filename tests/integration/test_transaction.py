"""pool_mode = "transaction": many clients share a few server connections, a server is lent
for one transaction at a time, and each client's session settings follow it from server to
server."""

import contextlib
import struct
import time

import psycopg
import pytest

from conftest import (CANCEL_REQUEST_CODE, RawClient, ServerError, assert_pgbench_clean, connect,
                      message, run_pgbench)
from test_limits import Background

TRANSACTION = {"pool_mode": "transaction"}


def plain(port, **kwargs):
    """A psycopg connection that uses no named prepared statements (not pooled yet)."""
    return connect(port, autocommit=True, prepare_threshold=None, **kwargs)


def one(conn, sql):
    return conn.execute(sql).fetchone()[0]


@contextlib.contextmanager
def two_clients(port):
    """Clients a and b, closed at the end whatever happens."""
    a, b = plain(port), plain(port)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.mark.smoke
def test_sixty_four_pgbench_clients_share_five_server_connections(make_pgplex, cluster):
    pgplex = make_pgplex(default_pool_size=5, settings=TRANSACTION)
    since = cluster.server_now()
    assert_pgbench_clean(run_pgbench(pgplex.port, ["-n", "-S", "-t", "50", "-c", "64", "-j", "2"]))
    assert_pgbench_clean(run_pgbench(pgplex.port, ["-n", "-t", "30", "-c", "32", "-j", "2"]))
    assert cluster.backends("app", since=since, dbname="appdb") <= 5


def test_idle_clients_hold_no_server_connection(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    since = cluster.server_now()
    clients = [plain(pgplex.port) for _ in range(12)]
    try:
        for round_ in range(2):
            for index, conn in enumerate(clients):
                assert one(conn, f"SELECT {index} + {round_}") == index + round_
        assert cluster.backends("payam", since=since, dbname="payam_db") <= 2
    finally:
        for conn in clients:
            conn.close()


def test_settings_of_one_client_are_never_seen_by_another_on_the_same_server(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        assert one(a, "SELECT pg_backend_pid()") == one(b, "SELECT pg_backend_pid()")
        defaults = [one(b, f"SHOW {name}") for name in ("search_path", "statement_timeout",
                                                       "TimeZone")]
        a.execute("SET search_path TO pg_catalog")
        a.execute("SET statement_timeout = '4321ms'")
        a.execute("SET TIME ZONE 'Asia/Tehran'")
        for _ in range(3):
            assert [one(a, "SHOW search_path"), one(a, "SHOW statement_timeout"),
                    one(a, "SHOW TimeZone")] == ["pg_catalog", "4321ms", "Asia/Tehran"]
            assert [one(b, "SHOW search_path"), one(b, "SHOW statement_timeout"),
                    one(b, "SHOW TimeZone")] == defaults


def test_a_clients_statement_timeout_is_in_force_for_it_alone(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        a.execute("SET statement_timeout = '200ms'")
        b.execute("SELECT pg_sleep(0.4)")
        with pytest.raises(psycopg.errors.QueryCanceled):
            a.execute("SELECT pg_sleep(2)")
        b.execute("SELECT pg_sleep(0.4)")


def test_set_local_and_rolled_back_sets_do_not_outlive_their_transaction(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        default_work_mem = one(b, "SHOW work_mem")
        with a.transaction():
            a.execute("SET LOCAL work_mem = '7MB'")
            assert one(a, "SHOW work_mem") == "7MB"
        assert one(a, "SHOW work_mem") == default_work_mem
        a.execute("SET statement_timeout = '1234ms'")
        a.execute("BEGIN")
        a.execute("SET statement_timeout = '999ms'")
        a.execute("ROLLBACK")
        assert one(b, "SHOW statement_timeout") == "0"
        assert one(a, "SHOW statement_timeout") == "1234ms"
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("SET statement_timeout = '888ms'; SELECT 1/0")
        assert one(a, "SHOW statement_timeout") == "1234ms"


def test_reset_and_set_to_default_follow_the_client(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        a.execute("SET statement_timeout = '5s'; SET search_path = pg_catalog")
        b.execute("SET statement_timeout = '7s'")
        a.execute("RESET statement_timeout")
        assert one(a, "SHOW statement_timeout") == "0"
        assert one(a, "SHOW search_path") == "pg_catalog"
        assert one(b, "SHOW statement_timeout") == "7s"
        a.execute("SET search_path TO DEFAULT")
        assert one(a, "SHOW search_path") == '"$user", public'
        b.execute("RESET ALL")
        assert one(b, "SHOW statement_timeout") == "0"


def test_an_explicit_transaction_keeps_its_server_until_commit(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        a.execute("CREATE TABLE IF NOT EXISTS tx_hold (n int)")
        a.execute("BEGIN")
        a.execute("INSERT INTO tx_hold VALUES (1)")
        waiter = Background(lambda: one(b, "SELECT count(*) FROM tx_hold"))
        assert not waiter.join(1.0), "another client got the server inside a transaction"
        a.execute("COMMIT")
        assert waiter.join(10) and waiter.error is None, waiter.error
        assert waiter.result >= 1


def test_an_error_inside_a_transaction_holds_the_server_until_rollback(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        a.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("SELECT 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            a.execute("SELECT 1")
        waiter = Background(lambda: one(b, "SELECT 2"))
        assert not waiter.join(1.0)
        a.execute("ROLLBACK")
        assert waiter.join(10) and waiter.result == 2
        assert one(a, "SELECT 3") == 3


def test_pipelines_with_several_syncs_and_multi_statement_queries(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        with a.pipeline() as pipeline:
            cursors = [a.execute("SELECT %s::int * 2", (n,), prepare=False) for n in range(5)]
            pipeline.sync()
            cursors += [a.execute("SELECT %s::int * 3", (n,), prepare=False) for n in range(5)]
        assert [c.fetchone()[0] for c in cursors] == [0, 2, 4, 6, 8, 0, 3, 6, 9, 12]
        assert one(b, "SELECT 'b'") == "b"
        result = a.execute("SELECT 1; SELECT 2; SELECT 3")
        values = [result.fetchone()[0]]
        while result.nextset():
            values.append(result.fetchone()[0])
        assert values == [1, 2, 3]


def test_copy_inside_a_transaction(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        a.execute("CREATE TABLE IF NOT EXISTS tx_copy (n int)")
        a.execute("TRUNCATE tx_copy")
        with a.transaction():
            with a.cursor().copy("COPY tx_copy FROM STDIN") as copy:
                for n in range(20000):
                    copy.write_row((n,))
        assert one(b, "SELECT count(*) FROM tx_copy") == 20000
        with a.cursor().copy("COPY tx_copy TO STDOUT") as copy:
            rows = sum(1 for _ in copy.rows())
        assert rows == 20000


def test_cancel_reaches_the_server_running_the_clients_query(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    a = plain(pgplex.port)
    try:
        canceller = Background(lambda: (time.sleep(0.7), a.cancel()))
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            a.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - started < 10
        canceller.join(5)
        assert one(a, "SELECT 5") == 5
    finally:
        a.close()


def test_a_cancel_racing_the_end_of_its_query_never_hits_the_next_clients(make_pgplex):
    """A cancel that reaches PostgreSQL after its statement ended must not cancel what the
    server runs next, another client's statement or, once cancel() returned, its own. One server, two clients: the first runs a short sleep and is cancelled
    around the moment it ends, the second waits for the server meanwhile. Whatever the race
    does to the first (cancelled or not), the second is never cancelled."""
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    first, second = plain(pgplex.port), plain(pgplex.port)
    random = __import__("random").Random(7)
    hits, cancelled = [], 0
    try:
        for _ in range(40):
            runner = Background(lambda: first.execute("SELECT pg_sleep(0.1)"))
            time.sleep(0.02)
            waiter = Background(lambda: second.execute("SELECT pg_sleep(0.05)"))
            time.sleep(0.08 + random.uniform(-0.03, 0.01))
            first.cancel()
            assert runner.join(10) and waiter.join(10), "a client got no answer"
            if isinstance(runner.error, psycopg.errors.QueryCanceled):
                cancelled += 1
            else:
                assert runner.error is None, runner.error
            if waiter.error is not None:
                hits.append(repr(waiter.error))
            # Once cancel() has returned, as on a direct connection, the client's own next
            # statement is safe from it too.
            try:
                first.execute("SELECT pg_sleep(0.01)")
            except psycopg.errors.QueryCanceled as error:
                hits.append(f"its own next statement: {error!r}")
        assert not hits, f"{len(hits)} of 40 cancels hit a later statement: {hits[:3]}"
        assert 0 < cancelled < 40, cancelled  # the race was run from both sides
    finally:
        first.close()
        second.close()


def test_once_cancel_returned_it_never_hits_the_clients_next_statement(make_pgplex):
    """libpq's cancel() returns once PostgreSQL has signalled (it closes the request's
    connection then), so on a direct connection the next statement is safe from it. Through
    pgplex, which answers the client's cancel connection at once, the client's next statement
    waits for the server's confirmation instead."""
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    random = __import__("random").Random(11)
    hits, cancelled = [], 0
    with plain(pgplex.port) as conn:
        for _ in range(40):
            runner = Background(lambda: conn.execute("SELECT pg_sleep(0.05)"))
            time.sleep(0.05 + random.uniform(-0.02, 0.01))
            conn.cancel()
            assert runner.join(10), "no answer"
            cancelled += isinstance(runner.error, psycopg.errors.QueryCanceled)
            try:
                conn.execute("SELECT pg_sleep(0.05)")
            except psycopg.errors.QueryCanceled as error:
                hits.append(repr(error))
    assert not hits, f"{len(hits)} of 40 cancels hit the next statement"
    assert cancelled < 40, cancelled


def send_cancel(port, backend_key):
    with RawClient(port) as canceller:
        canceller.send(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, *backend_key))
        assert canceller.is_closed()


@pytest.fixture
def probe(cluster):
    """A table a cancelled statement would have written to."""
    cluster.admin_psql("DROP TABLE IF EXISTS cancel_probe; CREATE TABLE cancel_probe (x int);"
                       " GRANT ALL ON cancel_probe TO payam", dbname="payam_db")
    return lambda: int(cluster.admin_psql("SELECT count(*) FROM cancel_probe",
                                          dbname="payam_db").strip())


def test_a_cancel_of_a_client_waiting_for_a_server_answers_it_at_once(make_pgplex, probe):
    """The pool's only server is held: a client's statement waits for it. Its cancel (JDBC's
    Statement.cancel, psql's ^C) is answered 57014 at once, as PostgreSQL answers a cancelled
    statement, and the statement never runs; the client goes on, and so does the holder."""
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    holder, waiter = plain(pgplex.port), plain(pgplex.port)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        # psycopg without prepare: Parse/Bind/Describe/Execute/Sync (the extended protocol).
        insert = Background(lambda: waiter.execute("INSERT INTO cancel_probe VALUES (1)"))
        time.sleep(0.5)
        assert not insert.done()
        started = time.monotonic()
        waiter.cancel()
        assert insert.join(5), "the cancelled client got no answer while the pool was full"
        assert isinstance(insert.error, psycopg.errors.QueryCanceled), insert.error
        assert time.monotonic() - started < 2
        assert one(holder, "SELECT 2") == 2  # the holder's transaction is untouched
        holder.execute("COMMIT")
        assert one(waiter, "SELECT 3") == 3
        assert probe() == 0
    finally:
        holder.close()
        waiter.close()


def test_a_cancel_while_waiting_cancels_the_first_request_only(make_pgplex, probe):
    """Simple-protocol requests pipelined while waiting for a server: the cancel answers the
    first (57014, ReadyForQuery idle) and the second runs once a server is free, as on a
    direct connection where the cancel lands during the first."""
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    holder = plain(pgplex.port)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        try:
            holder.execute("BEGIN")
            holder.execute("SELECT 1")
            client.send(message(b"Q", b"INSERT INTO cancel_probe VALUES (1)\0") +
                        message(b"Q", b"SELECT 'second'\0"))
            time.sleep(0.3)
            send_cancel(pgplex.port, client.backend_key)
            with pytest.raises(ServerError) as raised:
                client.results()
            assert raised.value.sqlstate == "57014"
            holder.execute("COMMIT")
            assert client.results() == [["second"]]
            assert client.query("SELECT 'after'") == [["after"]]
            assert probe() == 0
        finally:
            holder.close()


def test_a_cancel_while_pgplex_replays_the_session_cancels_the_waiting_statement(
        make_pgplex, cluster, probe):
    """The client's statement waits behind pgplex's replay of its session (a PREPARE that
    waits for a lock) on the server it was lent. A cancel then must neither hit the replay
    nor be lost: once the replay is done the statement is answered 57014 without running."""
    cluster.admin_psql("DROP TABLE IF EXISTS replay_locked; CREATE TABLE replay_locked (x int);"
                       " GRANT ALL ON replay_locked TO payam", dbname="payam_db")
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    other = plain(pgplex.port)
    locker = psycopg.connect(host=cluster.dir, port=cluster.port, dbname="payam_db",
                             user="payam", autocommit=True)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        try:
            client.query("PREPARE p AS SELECT count(*) FROM replay_locked")  # on server 1
            other.execute("BEGIN")
            other.execute("SELECT 1")  # holds server 1: the client's next gets server 2
            locker.execute("BEGIN")
            locker.execute("LOCK replay_locked IN ACCESS EXCLUSIVE MODE")
            client.send(message(b"Q", b"INSERT INTO cancel_probe VALUES (1)\0"))
            time.sleep(0.5)  # server 2 replays PREPARE p, waiting for the lock
            send_cancel(pgplex.port, client.backend_key)
            time.sleep(0.3)
            locker.execute("ROLLBACK")
            with pytest.raises(ServerError) as raised:
                client.results()
            assert raised.value.sqlstate == "57014"
            assert client.query("EXECUTE p") == [["0"]]  # the replay was not cancelled
            assert probe() == 0
            other.execute("COMMIT")
        finally:
            other.close()
            locker.close()


def test_a_set_sent_through_the_extended_protocol_follows_the_client(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with two_clients(pgplex.port) as (a, b):
        # In a pipeline psycopg sends every statement as Parse/Bind/Execute, as JDBC does.
        with a.pipeline():
            a.execute("SET statement_timeout = '2345ms'", prepare=False)
        assert one(b, "SHOW statement_timeout") == "0"
        assert one(a, "SHOW statement_timeout") == "2345ms"


def test_waiting_clients_are_served_in_the_order_they_asked(make_pgplex):
    # One worker: the waiter list is per worker and first come, first served there.
    pgplex = make_pgplex(pool_size=1, workers=1, settings=TRANSACTION)
    holder = plain(pgplex.port)
    waiters = [plain(pgplex.port) for _ in range(4)]
    try:
        holder.execute("BEGIN")  # the pool's only server, held
        queued = []
        for conn in waiters:
            queued.append(Background(lambda conn=conn: one(conn, "SELECT clock_timestamp()")))
            time.sleep(0.2)  # each is in line before the next asks
        assert not any(job.done() for job in queued)
        holder.execute("COMMIT")
        for job in queued:
            assert job.join(10) and job.error is None, job.error
        served = [job.result for job in queued]
        assert served == sorted(served)
    finally:
        holder.close()
        for conn in waiters:
            conn.close()
