"""psycopg 3 through pgplex: extended protocol, transactions, cursors, COPY, big results."""

import datetime
import decimal
import hashlib

import psycopg
import pytest

from conftest import connect

COPY_ROWS = 100_000


@pytest.mark.smoke
def test_parameters_round_trip_over_extended_protocol(pgplex):
    with connect(pgplex.port) as conn:
        row = conn.execute("SELECT %s::int + %s, %s::text || '!', %s::numeric, %s::date",
                           (40, 2, "hi", decimal.Decimal("1.25"),
                            datetime.date(2024, 2, 29))).fetchone()
        assert row == (42, "hi!", decimal.Decimal("1.25"), datetime.date(2024, 2, 29))
        assert conn.execute("SELECT %s::text IS NULL", (None,)).fetchone() == (True,)


def test_prepared_statement_is_reused_on_the_server(pgplex):
    with connect(pgplex.port) as conn:
        for i in range(5):
            row = conn.execute("SELECT item FROM orders WHERE id = %s", (i + 1,),
                               prepare=True).fetchone()
            assert row == (f"item {i + 1}",)
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements "
            "WHERE statement = 'SELECT item FROM orders WHERE id = $1'").fetchone()[0]
        assert prepared == 1


def test_executemany_inserts_every_row(pgplex):
    with connect(pgplex.port) as conn:
        conn.execute("CREATE TEMP TABLE many (id int, label text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO many VALUES (%s, %s)",
                            [(i, f"label {i}") for i in range(1000)])
        assert conn.execute("SELECT count(*), sum(id) FROM many").fetchone() == (1000, 499500)


def test_binary_parameters_and_results_are_exact(pgplex):
    payload = bytes(range(256)) * 400
    with connect(pgplex.port) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT %b::bytea, %b::int8, %b::float8, %b::timestamptz",
                        (payload, -(2 ** 62), 0.1,
                         datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)))
            data, big, real, when = cur.fetchone()
        assert bytes(data) == payload
        assert big == -(2 ** 62)
        assert real == 0.1
        assert when == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def test_rolled_back_transaction_leaves_no_trace(pgplex):
    with connect(pgplex.port) as conn:
        conn.execute("CREATE TEMP TABLE ledger (amount int)")
        conn.commit()
        with pytest.raises(ZeroDivisionError):
            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES (100)")
                raise ZeroDivisionError
        with conn.transaction():
            conn.execute("INSERT INTO ledger VALUES (7)")
        assert conn.execute("SELECT coalesce(sum(amount), 0) FROM ledger").fetchone() == (7,)


def test_error_in_transaction_then_rollback_leaves_session_usable(pgplex):
    with connect(pgplex.port) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_side_cursor_streams_rows_in_batches(pgplex):
    with connect(pgplex.port) as conn:
        with conn.cursor(name="walk") as cur:
            cur.itersize = 1000
            cur.execute("SELECT i FROM generate_series(1, 100000) i")
            count = total = 0
            for (value,) in cur:
                count += 1
                total += value
        assert (count, total) == (100_000, 100_000 * 100_001 // 2)


def copy_text(rows):
    return "".join(f"{i}\tline {i} {'x' * (i % 37)}\n" for i in range(rows)).encode()


def test_copy_from_stdin_loads_100k_rows(pgplex):
    data = copy_text(COPY_ROWS)
    with connect(pgplex.port) as conn:
        conn.execute("CREATE TEMP TABLE loaded (id int, line text)")
        with conn.cursor() as cur:
            with cur.copy("COPY loaded FROM STDIN") as copy:
                for offset in range(0, len(data), 65536):
                    copy.write(data[offset:offset + 65536])
        count, digest = conn.execute(
            "SELECT count(*), md5(string_agg(id || E'\\t' || line || E'\\n', '' ORDER BY id)) "
            "FROM loaded").fetchone()
        assert count == COPY_ROWS
        assert digest == hashlib.md5(data).hexdigest()


def test_copy_to_stdout_returns_100k_rows_byte_for_byte(pgplex):
    expected = copy_text(COPY_ROWS)
    with connect(pgplex.port) as conn:
        with conn.cursor() as cur:
            received = bytearray()
            with cur.copy("COPY (SELECT i, 'line ' || i || ' ' || repeat('x', mod(i, 37)) "
                          "FROM generate_series(0, %s) i ORDER BY i) TO STDOUT",
                          (COPY_ROWS - 1,)) as copy:
                for chunk in copy:
                    received += chunk
        assert len(received) == len(expected)
        assert bytes(received) == expected
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_copy_from_stdin_with_bad_row_fails_and_session_continues(pgplex):
    with connect(pgplex.port) as conn:
        conn.execute("CREATE TEMP TABLE strict_rows (id int)")
        conn.commit()
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.cursor().copy("COPY strict_rows FROM STDIN") as copy:
                copy.write(b"1\n2\nnot-a-number\n")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM strict_rows").fetchone() == (0,)


def test_50_mb_result_arrives_whole(pgplex):
    rows = 50
    with connect(pgplex.port) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT i, repeat(chr(65 + mod(i, 26)), 1048576) "
                        "FROM generate_series(1, %s) i ORDER BY i", (rows,))
            seen = 0
            for i, text in cur:
                seen += 1
                assert len(text) == 1048576, i
                assert text == chr(65 + i % 26) * 1048576, i
        assert seen == rows
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_single_32_mb_value_round_trips(pgplex):
    # One DataRow far bigger than any proxy buffer, and one Bind just as big.
    size = 32 * 1024 * 1024
    payload = hashlib.sha256(b"seed").digest() * (size // 32)
    with connect(pgplex.port) as conn:
        digest = conn.execute("SELECT md5(%b::bytea)", (payload,)).fetchone()[0]
        assert digest == hashlib.md5(payload).hexdigest()
        text = conn.execute("SELECT repeat('0123456789abcdef', %s)", (size // 16,)).fetchone()[0]
        assert len(text) == size and text == "0123456789abcdef" * (size // 16)
