"""Malformed and unusual protocol traffic, sent by hand over raw sockets.

Whatever one client sends, pgplex answers it with a real ErrorResponse (08P01,
protocol_violation) and closes it, and every other client carries on.
"""

import socket
import struct
import threading
import time

import psycopg
import pytest

from conftest import (CANCEL_REQUEST_CODE, PROTOCOL_3_0, RawClient, ServerError, connect,
                      message, parse_error_fields, psql, startup_packet)


def error_then_close(client):
    """The fields of the ErrorResponse the peer sends before closing; fails otherwise."""
    messages = client.read_until_closed()
    errors = [parse_error_fields(body) for kind, body in messages if kind == b"E"]
    assert errors, f"no ErrorResponse before close: {messages}"
    return errors[0]


@pytest.mark.smoke
def test_garbage_startup_packet_gets_08P01_and_close(pgplex):
    with RawClient(pgplex.port) as client:
        client.send(b"\x00\x00\x00\x08\xde\xad\xbe\xef")
        fields = error_then_close(client)
        assert fields["C"] == "08P01", fields
        assert fields["S"] in ("FATAL", "ERROR"), fields
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_startup_packet_claiming_1_gb_gets_08P01_and_close_without_waiting(pgplex):
    with RawClient(pgplex.port) as client:
        started = time.monotonic()
        client.send(struct.pack("!II", 1 << 30, PROTOCOL_3_0) + b"user\0payam\0")
        fields = error_then_close(client)
        assert fields["C"] == "08P01", fields
        assert time.monotonic() - started < 5
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_startup_packet_shorter_than_its_header_gets_08P01_and_close(pgplex):
    with RawClient(pgplex.port) as client:
        client.send(struct.pack("!I", 4))
        fields = error_then_close(client)
        assert fields["C"] == "08P01", fields


def test_startup_packet_without_user_is_refused(pgplex):
    with RawClient(pgplex.port) as client:
        client.send(startup_packet({"database": "payam_db"}))
        fields = error_then_close(client)
        assert fields["C"] in ("08P01", "28000"), fields


def test_protocol_2_startup_gets_an_error_response_and_close(pgplex):
    # The 2.0 StartupPacket: fixed 296 bytes, NUL-padded database, user, options, unused, tty.
    body = struct.pack("!I", 2 << 16)
    body += b"payam_db".ljust(64, b"\0") + b"payam".ljust(32, b"\0")
    body += b"\0" * 64 + b"\0" * 64 + b"\0" * 64
    with RawClient(pgplex.port) as client:
        client.send(struct.pack("!I", len(body) + 4) + body)
        first = client.recv_exactly(1)
        assert first == b"E", first
        client.buffer = b""
        assert client.is_closed(), "connection left open after refusing protocol 2.0"
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_half_a_query_then_close_does_not_disturb_other_clients(make_pgplex):
    # One server connection, so the next client gets whatever pgplex made of the one the
    # vanished client had: it must answer correctly (reset, or replaced by a new one).
    pgplex = make_pgplex(pool_size=1)
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        sql = b"SELECT 'this query never ends properly'\0"
        client.send(b"Q" + struct.pack("!I", len(sql) + 4) + sql[:10])
        time.sleep(0.3)
    assert psql(pgplex.port, "SELECT 'next client'") == "next client"
    with connect(pgplex.port) as conn:
        assert conn.execute("SELECT %s::int * 2", (21,)).fetchone() == (42,)


def test_half_a_query_held_open_does_not_block_other_clients(pgplex):
    with RawClient(pgplex.port) as stalled:
        stalled.login("payam", "payam_db")
        sql = b"SELECT 'finished later'\0"
        stalled.send(b"Q" + struct.pack("!I", len(sql) + 4) + sql[:7])
        for i in range(5):
            assert psql(pgplex.port, f"SELECT {i}") == str(i)
        stalled.send(sql[7:])
        # The rest of the message arrives later and the query runs as one.
        kinds = []
        while not kinds or kinds[-1] != b"Z":
            kind, body = stalled.read_message()
            assert kind is not None, "closed instead of answering the completed query"
            kinds.append(kind)
        assert b"D" in kinds and b"E" not in kinds, kinds


def test_message_split_byte_by_byte_is_reassembled(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        sql = b"SELECT 'split' || 1\0"
        data = b"Q" + struct.pack("!I", len(sql) + 4) + sql
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in data:
            client.send(bytes([byte]))
            time.sleep(0.005)
        assert client.results() == [["split1"]]
        assert client.query("SELECT 2") == [["2"]]


def test_invalid_message_type_after_login_gets_08P01_and_close(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        client.send(b"\x01" + struct.pack("!I", 4))
        fields = error_then_close(client)
        assert fields["C"] == "08P01", fields
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_pipelined_queries_in_one_packet_all_get_answers(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        batch = b"".join(message(b"Q", f"SELECT {i}".encode() + b"\0") for i in range(50))
        client.send(batch)
        values = []
        while len(values) < 50:
            kind, body = client.read_message()
            assert kind is not None
            if kind == b"D":
                values.append(int(body[6:].decode()))
            assert kind != b"E", parse_error_fields(body)
        assert values == list(range(50))


def test_terminate_message_closes_the_session_cleanly(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        client.send(message(b"X"))
        assert client.is_closed()
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_psycopg_cancel_stops_pg_sleep_with_57014(pgplex):
    with connect(pgplex.port, autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as raised:
            conn.execute("SELECT pg_sleep(30)")
        timer.join()
        assert raised.value.sqlstate == "57014"
        assert time.monotonic() - started < 5
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_raw_cancel_request_stops_pg_sleep_with_57014(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        assert client.backend_key is not None, "no BackendKeyData at login"
        pid, key = client.backend_key
        client.send(message(b"Q", b"SELECT pg_sleep(30)\0"))
        time.sleep(0.5)
        started = time.monotonic()
        with RawClient(pgplex.port) as canceller:
            canceller.send(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key))
            assert canceller.is_closed()
        with pytest.raises(ServerError) as raised:
            client.results()
        assert raised.value.sqlstate == "57014"
        assert time.monotonic() - started < 5
        assert client.query("SELECT 'still here'") == [["still here"]]


def test_cancel_request_with_wrong_key_cancels_nothing(pgplex):
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        pid, key = client.backend_key
        client.send(message(b"Q", b"SELECT 'finished' FROM pg_sleep(1.5)\0"))
        time.sleep(0.3)
        with RawClient(pgplex.port) as canceller:
            canceller.send(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key ^ 0x5a5a5a5a))
            assert canceller.is_closed()
        assert client.results() == [["finished"]]


def test_cancel_of_one_session_leaves_others_running(pgplex):
    with connect(pgplex.port, autocommit=True) as victim, \
            connect(pgplex.port, autocommit=True) as bystander:
        result = {}

        def bystander_sleeps():
            result["row"] = bystander.execute("SELECT 'done' FROM pg_sleep(1.5)").fetchone()

        thread = threading.Thread(target=bystander_sleeps)
        thread.start()
        timer = threading.Timer(0.5, victim.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT pg_sleep(30)")
        thread.join(10)
        timer.join()
        assert result.get("row") == ("done",)
