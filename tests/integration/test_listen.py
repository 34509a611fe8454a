"""LISTEN/NOTIFY in transaction pooling: pgplex answers LISTEN and UNLISTEN itself, one
listener connection per pool LISTENs on the union of its clients' channels, and every
notification reaches each client that listens, between its transactions."""

import re
import select
import struct
import time

import psycopg
import pytest

from conftest import RawClient, connect, message

TRANSACTION = {"pool_mode": "transaction"}
WAIT_SECONDS = 5


def listening_client(port, **kwargs):
    """A transaction-pooled psycopg connection that records its notifications."""
    conn = connect(port, autocommit=True, prepare_threshold=None, **kwargs)
    conn.received = []
    conn.add_notify_handler(lambda n: conn.received.append((n.channel, n.payload)))
    return conn


def wait_notifies(conn, count=1, timeout=WAIT_SECONDS):
    """Reads the connection until it has count notifications or timeout passes; returns all
    it received so far as (channel, payload)."""
    deadline = time.monotonic() + timeout
    while len(conn.received) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([conn.fileno()], [], [], remaining)
        if ready:
            conn.pgconn.consume_input()
            while (notify := conn.pgconn.notifies()) is not None:
                conn.received.append((notify.relname.decode(), notify.extra.decode()))
    return conn.received


def notify(port, *pairs):
    """Sends NOTIFY channel, 'payload' for each pair, in order, one transaction each."""
    with connect(port, autocommit=True, prepare_threshold=None) as conn:
        for channel, payload in pairs:
            conn.execute(f"NOTIFY {channel}, '{payload}'")


def notify_until_received(port, conn, channel, payload, attempts=20):
    """A LISTEN inside a transaction takes effect just after its COMMIT: notifies until the
    client hears it (bounded)."""
    for _ in range(attempts):
        notify(port, (channel, payload))
        if (channel, payload) in wait_notifies(conn, len(conn.received) + 1, timeout=0.5):
            return
    raise AssertionError(f"{channel} never delivered: {conn.received}")


def worker_of(conn):
    """pgplex gives a client the process id 1 << 30 | appliance << 26 | worker << 20 | slot."""
    return (conn.info.backend_pid >> 20) & 63


