"""Messages far larger than pgplex's buffers, in transaction pooling, where the server that
carried one is given back as soon as its transaction ends.

A reply bigger than the client's send queue bound (limits::queued_buffers_max buffers) pauses
the server's receives until the client has read most of it. When the reply's last bytes and
its ReadyForQuery arrive in the same burst, the server is given back while still paused: it
must read again once it is lent, or its next client waits forever (node-postgres reading a
64 MB bytea back, or any client lent that server later, as after a cancelled pg_sleep).

Each test's traffic runs under DEADLINE_SECONDS.
"""

import contextlib
import hashlib
import os
import signal
import struct
import time

import psycopg
import pytest

from conftest import RawClient, ServerError, connect, message, parse_error_fields
from test_limits import Background

TRANSACTION = {"pool_mode": "transaction"}
DEADLINE_SECONDS = 30
BIG = 64 * 1024 * 1024


@contextlib.contextmanager
def deadline(seconds=DEADLINE_SECONDS):
    """Fails the block if it runs longer than seconds (SIGALRM interrupts a client blocked
    on pgplex), so a stall costs half a minute, not the client's own timeout."""
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds}s: pgplex stalled")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def table(cluster):
    """A bytea table made and dropped directly on the server (a temporary table would pin
    the client to its server)."""
    name = f"large_bytea_{os.getpid()}"
    with connect(cluster.port, autocommit=True) as direct:
        direct.execute(f"DROP TABLE IF EXISTS {name}")
        direct.execute(f"CREATE TABLE {name} (id int, b bytea)")
    yield name
    with connect(cluster.port, autocommit=True) as direct:
        direct.execute(f"DROP TABLE IF EXISTS {name}")


def pooled(port):
    """Autocommit and no named statements: every statement is a transaction of its own, and
    the server goes back to the pool after each."""
    return connect(port, autocommit=True, prepare_threshold=None)


def payload(size=BIG):
    return hashlib.sha256(b"pgplex").digest() * (size // 32)


def round_trip(conn, table, row, data):
    conn.execute(f"INSERT INTO {table} VALUES (%s, %b)", (row, data))
    back = conn.execute(f"SELECT b FROM {table} WHERE id = %s", (row,)).fetchone()[0]
    assert len(back) == len(data) and bytes(back) == data, f"row {row} came back different"


class NodeLike(RawClient):
    """What node-postgres does on the wire for client.query(text, [buffer]): Parse, Bind
    (a Buffer goes as a binary parameter), Describe, Execute and Sync of the unnamed
    statement, results in text. It reads a big reply more slowly than libpq: `pace` seconds
    a read of READ_BYTES."""

    READ_BYTES = 256 * 1024

    def __init__(self, port, pace):
        super().__init__(port, timeout=DEADLINE_SECONDS)
        self.buffer = bytearray()
        self.pace = pace

    def recv_exactly(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(self.READ_BYTES)
            if not chunk:
                break
            self.buffer += chunk
            if self.pace and len(chunk) == self.READ_BYTES:
                time.sleep(self.pace)
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def execute(self, sql, params=()):
        """The first column of every row, as bytes (None for NULL)."""
        values = b"".join(struct.pack("!i", len(p)) + p for p in params)
        bind = (b"\0\0" + struct.pack("!HH", 1, 1) + struct.pack("!H", len(params)) + values +
                struct.pack("!H", 0))
        self.send(message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0)) +
                  message(b"B", bind) + message(b"D", b"P\0") +
                  message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"S"))
        rows, error = [], None
        while True:
            kind, body = self.read_message()
            if kind is None:
                raise ConnectionError("closed during query")
            if kind == b"D":
                length = struct.unpack("!i", body[2:6])[0]
                rows.append(None if length < 0 else body[6:6 + length])
            elif kind == b"E":
                error = ServerError(parse_error_fields(body))
            elif kind == b"Z":
                if error:
                    raise error
                return rows


def test_64_mb_bytea_round_trips_as_node_postgres_sends_it(make_pgplex, table):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    data = payload()
    with deadline(), NodeLike(pgplex.port, pace=0.002) as client:
        client.login("payam", "payam_db")
        for row in range(2):
            client.execute(f"INSERT INTO {table} VALUES ({row}, $1)", [data])
            rows = client.execute(f"SELECT b FROM {table} WHERE id = {row}")
            assert len(rows) == 1 and rows[0][:2] == b"\\x"
            assert bytes.fromhex(rows[0][2:].decode()) == data, f"row {row} came back different"
            time.sleep(0.2)  # node-postgres decodes the value before its next query
        assert client.execute("SELECT 1") == [b"1"]


