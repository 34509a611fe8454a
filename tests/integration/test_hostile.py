"""Hostile input, as PgBouncer's and Odyssey's CVE history tried it: out-of-order and
malformed login messages, absurd lengths, floods of bad connections, slow logins. Each
must end with a clear error or a close, never a crash, a hang or a wrong login, and the
daemon must go on serving everyone else."""

import socket
import struct
import threading
import time

import psycopg
import pytest

from conftest import PASSWORDS, PROTOCOL_3_0, RawClient, connect, message
from test_admin_clusters import show


def startup(user="payam", database="payam_db", **params):
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in {"user": user, "database": database, **params}.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def still_serving(port):
    with connect(port, autocommit=True) as conn:
        return conn.execute("SELECT 'alive'").fetchone() == ("alive",)


def read_error(client):
    """The ErrorResponse the client gets before the close (or None if closed silently)."""
    for _ in range(20):
        kind, body = client.read_message()
        if kind is None:
            return None
        if kind == b"E":
            return body
    raise AssertionError("no error and no close")


def test_password_message_before_startup_is_refused(pgplex):
    """CVE-2015-4054: a PasswordMessage where the StartupMessage belongs."""
    with RawClient(pgplex.port) as client:
        client.send(message(b"p", b"secret\0"))
        error = read_error(client)
        assert error is None or b"08P01" in error, error
        assert client.is_closed()
    assert still_serving(pgplex.port)


def test_a_second_startup_message_during_scram_does_not_log_in(pgplex):
    """CVE-2026-107350: a StartupMessage sent in the middle of a SCRAM exchange (to switch
    users) is a malformed password message, never a new login."""
    with RawClient(pgplex.port) as client:
        client.send(startup("payam"))
        kind, body = client.read_message()
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 10  # SASL
        client.send(startup("analyst", "payam_dw"))
        error = read_error(client)
        assert error is not None and (b"08P01" in error or b"28P01" in error), error
        assert client.is_closed()
    assert still_serving(pgplex.port)


def test_options_with_an_empty_dash_c_is_refused_at_once(pgplex):
    """CVE-2026-107349: options "-c=" (and friends) made a pooler spin forever."""
    for options in ("-c=", "-c", "-c =x", "--=", "-c a", "-c\\", "-c " + "x" * 5000):
        started = time.monotonic()
        with RawClient(pgplex.port) as client:
            client.send(startup(options=options))
            kinds = []
            while True:
                kind, body = client.read_message()
                if kind is None or kind in (b"E", b"R"):
                    kinds.append(kind)
                    break
            assert time.monotonic() - started < 5, options
    assert still_serving(pgplex.port)


@pytest.mark.parametrize("length", [0x7fffffff, 0x80000000, 0xffffffff, 0x7ffffffc])
def test_message_lengths_near_2_to_the_31_are_refused_before_any_buffering(pgplex, length):
    """CVE-2026-6664 / -107348: declared lengths that overflow a buffer's growth."""
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db", PASSWORDS["payam"])
        client.send(b"Q" + struct.pack("!I", length) + b"SELECT 1")
        error = read_error(client)
        assert error is not None and b"08P01" in error, error
        assert client.is_closed()
    with RawClient(pgplex.port) as client:  # the same in a startup packet
        client.send(struct.pack("!I", length) + struct.pack("!I", PROTOCOL_3_0))
        error = read_error(client)
        assert error is None or b"08P01" in error, error
        assert client.is_closed()
    assert still_serving(pgplex.port)


def test_ten_thousand_bad_startup_packets_in_a_row_leave_the_daemon_serving(pgplex):
    """Garbage, truncated packets and immediate closes, from several threads at once."""
    bad = [b"\x00\x00\x00\x08\x00\x00\x00\x00", b"GET / HTTP/1.1\r\n\r\n",
           b"\x00\x00\x00\x04", b"\x00\x00\x01\x00" + b"\xff" * 20, b"\x16\x03\x01\x00\x05hello",
           struct.pack("!II", 16, 80877102) + b"\x00" * 8, b""]
    errors = []

    def hammer(offset):
        try:
            for i in range(2500):
                with socket.create_connection(("127.0.0.1", pgplex.port), timeout=10) as sock:
                    payload = bad[(i + offset) % len(bad)]
                    if payload:
                        sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    sock.settimeout(10)
                    while sock.recv(4096):
                        pass
        except OSError as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    # Normal clients keep working meanwhile.
    served = 0
    while any(thread.is_alive() for thread in threads) and time.monotonic() - started < 120:
        assert still_serving(pgplex.port)
        served += 1
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    assert served > 0
    assert still_serving(pgplex.port)


