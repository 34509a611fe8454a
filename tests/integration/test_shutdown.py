"""Stopping pgplex, with PgBouncer's signals: SIGINT drains (each client is closed once idle
between transactions, exit 0 within shutdown_timeout); SIGTERM waits for the clients to leave
(they are served meanwhile; none is admitted); SIGQUIT, or a second SIGINT or SIGTERM, stops at
once. shutdown_timeout bounds every wait."""

import signal
import socket
import threading
import time
import uuid

import psycopg
import pytest

from conftest import HOST, connect


def refuses_new_clients(port):
    """True if a new client cannot log in: the connect is refused or the login fails."""
    try:
        with connect(port, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError):
        return True
    return False


@pytest.mark.smoke
def test_sigint_with_idle_client_exits_0_promptly_and_client_is_disconnected(pgplex):
    conn = connect(pgplex.port, autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        started = time.monotonic()
        pgplex.signal(signal.SIGINT)
        assert pgplex.wait_exit(5) == 0, f"exit code {pgplex.process.returncode}"
        assert time.monotonic() - started < 5
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute("SELECT 1")
        assert raised.value.sqlstate in (None, "57P01"), raised.value.sqlstate
    finally:
        conn.close()


def test_sigterm_with_no_clients_exits_0_and_stops_listening(pgplex):
    pgplex.signal(signal.SIGTERM)
    assert pgplex.wait_exit(5) == 0
    with pytest.raises(OSError):
        socket.create_connection((HOST, pgplex.port), timeout=2).close()


def test_sigint_with_only_idle_pooled_servers_exits_0_promptly(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="30s")
    for _ in range(3):
        with connect(pgplex.port) as conn:
            conn.execute("SELECT 1")
    # No clients left; the pool holds idle server connections.
    started = time.monotonic()
    pgplex.signal(signal.SIGINT)
    assert pgplex.wait_exit(5) == 0, f"exit code {pgplex.process.returncode}"
    assert time.monotonic() - started < 5


def test_sigint_lets_an_open_transaction_commit_before_exiting_0(make_pgplex, cluster):
    pgplex = make_pgplex(shutdown_timeout="10s")
    marker = uuid.uuid4().hex
    conn = connect(pgplex.port)
    outcome = {}

    def transaction():
        try:
            conn.execute("SELECT pg_sleep(2)")   # psycopg opens the transaction (BEGIN)
            conn.execute("INSERT INTO orders VALUES (8001, %s)", (marker,))
            conn.commit()
            outcome["committed"] = True
            conn.execute("SELECT 1")
            conn.commit()
            outcome["after_commit"] = "served"
        except psycopg.Error as error:
            outcome.setdefault("committed", False)
            outcome["after_commit"] = error
        except BaseException as error:  # noqa: B902 - reported to the test
            outcome["unexpected"] = error

    try:
        worker = threading.Thread(target=transaction)
        worker.start()
        time.sleep(0.7)   # inside BEGIN; SELECT pg_sleep(2)
        pgplex.signal(signal.SIGINT)
        time.sleep(0.3)
        assert refuses_new_clients(pgplex.port), "a new client logged in during shutdown"
        worker.join(15)
        assert "unexpected" not in outcome, outcome
        assert outcome.get("committed") is True, outcome
        # The committed row is really on the server.
        rows = cluster.admin_psql(f"SELECT id FROM orders WHERE item = '{marker}'",
                                  dbname="payam_db")
        assert rows == "8001"
        assert pgplex.wait_exit(10) == 0, f"exit code {pgplex.process.returncode}"
        # Once idle after its commit the client was closed, never served again.
        assert isinstance(outcome["after_commit"], psycopg.OperationalError), outcome
    finally:
        conn.close()
        cluster.admin_psql("DELETE FROM orders WHERE id = 8001", dbname="payam_db")


def test_sigint_past_shutdown_timeout_exits_0_even_with_a_busy_client(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="1s")
    conn = connect(pgplex.port)
    try:
        conn.execute("SELECT 1")   # an open transaction that never ends in time
        started = time.monotonic()
        pgplex.signal(signal.SIGINT)
        assert pgplex.wait_exit(8) == 0, f"exit code {pgplex.process.returncode}"
        assert time.monotonic() - started < 5
    finally:
        conn.close()


def test_sigquit_exits_at_once_even_with_a_client_inside_a_transaction(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="30s")
    conn = connect(pgplex.port)
    blocker = threading.Thread(target=lambda: _ignore_errors(conn, "SELECT pg_sleep(10)"))
    try:
        conn.execute("SELECT 1")
        blocker.start()
        time.sleep(0.5)
        started = time.monotonic()
        pgplex.signal(signal.SIGQUIT)
        assert pgplex.wait_exit(3) == 0, f"exit code {pgplex.process.returncode}"
        assert time.monotonic() - started < 3
    finally:
        blocker.join(15)
        conn.close()


def test_sigterm_serves_connected_clients_until_they_leave_then_exits_0(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="30s")
    conn = connect(pgplex.port, autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        pgplex.signal(signal.SIGTERM)
        assert pgplex.wait_log(r"waiting for clients to disconnect")
        time.sleep(0.6)   # three ticks: an idle client is not let go
        assert conn.execute("SELECT 2").fetchone() == (2,)
        assert refuses_new_clients(pgplex.port), "a new client logged in during shutdown"
        assert pgplex.running()
        started = time.monotonic()
        conn.close()
        assert pgplex.wait_exit(5) == 0, f"exit code {pgplex.process.returncode}"
        assert time.monotonic() - started < 3
    finally:
        conn.close()


def test_sigterm_past_shutdown_timeout_closes_the_clients_left_and_exits_0(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="1s")
    conn = connect(pgplex.port, autocommit=True)
    try:
        conn.execute("SELECT 1")
        started = time.monotonic()
        pgplex.signal(signal.SIGTERM)
        assert pgplex.wait_exit(8) == 0, f"exit code {pgplex.process.returncode}"
        assert 0.8 < time.monotonic() - started < 5
    finally:
        conn.close()


def test_second_signal_during_a_shutdown_stops_at_once(make_pgplex):
    pgplex = make_pgplex(shutdown_timeout="30s")
    conn = connect(pgplex.port, autocommit=True)
    try:
        conn.execute("SELECT 1")
        pgplex.signal(signal.SIGTERM)
        assert pgplex.wait_log(r"waiting for clients to disconnect")
        started = time.monotonic()
        pgplex.signal(signal.SIGINT)
        assert pgplex.wait_exit(3) == 0, f"exit code {pgplex.process.returncode}"
        assert time.monotonic() - started < 3
    finally:
        conn.close()


def _ignore_errors(conn, sql):
    try:
        conn.execute(sql)
    except psycopg.Error:
        pass