@pytest.mark.parametrize("buffer_size", [4096, 16384])
def test_a_server_given_back_with_its_reply_queued_reads_for_the_next_client(make_pgplex,
                                                                           buffer_size):
    # Two clients take turns on one server: each big reply may leave it given back paused
    # (more often with small buffers, whose send queue bound is reached sooner).
    pgplex = make_pgplex(pool_size=1, settings={**TRANSACTION, "buffer_size": buffer_size})
    size = 4 * 1024 * 1024
    with deadline(), pooled(pgplex.port) as a, pooled(pgplex.port) as b:
        for turn in range(10):
            big = a if turn % 2 == 0 else b
            other = b if big is a else a
            text = big.execute("SELECT repeat('x', %s)", (size,)).fetchone()[0]
            assert len(text) == size
            time.sleep(0.05)  # the last of the reply is sent before the next query comes
            assert other.execute("SELECT %s::int", (turn,)).fetchone() == (turn,)


def test_64_mb_bytea_after_a_cancelled_sleep_on_a_used_pool(make_pgplex, table):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    data = payload()
    with deadline():
        with pooled(pgplex.port) as earlier:  # load that leaves big replies behind
            for _ in range(3):
                text = earlier.execute("SELECT repeat('y', 4194304)").fetchone()[0]
                assert len(text) == 4194304
        with pooled(pgplex.port) as conn:
            canceller = Background(lambda: (time.sleep(0.5), conn.cancel()))
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
            assert canceller.join(5) and canceller.error is None
            round_trip(conn, table, 0, data)


SMALL_RING = {"buffer_count": 64, "buffer_size": 4096}  # a 256 kB ring: 4 MB is 16 rings


def big_round_trip(conn, size=4 * 1024 * 1024):
    """A Query of `size` bytes and a reply as big."""
    text = "q" * size
    assert conn.execute("SELECT length(%s::text), %s::text", (text, text)).fetchone() == \
        (size, text)


@pytest.mark.parametrize("mode", ["transaction", "session"])
@pytest.mark.parametrize("state", ["holds", "waits", "pinned", "cancelled", "after_error"])
def test_a_message_larger_than_the_ring_streams_in_every_state(make_pgplex, mode, state):
    """A Query and a reply each sixteen times pgplex's whole buffer ring, whether the client
    holds a server, waits for one, is pinned to its own, was just cancelled, or follows an
    error; another client's small queries go on meanwhile."""
    if state == "waits" and mode == "session":
        pytest.skip("in session pooling a client waits for a server only at login")
    pgplex = make_pgplex(pool_size=2, settings={"pool_mode": mode, **SMALL_RING})
    with deadline(), pooled(pgplex.port) as conn:
        holder = None
        if state == "holds":
            conn.execute("BEGIN")
        elif state == "waits":  # both servers in open transactions for 0.5 s
            holder, blocker = pooled(pgplex.port), pooled(pgplex.port)
            for held in (holder, blocker):
                held.execute("BEGIN")
                held.execute("SELECT 1")
            releaser = Background(lambda: [(time.sleep(0.5), held.execute("COMMIT"), held.close())
                                           for held in (holder, blocker)])
        elif state == "pinned":
            conn.execute("CREATE TEMP TABLE pinned_here (x int)")
        elif state == "cancelled":
            canceller = Background(lambda: (time.sleep(0.3), conn.cancel()))
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
            assert canceller.join(5)
        elif state == "after_error":
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
        others = Background(lambda: [query_small(pgplex.port) for _ in range(3)])
        big_round_trip(conn)
        if state == "holds":
            conn.execute("COMMIT")
        if holder is not None:
            assert releaser.join(5) and releaser.error is None, releaser.error
        assert others.join(DEADLINE_SECONDS) and others.error is None, others.error
        big_round_trip(conn)  # and once more, the client back to its usual state


def query_small(port):
    with pooled(port) as conn:
        assert conn.execute("SELECT 42").fetchone() == (42,)