def test_a_slow_loris_login_is_cut_at_client_login_timeout_while_others_run(make_pgplex):
    pgplex = make_pgplex(settings={"client_login_timeout": "1s"})
    loris = [RawClient(pgplex.port) for _ in range(20)]
    try:
        for client in loris:
            client.send(startup()[:7])  # never finishes its startup packet
        with connect(pgplex.port, autocommit=True) as conn:
            for _ in range(20):
                assert conn.execute("SELECT 1").fetchone() == (1,)
        for client in loris:  # 08P01 "client_login_timeout", then the close
            messages = client.read_until_closed()
            assert [kind for kind, _ in messages] == [b"E"], messages
            assert b"client_login_timeout" in messages[0][1]
    finally:
        for client in loris:
            client.close()
    assert still_serving(pgplex.port)


def test_the_management_database_refuses_users_not_in_admin_users(make_pgplex):
    """CVE-2026-6667: every management command checks admin_users."""
    pgplex = make_pgplex(settings={"admin_users": ["payam"]})
    with pytest.raises(psycopg.OperationalError, match="admin|not allowed|permission"):
        psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="pgplex", user="analyst",
                        password=PASSWORDS["analyst"], connect_timeout=10)
    with psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="pgplex", user="payam",
                         password=PASSWORDS["payam"], connect_timeout=10,
                         autocommit=True) as admin:
        assert admin.execute("SHOW VERSION").fetchone()


def test_a_wrong_password_is_answered_after_auth_failure_delay(make_pgplex):
    """A password guesser gets one guess per connection per auth_failure_delay; everyone
    else logs in at full speed meanwhile."""
    pgplex = make_pgplex(settings={"auth_failure_delay": "1s"})
    guesses = []

    def guess():
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_db",
                            user="payam", password="guess", connect_timeout=10)
        guesses.append(time.monotonic() - started)

    threads = [threading.Thread(target=guess) for _ in range(5)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    for _ in range(5):
        assert still_serving(pgplex.port)
    honest = time.monotonic() - started
    for thread in threads:
        thread.join(20)
    assert len(guesses) == 5 and min(guesses) >= 0.95, guesses
    assert honest < 3, honest
    instant = make_pgplex(settings={"auth_failure_delay": "0"})
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=instant.port, dbname="payam_db", user="payam",
                        password="guess", connect_timeout=10)
    assert time.monotonic() - started < 0.9


def test_an_address_over_auth_failure_limit_is_refused_until_the_minute_is_over(make_pgplex):
    """auth_failure_limit: after that many failed logins from one address within a minute of
    its first, its logins are refused before any password is asked for, even the right one."""
    pgplex = make_pgplex(settings={"auth_failure_delay": "0", "auth_failure_limit": 3,
                                   "admin_users": ["analyst"]})
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_db",
                            user="payam", password="guess", connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="too many failed logins"):
        connect(pgplex.port)
    assert "over auth_failure_limit" in pgplex.log()
    # SHOW WORKERS counts them (the admin logs in from the same address: its count is over
    # the limit too, so the counters are read once the limit is lifted by a reload).
    pgplex.settings["auth_failure_limit"] = 0
    pgplex.reload()
    rows = show(pgplex.port, "SHOW WORKERS", user="analyst")
    total = {name: sum(int(row[name]) for row in rows)
             for name in ("auth_failures", "logins_refused", "tls_failures")}
    assert total == {"auth_failures": 3, "logins_refused": 1, "tls_failures": 0}, total
    unlimited = make_pgplex(settings={"auth_failure_delay": "0", "auth_failure_limit": 0})
    for _ in range(5):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=unlimited.port, dbname="payam_db",
                            user="payam", password="guess", connect_timeout=10)
    assert still_serving(unlimited.port)