def listener_pid(pgplex, count=1):
    """The backend pid of the listener's count-th login, from pgplex's log."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = re.findall(r"listener of payam_db/payam@\S+: logged in \(backend pid (\d+)",
                           pgplex.log())
        if len(found) >= count:
            return int(found[count - 1])
        time.sleep(0.05)
    raise AssertionError(f"no listener login #{count} in the log:\n{pgplex.log()}")


@pytest.mark.smoke
def test_a_hundred_clients_on_both_workers_hear_a_notify_through_a_pool_of_five(
        make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=5, max_client_conn=150, settings=TRANSACTION)
    since = cluster.server_now()
    clients = []
    try:
        for _ in range(100):
            conn = listening_client(pgplex.port)
            conn.execute("LISTEN orders_changed")
            clients.append(conn)
        assert {worker_of(conn) for conn in clients} == {0, 1}
        notify(pgplex.port, ("orders_changed", "id=7"))
        for conn in clients:
            assert wait_notifies(conn) == [("orders_changed", "id=7")]
        # Five lendable servers and the one listener.
        assert cluster.backends("payam", since=since, dbname="payam_db") <= 6
        assert all(conn.execute("SELECT 1").fetchone() == (1,) for conn in clients)
    finally:
        for conn in clients:
            conn.close()


def test_a_notify_in_a_rolled_back_transaction_is_never_delivered(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as listener, \
            connect(pgplex.port, prepare_threshold=None) as sender:
        listener.execute("LISTEN jobs")
        sender.execute("NOTIFY jobs, 'rolled back'")
        sender.rollback()
        sender.execute("NOTIFY jobs, 'committed'")
        sender.commit()
        # Both came in order through the same listener: the first would have come first.
        assert wait_notifies(listener) == [("jobs", "committed")]
        assert wait_notifies(listener, 2, timeout=0.3) == [("jobs", "committed")]


def test_unlisten_stops_delivery_and_unlisten_star_stops_all(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as conn, listening_client(pgplex.port) as sentinel:
        conn.execute("LISTEN a; LISTEN b")
        sentinel.execute("LISTEN z")
        notify(pgplex.port, ("a", "1"))
        assert wait_notifies(conn) == [("a", "1")]
        conn.execute("UNLISTEN a")
        notify(pgplex.port, ("a", "2"), ("b", "3"))
        assert wait_notifies(conn, 2) == [("a", "1"), ("b", "3")]
        conn.execute("UNLISTEN *")
        notify(pgplex.port, ("b", "4"), ("z", "5"))
        assert wait_notifies(sentinel) == [("z", "5")]
        assert wait_notifies(conn, 3, timeout=0.3) == [("a", "1"), ("b", "3")]


def test_a_notification_for_a_client_mid_transaction_comes_after_its_commit(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        client.query("LISTEN audit")
        client.query("BEGIN")
        client.query("SELECT 1")
        notify(pgplex.port, ("audit", "during"))
        time.sleep(0.3)
        client.send(message(b"Q", b"SELECT 2\0"))
        kinds = read_until_ready(client)
        assert b"A" not in kinds, kinds
        client.send(message(b"Q", b"COMMIT\0"))
        assert read_until_ready(client) == [b"C", b"Z"]
        kind, body = client.read_message()
        assert kind == b"A"
        pid, rest = struct.unpack("!I", body[:4])[0], body[4:]
        assert pid > 0
        assert rest == b"audit\0during\0"


def read_until_ready(client):
    kinds = []
    while True:
        kind, _ = client.read_message()
        assert kind is not None, f"closed after {kinds}"
        kinds.append(kind)
        if kind == b"Z":
            return kinds


def test_listen_inside_a_transaction_counts_at_commit_and_not_after_rollback(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("LISTEN dropped")
        with conn.transaction():
            conn.execute("LISTEN kept")
        notify_until_received(pgplex.port, conn, "kept", "x")
        notify(pgplex.port, ("dropped", "y"), ("kept", "z"))
        received = wait_notifies(conn, len(conn.received) + 1)
        assert ("kept", "z") in received
        assert not [n for n in received if n[0] == "dropped"], received


def test_listen_through_the_extended_protocol_is_answered_by_pgplex(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with listening_client(pgplex.port) as conn:
        # binary=True makes psycopg send Parse/Bind/Describe/Execute/Sync.
        conn.execute("LISTEN ext", binary=True)
        notify_until_received(pgplex.port, conn, "ext", "1")
        conn.execute("UNLISTEN ext", binary=True)
        assert conn.execute("SELECT 1", binary=True).fetchone() == (1,)


def test_a_prepared_listen_and_a_mixed_query_get_a_clear_error(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with connect(pgplex.port, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="unprepared"):
            conn.execute("LISTEN p", prepare=True)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="other statements"):
            conn.execute("SELECT 1; LISTEN q")
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_client_that_falls_behind_loses_notifications_beyond_a_thousand(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as conn:
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("LISTEN flood")
        with conn.transaction():
            conn.execute("SELECT 1")
            with connect(pgplex.port, autocommit=True) as sender:
                sender.execute("SELECT pg_notify('flood', i::text) FROM generate_series(1, 1100) i")
            time.sleep(0.5)
        assert len(wait_notifies(conn, 1000)) == 1000
        assert conn.received[0] == ("flood", "1") and conn.received[-1] == ("flood", "1000")
        assert notices and "dropped 100 notifications" in notices[0], notices
        assert pgplex.wait_log(r"client=\d+\.\d+ addr=127\.0\.0\.1:\d+ user=\S+ db=\S+: "
                               r"1000 notifications")


def test_the_listener_comes_back_after_pg_terminate_backend(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as conn:
        conn.execute("LISTEN survive")
        notify(pgplex.port, ("survive", "before"))
        assert wait_notifies(conn) == [("survive", "before")]
        pid = listener_pid(pgplex)
        assert cluster.admin_psql(f"SELECT pg_terminate_backend({pid})") == "t"
        assert listener_pid(pgplex, 2) != pid
        assert pgplex.wait_log(r"logged in \(backend pid \d+, worker \d\); LISTEN on 1 channels")
        notify(pgplex.port, ("survive", "after"))
        assert wait_notifies(conn, 2) == [("survive", "before"), ("survive", "after")]
        assert "opening it again in 500 ms" in pgplex.log()


def test_session_pooling_still_listens_on_the_clients_own_server(make_pgplex):
    pgplex = make_pgplex(pool_size=2)
    with listening_client(pgplex.port) as conn:
        conn.execute("LISTEN plain")
        assert conn.execute("SELECT pg_listening_channels()").fetchone() == ("plain",)
        notify(pgplex.port, ("plain", "p"))
        assert wait_notifies(conn) == [("plain", "p")]
    assert "listener of" not in pgplex.log()


def test_the_listener_unlistens_once_the_last_client_leaves(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with listening_client(pgplex.port) as first, listening_client(pgplex.port) as second:
        first.execute("LISTEN shared")
        second.execute("LISTEN shared")
        pid = listener_pid(pgplex)
        first.close()
        notify(pgplex.port, ("shared", "still"))
        assert wait_notifies(second) == [("shared", "still")]
        assert listener_query(cluster, pid) == 'LISTEN "shared"'
    deadline = time.monotonic() + WAIT_SECONDS
    while listener_query(cluster, pid) != 'UNLISTEN "shared"' and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener_query(cluster, pid) == 'UNLISTEN "shared"'


def listener_query(cluster, pid):
    return cluster.admin_psql(f"SELECT query FROM pg_stat_activity WHERE pid = {pid}")


def test_statement_pooling_listens_too(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings={"pool_mode": "statement"})
    with listening_client(pgplex.port) as conn:
        conn.execute('LISTEN "Quoted Channel"')
        notify(pgplex.port, ('"Quoted Channel"', "q"))
        assert wait_notifies(conn) == [("Quoted Channel", "q")]


def test_a_listen_the_server_refuses_is_an_error_and_the_client_carries_on(make_pgplex,
                                                                          cluster):
    replica = {"host": "127.0.0.1", "port": cluster.replica_port, "dbname": "payam_db",
               "user": "payam", "password": "payam-secret"}
    pgplex = make_pgplex(databases={"replica_db": replica}, settings=TRANSACTION)
    with listening_client(pgplex.port, dbname="replica_db") as conn:
        for _ in range(2):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="recovery"):
                conn.execute("LISTEN on_replica")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_a_listen_whose_listener_cannot_log_in_gets_the_servers_error(make_pgplex, cluster):
    # A role allowed one connection: the pool's server takes it, the listener is refused.
    cluster.admin_psql("CREATE ROLE listen_limited LOGIN PASSWORD 'limited' CONNECTION LIMIT 1")
    limited = {"host": "127.0.0.1", "port": cluster.port, "dbname": "payam_db",
               "user": "listen_limited", "password": "limited", "pool_size": 1}
    pgplex = make_pgplex(databases={"limited": limited}, settings=TRANSACTION)
    with listening_client(pgplex.port, dbname="limited") as conn:
        for _ in range(2):
            with pytest.raises(psycopg.errors.TooManyConnections):
                conn.execute("LISTEN never")
        assert conn.execute("SELECT current_user").fetchone() == ("listen_limited",)
    assert pgplex.wait_log(r"listener of payam_db/listen_limited@\S+: login failed")
