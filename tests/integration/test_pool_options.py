"""Pool options PgBouncer users know: reserve_pool_size / reserve_pool_timeout,
min_pool_size, per-user settings ([users.NAME]) and pool_mode = "statement"."""

import time

import psycopg
import pytest

from conftest import (RawClient, assert_pgbench_clean, connect, message, parse_error_fields,
                      run_pgbench)
from test_limits import Background


def wait_until(predicate, timeout, step=0.1):
    """True as soon as predicate() is, False if it still is not after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def open_session(port, **kwargs):
    """A session-mode client that has its server: (connection, backend pid)."""
    conn = connect(port, autocommit=True, **kwargs)
    return conn, conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def plain(port, **kwargs):
    """A client for transaction and statement pooling: no named prepared statements."""
    return connect(port, autocommit=True, prepare_threshold=None, **kwargs)


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def close_all(connections):
    for conn in connections:
        conn.close()


def test_reserve_pool_opens_after_reserve_pool_timeout_and_never_past_its_size(
        make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, settings={"reserve_pool_size": 1,
                                                "reserve_pool_timeout": "1s"})
    since = cluster.server_now()
    holders = [open_session(pgplex.port)[0] for _ in range(2)]
    waiters = [Background(lambda: open_session(pgplex.port)) for _ in range(2)]
    try:
        assert not waiters[0].join(0.7) and not waiters[1].done(), \
            "a client was served past pool_size before reserve_pool_timeout"
        assert wait_until(lambda: any(w.done() for w in waiters), 4), "reserve never used"
        first = next(w for w in waiters if w.done())
        second = next(w for w in waiters if w is not first)
        assert first.error is None, first.error
        assert first.elapsed() >= 0.9, first.elapsed()
        assert pgplex.wait_log(r"taking connection from reserve_pool"), pgplex.log()
        # The reserve holds one server: the other client keeps waiting.
        assert not second.join(1.5), "a second reserve server was opened"
        assert cluster.backends("payam", since=since, dbname="payam_db") == 3
        holders.pop().close()
        assert second.join(5) and second.error is None, second.error
        assert cluster.backends("payam", since=since, dbname="payam_db") <= 3
    finally:
        for waiter in waiters:
            waiter.join(10)
        close_all(holders + [w.result[0] for w in waiters if w.result])


def backend_pids(cluster, user="payam", dbname="payam_db"):
    rows = cluster.admin_psql("SELECT pid FROM pg_stat_activity WHERE usename = "
                              f"'{user}' AND datname = '{dbname}' "
                              "AND backend_type = 'client backend' ORDER BY pid")
    return set(rows.split())


def test_min_pool_size_servers_open_without_clients_and_outlive_server_idle_timeout(
        make_pgplex, cluster):
    pgplex = make_pgplex(databases={"payam_db": {"min_pool_size": 3}},
                         settings={"server_idle_timeout": "1s"})
    before = backend_pids(cluster)
    # A pool exists once a client has used it; from then on it is kept at min_pool_size.
    with connect(pgplex.port) as conn:
        conn.execute("SELECT 1")
    assert wait_until(lambda: len(backend_pids(cluster) - before) == 3, 3), \
        f"{len(backend_pids(cluster) - before)} servers, not min_pool_size 3"
    warm = backend_pids(cluster) - before
    assert pgplex.wait_log(r"to keep min_pool_size 3"), pgplex.log()
    time.sleep(2)  # twice server_idle_timeout, no client
    assert backend_pids(cluster) - before == warm, "server_idle_timeout went below the minimum"


def test_server_idle_timeout_closes_servers_down_to_min_pool_size_and_no_further(
        make_pgplex, cluster):
    pgplex = make_pgplex(databases={"payam_db": {"min_pool_size": 2}},
                         settings={"server_idle_timeout": "1s"})
    since = cluster.server_now()
    sessions = [open_session(pgplex.port)[0] for _ in range(5)]
    assert cluster.backends("payam", since=since, dbname="payam_db") == 5
    close_all(sessions)
    assert wait_until(lambda: cluster.backends("payam", since=since, dbname="payam_db") == 2,
                      4), "idle servers above min_pool_size were not closed"
    time.sleep(1.5)
    assert cluster.backends("payam", since=since, dbname="payam_db") == 2


def test_min_pool_size_never_opens_past_pool_size(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, databases={"payam_db": {"min_pool_size": 5}})
    before = backend_pids(cluster)
    with connect(pgplex.port) as conn:
        conn.execute("SELECT 1")
    assert wait_until(lambda: len(backend_pids(cluster) - before) == 2, 3)
    time.sleep(0.6)  # three more ticks
    assert len(backend_pids(cluster) - before) == 2


def test_a_users_pool_mode_wins_over_its_aliases(make_pgplex):
    pgplex = make_pgplex(pool_size=1, databases={"payam_db": {"pool_mode": "session"},
                                                 "payam_dw": {"pool_mode": "session"}},
                         user_settings={"payam": {"pool_mode": "transaction"}})
    # payam_db's pool logs in as payam, whose [users] table says transaction: two clients
    # share its one server.
    a, b = plain(pgplex.port), plain(pgplex.port)
    holder = None
    try:
        assert backend_pid(a) == backend_pid(b)
        # payam_dw's pool logs in as dataplatform_ro, who has no [users] table: the alias's
        # session mode holds, and a second client waits for the first to leave.
        holder = open_session(pgplex.port, dbname="payam_dw", user="dataplatform_ro")[0]
        waiter = Background(lambda: open_session(pgplex.port, dbname="payam_dw",
                                                 user="dataplatform_ro")[0].close())
        assert not waiter.join(1.0), "payam_dw was not in session mode"
        holder.close()
        assert waiter.join(5) and waiter.error is None, waiter.error
    finally:
        close_all([a, b] + ([holder] if holder else []))


STATEMENT = {"pool_mode": "statement"}


def test_statement_mode_pools_autocommit_statements_and_implicit_transactions(
        make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=1, default_pool_size=2, settings=STATEMENT)
    since = cluster.server_now()
    clients = [plain(pgplex.port) for _ in range(4)]
    try:
        pids = {backend_pid(conn) for conn in clients for _ in range(2)}
        assert len(pids) == 1, "statement pooling did not share the one server"
        # A multi-statement Query is one implicit transaction, ending idle: allowed.
        cursor = clients[0].execute("SELECT 1; SELECT 2")
        assert cursor.fetchone() == (1,)
        assert cursor.nextset() and cursor.fetchone() == (2,)
        assert clients[1].execute("SELECT 3").fetchone() == (3,)
        assert cluster.backends("payam", since=since, dbname="payam_db") == 1
    finally:
        close_all(clients)
    since = cluster.server_now()
    assert_pgbench_clean(run_pgbench(pgplex.port, ["-n", "-S", "-M", "extended", "-T", "2",
                                                   "-c", "8", "-j", "2"]))
    assert cluster.backends("app", since=since, dbname="appdb") <= 2


REFUSAL = "transaction blocks not allowed in statement pooling mode"


def assert_refused_transaction_block(error):
    """libpq reads the FATAL error and the close together, so psycopg reports it as a lost
    connection whose message carries pgplex's words (as it does behind PgBouncer)."""
    assert isinstance(error, psycopg.OperationalError), repr(error)
    assert REFUSAL in str(error), str(error)