def test_client_login_limit_bounds_logins_in_progress_per_address(make_pgplex):
    """client_login_limit: an address with that many logins unfinished gets 53300 for the
    next one, while other addresses log in as usual; a finished login frees its place."""
    pgplex = make_pgplex(settings={"client_login_limit": 3, "admin_users": ["payam"]})
    # From an address of its own: the harness's readiness probe (127.0.0.1, connected and
    # closed) is a login in progress until pgplex has read its close.
    address = "127.0.0.3"
    stalled = [RawClient(pgplex.port, source=address) for _ in range(3)]
    try:
        for client in stalled:  # each waits in the SASL exchange
            client.startup("payam", "payam_db")
            kind, _ = client.read_message()
            assert kind == b"R"
        with RawClient(pgplex.port, source=address) as refused:
            error = read_error(refused)
            assert error is not None and b"53300" in error, error
            assert b"too many logins in progress from this address" in error
            assert refused.is_closed()
        with RawClient(pgplex.port, source="127.0.0.2") as other:
            other.login("payam", "payam_db")
        stalled.pop().close()
        time.sleep(0.3)
        with RawClient(pgplex.port, source=address) as again:
            again.login("payam", "payam_db")
        # A logged-in client holds no place: many of them, one after another.
        for _ in range(5):
            assert still_serving(pgplex.port)
    finally:
        for client in stalled:
            client.close()
    assert pgplex.wait_log(r"refused: too many logins in progress from this address")


def test_client_connect_rate_limit_bounds_new_connections_per_address(make_pgplex):
    """client_connect_rate_limit: past N new connections in a second from one address the
    rest of that second's get 53300; another address and the next second are unaffected."""
    pgplex = make_pgplex(settings={"client_connect_rate_limit": 5, "admin_users": ["payam"]})
    time.sleep(1.0 - time.monotonic() % 1.0 + 0.05)  # early in a second, roughly
    clients = [RawClient(pgplex.port, timeout=0.5) for _ in range(12)]  # within a second or two
    outcomes = []  # refused? Admitted ones hear nothing until they send a startup packet.
    for client in clients:
        try:
            kind, body = client.read_message()
            outcomes.append(kind == b"E" and b"53300" in body)
        except socket.timeout:
            outcomes.append(False)
        client.close()
    assert sum(outcomes) >= 2, outcomes  # 12 within 2 s: at least 12 - 2 * 5 refused
    assert not all(outcomes), outcomes
    with RawClient(pgplex.port, source="127.0.0.3") as other:
        other.login("payam", "payam_db")
    time.sleep(1.1)
    with RawClient(pgplex.port) as later:
        later.login("payam", "payam_db")
    rows = show(pgplex.port, "SHOW WORKERS", user="payam")
    assert sum(int(row["logins_refused"]) for row in rows) >= 2


def test_a_client_that_floods_without_reading_is_closed_and_frees_its_server(make_pgplex):
    """A client pipelines queries with large results and reads none of them: pgplex stops
    reading from it and from its server (bounded queues), and after client_stall_timeout
    closes it, so the one server of the pool goes to the client waiting for it."""
    pgplex = make_pgplex(pool_size=1, settings={
        "pool_mode": "transaction", "client_stall_timeout": "2s", "admin_users": ["payam"]})
    flooder = RawClient(pgplex.port)
    flooder.login("payam", "payam_db")
    flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    query = message(b"Q", b"SELECT repeat('x', 1000000)\0")
    sent = 0
    flooder.sock.settimeout(0.5)
    try:
        while sent < 2000:  # until pgplex stops reading (bounded: ~1 MB of results each)
            flooder.sock.sendall(query)
            sent += 1
    except (socket.timeout, OSError):
        pass
    started = time.monotonic()
    with connect(pgplex.port, autocommit=True, connect_timeout=20) as conn:
        assert conn.execute("SELECT 'served'").fetchone() == ("served",)
    waited = time.monotonic() - started
    assert waited < 10, f"the waiting client was served after {waited:.1f} s"
    assert pgplex.wait_log(r"read none of the \d+ bytes queued for it in \d+ ms; closing it")
    flooder.close()
    rows = show(pgplex.port, "SHOW WORKERS", user="payam")
    assert sum(int(row["clients_stalled"]) for row in rows) == 1
    assert still_serving(pgplex.port)