def test_statement_mode_answers_begin_with_fatal_08p01_and_closes_the_client(make_pgplex):
    pgplex = make_pgplex(settings=STATEMENT)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        client.send(message(b"Q", b"BEGIN\0"))
        messages = client.read_until_closed()
    kinds = [kind for kind, _ in messages]
    assert kinds == [b"C", b"E"], messages  # no ReadyForQuery: the client never idles in it
    fields = parse_error_fields(messages[1][1])
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "08P01", REFUSAL), fields


def test_statement_mode_refuses_a_transaction_block_and_reuses_the_server(
        make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=1, settings=STATEMENT)
    since = cluster.server_now()
    other = plain(pgplex.port)
    try:
        pid = backend_pid(other)
        for begin in ("BEGIN", "SELECT 1; BEGIN", "START TRANSACTION READ ONLY"):
            client = plain(pgplex.port)
            with pytest.raises(psycopg.Error) as refused:
                client.execute(begin)
            assert_refused_transaction_block(refused.value)
            assert client.closed or client.broken
            client.close()
            # The server was rolled back and lent again, not closed: the next statement runs
            # outside any transaction block on the same backend.
            assert backend_pid(other) == pid
            assert other.execute("SELECT 4").fetchone() == (4,)
        # psycopg outside autocommit opens every transaction with BEGIN.
        with pytest.raises(psycopg.Error) as refused:
            with connect(pgplex.port, prepare_threshold=None) as client:
                client.execute("SELECT 1")
        assert_refused_transaction_block(refused.value)
        assert pgplex.wait_log(r"transaction block in statement pooling mode"), pgplex.log()
        assert backend_pid(other) == pid
        assert cluster.backends("payam", since=since, dbname="payam_db") == 1
    finally:
        other.close()
