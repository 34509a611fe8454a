"""Named prepared statements in transaction pooling: any number of clients, each with its own
statement names, share a few server connections. pgplex renames each statement for the
server, prepares it lazily where it runs, keeps at most max_prepared_statements per server,
and answers the client as if its own names existed."""

import struct
import subprocess
import threading

import psycopg
import pytest

from conftest import PASSWORDS, PG_BIN, RawClient, ServerError, assert_pgbench_clean, clean_env
from conftest import conninfo, connect, message
from conftest import parse_error_fields
from conftest import run_pgbench

TRANSACTION = {"pool_mode": "transaction"}


def prepared(port, **kwargs):
    """A psycopg connection that prepares every statement on the server at once."""
    return connect(port, autocommit=True, prepare_threshold=0, **kwargs)


def server_statements(conn):
    """Names the serving connection has prepared (that server's, for one transaction)."""
    return [row[0] for row in conn.execute(
        "SELECT name FROM pg_prepared_statements", prepare=False).fetchall()]


# --- raw extended protocol ---------------------------------------------------------------


def parse(name, sql, types=()):
    body = name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types))
    body += b"".join(struct.pack("!I", oid) for oid in types)
    return message(b"P", body)


def bind(statement, values=(), portal=""):
    body = portal.encode() + b"\0" + statement.encode() + b"\0" + struct.pack("!H", 0)
    body += struct.pack("!H", len(values))
    for value in values:
        body += struct.pack("!I", len(value)) + value.encode()
    return message(b"B", body + struct.pack("!H", 0))


def describe(kind, name):
    return message(b"D", kind + name.encode() + b"\0")


def close(kind, name):
    return message(b"C", kind + name.encode() + b"\0")


def execute(portal=""):
    return message(b"E", portal.encode() + b"\0" + struct.pack("!I", 0))


SYNC = message(b"S")


def exchange(client, data):
    """Sends, then reads up to ReadyForQuery: [(type, body)], error bodies parsed."""
    client.send(data)
    replies = []
    while True:
        kind, body = client.read_message()
        assert kind is not None, f"closed after {replies}"
        replies.append((kind, parse_error_fields(body) if kind == b"E" else body))
        if kind == b"Z":
            return replies


def kinds(replies):
    return b"".join(kind for kind, _ in replies)


def raw(port):
    client = RawClient(port)
    client.login("payam", "payam_db")
    return client


# --- tests -------------------------------------------------------------------------------


@pytest.mark.smoke
def test_statements_prepared_once_are_bound_on_any_server(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with raw(pgplex.port) as a, raw(pgplex.port) as b:
        assert kinds(exchange(a, parse("s1", "SELECT $1::int * 2") + SYNC)) == b"1Z"
        assert kinds(exchange(b, parse("s1", "SELECT $1::text || '!'") + SYNC)) == b"1Z"
        # Two transactions at once: each client's s1 is its own, whatever server it gets.
        a.send(message(b"Q", b"BEGIN\0"))
        b.send(message(b"Q", b"BEGIN\0"))
        a.results(), b.results()
        for _ in range(3):
            rows_a = exchange(a, bind("s1", ["21"]) + execute() + SYNC)
            rows_b = exchange(b, bind("s1", ["hi"]) + execute() + SYNC)
            assert kinds(rows_a) == b"2DCZ" and rows_a[1][1].endswith(b"42")
            assert kinds(rows_b) == b"2DCZ" and rows_b[1][1].endswith(b"hi!")
        assert a.query("COMMIT") == [] and b.query("COMMIT") == []
        for _ in range(4):  # now each transaction may land on either server
            assert exchange(a, bind("s1", ["5"]) + execute() + SYNC)[1][1].endswith(b"10")
            assert exchange(b, bind("s1", ["x"]) + execute() + SYNC)[1][1].endswith(b"x!")


def test_describe_close_and_errors_answer_as_postgresql_does(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with raw(pgplex.port) as client:
        replies = exchange(client, parse("q", "SELECT $1::int AS n") + describe(b"S", "q") + SYNC)
        assert kinds(replies) == b"1tTZ"
        assert b"n\0" in replies[2][1]
        # The same name again: 42P05, and the rest up to Sync is ignored, as PostgreSQL does.
        replies = exchange(client, parse("q", "SELECT 1") + bind("q", ["1"]) + execute() + SYNC)
        assert kinds(replies) == b"EZ"
        assert replies[0][1]["C"] == "42P05" and '"q"' in replies[0][1]["M"]
        # Still the first statement.
        replies = exchange(client, bind("q", ["7"]) + execute() + SYNC)
        assert kinds(replies) == b"2DCZ" and replies[1][1].endswith(b"7")
        assert kinds(exchange(client, close(b"S", "q") + SYNC)) == b"3Z"
        replies = exchange(client, bind("q", ["7"]) + execute() + SYNC)
        assert kinds(replies) == b"EZ" and replies[0][1]["C"] == "26000"
        # Closing what does not exist is not an error; the name is free again.
        assert kinds(exchange(client, close(b"S", "q") + SYNC)) == b"3Z"
        assert kinds(exchange(client, parse("q", "SELECT 2") + SYNC)) == b"1Z"


def test_a_failed_parse_leaves_no_name_behind(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with raw(pgplex.port) as client:
        replies = exchange(client, parse("bad", "SELEC 1") + SYNC)
        assert kinds(replies) == b"EZ" and replies[0][1]["C"] == "42601"
        # Skipped after an earlier error in the same pipeline: not created either.
        replies = exchange(client, parse("x", "SELECT 1/g FROM generate_series(0, 0) g") + bind("x") + execute()
                           + parse("later", "SELECT 3") + SYNC)
        assert kinds(replies) == b"12EZ" and replies[2][1]["C"] == "22012"
        replies = exchange(client, parse("bad", "SELECT 1") + parse("later", "SELECT 3")
                           + bind("later") + execute() + SYNC)
        assert kinds(replies) == b"112DCZ"


def test_two_hundred_psycopg_clients_with_their_own_statements_over_five_servers(
        make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=5, max_client_conn=300,
                         settings={**TRANSACTION, "max_prepared_statements": 20})
    since = cluster.server_now()
    clients = [prepared(pgplex.port) for _ in range(200)]
    errors = []

    def work(first):
        try:
            for index in range(first, 200, 4):
                conn = clients[index]
                for round_ in range(3):
                    # Its own statement text, and one every client shares.
                    value = conn.execute(f"SELECT %s::int + {index}", (round_,)).fetchone()[0]
                    assert value == round_ + index
                    assert conn.execute("SELECT %s::text", (str(index),)).fetchone()[0] == str(
                        index)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors[:3]
        assert cluster.backends("payam", since=since, dbname="payam_db") <= 5
        # 201 distinct statements over 5 servers: each keeps at most 20 (plus what the
        # transaction under way uses).
        for conn in clients[:10]:
            assert len(server_statements(conn)) <= 21
    finally:
        for conn in clients:
            conn.close()


def test_psycopg_deallocates_through_its_cache_rotation(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with prepared(pgplex.port) as conn:
        conn.prepared_max = 4  # psycopg sends DEALLOCATE for the fifth and later
        for round_ in range(3):
            for index in range(12):
                assert conn.execute(f"SELECT {index} + %s", (round_,)).fetchone()[0] == (
                    index + round_)


def test_pgbench_prepared_and_extended_with_many_clients_over_a_small_pool(
        make_pgplex, cluster):
    pgplex = make_pgplex(default_pool_size=5, max_client_conn=300, settings=TRANSACTION)
    since = cluster.server_now()
    for mode in ("prepared", "extended"):
        # Counted, not timed: 200 logins take a while under ASan on a busy machine.
        assert_pgbench_clean(run_pgbench(
            pgplex.port, ["-n", "-S", "-M", mode, "-t", "20", "-c", "200", "-j", "2"]))
        assert_pgbench_clean(run_pgbench(
            pgplex.port, ["-n", "-M", mode, "-t", "30", "-c", "32", "-j", "2"]))
    assert cluster.backends("app", since=since, dbname="appdb") <= 5


def test_eviction_keeps_each_server_within_max_prepared_statements(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings={**TRANSACTION, "max_prepared_statements": 3})
    with prepared(pgplex.port) as conn:
        for round_ in range(2):
            for index in range(10):
                assert conn.execute(f"SELECT {index} * %s", (round_,)).fetchone()[0] == (
                    index * round_)
        names = server_statements(conn)
        assert 1 <= len(names) <= 3, names
        assert all(name.startswith("_pgplex_") for name in names)


def test_discard_all_drops_the_clients_statements_as_postgresql_does(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with raw(pgplex.port) as client:
        assert kinds(exchange(client, parse("d", "SELECT 1") + SYNC)) == b"1Z"
        client.query("DISCARD ALL")
        replies = exchange(client, bind("d") + execute() + SYNC)
        assert kinds(replies) == b"EZ" and replies[0][1]["C"] == "26000"
        assert kinds(exchange(client, parse("d", "SELECT 1") + bind("d") + execute()
                              + SYNC)) == b"12DCZ"


def test_schema_change_under_a_prepared_workload_is_retried_transparently(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=3, settings=TRANSACTION)
    setup = connect(pgplex.port, autocommit=True, prepare_threshold=None)
    setup.execute("DROP TABLE IF EXISTS stale_plan")
    setup.execute("CREATE TABLE stale_plan (id int PRIMARY KEY, a int)")
    setup.execute("INSERT INTO stale_plan SELECT g, g FROM generate_series(1, 100) g")
    # Straight at PostgreSQL the same thing fails: the test can tell.
    direct = connect(cluster.port, autocommit=True, prepare_threshold=0)
    try:
        direct.execute("SELECT * FROM stale_plan WHERE id = %s", (1,)).fetchall()
        setup.execute("ALTER TABLE stale_plan ADD COLUMN before_test int")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan"):
            direct.execute("SELECT * FROM stale_plan WHERE id = %s", (1,)).fetchall()
    finally:
        direct.close()

    clients = [prepared(pgplex.port) for _ in range(8)]
    errors, widths = [], set()
    stop = threading.Event()

    def work(conn):
        try:
            for count in range(5000):
                if stop.is_set() and count > 0:
                    return
                row = conn.execute("SELECT * FROM stale_plan WHERE id = %s",
                                   (count % 100 + 1,)).fetchone()
                widths.add(len(row))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(conn,)) for conn in clients]
    for thread in threads:
        thread.start()
    try:
        for index in range(4):
            threading.Event().wait(0.3)
            setup.execute(f"ALTER TABLE stale_plan ADD COLUMN added_{index} int DEFAULT {index}")
        threading.Event().wait(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for conn in clients:
            conn.close()
        setup.close()
    assert not errors, errors[:3]
    assert max(widths) == 7  # id, a, before_test and four added columns: seen by the clients
    assert pgplex.wait_log(r"went stale .*retried once", timeout=1)


def test_sql_prepare_execute_and_deallocate_follow_the_client(make_pgplex):
    pgplex = make_pgplex(pool_size=2, settings=TRANSACTION)
    with raw(pgplex.port) as a, raw(pgplex.port) as b:
        # The same name, two statements, one or two servers: each client sees its own.
        a.query("PREPARE q (int) AS SELECT $1 * 10")
        b.query("PREPARE q AS SELECT 'b'")
        b.query('PREPARE "Mixed" AS SELECT 2')
        for round_ in range(4):
            assert a.query(f"EXECUTE q({round_})") == [[str(round_ * 10)]]
            assert b.query("EXECUTE q") == [["b"]]
            assert b.query('EXECUTE "Mixed"') == [["2"]]
        a.query("DEALLOCATE q")
        with pytest.raises(ServerError) as raised:
            a.query("EXECUTE q(1)")
        assert raised.value.sqlstate == "26000"
        assert b.query("EXECUTE q") == [["b"]]
        b.query("DEALLOCATE ALL")
        with pytest.raises(ServerError):
            b.query('EXECUTE "Mixed"')
        a.query("PREPARE q AS SELECT 'again'")  # the name is free once more
        assert a.query("EXECUTE q") == [["again"]]


def test_a_prepare_in_a_failed_transaction_leaves_no_stale_statement(make_pgplex):
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with raw(pgplex.port) as a, raw(pgplex.port) as b:
        a.query("BEGIN")
        a.query("PREPARE lost AS SELECT 1")
        with pytest.raises(ServerError):
            a.query("SELECT 1/0")
        a.query("ROLLBACK")
        # The server may or may not hold "lost" now; the next client must not care.
        b.query("PREPARE lost AS SELECT 'b'")
        assert b.query("EXECUTE lost") == [["b"]]


# --- the unnamed statement ---------------------------------------------------------------
# PostgreSQL keeps it until the next unnamed Parse or simple Query; pgplex may lend another
# server after any Sync, so it parses the client's unnamed statement again where needed.


def psql_script(port, script):
    """Runs a psql script from stdin (-X, stopping at the first error); returns its output."""
    command = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1",
               conninfo(port, "payam_db", "payam")]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=clean_env(PGPASSWORD=PASSWORDS["payam"], PGCONNECT_TIMEOUT=10))


def test_psql_gdesc_then_g_prints_as_directly_while_other_clients_share_the_server(
        make_pgplex, cluster):
    # \gdesc is PQprepare(conn, "", ...) then PQdescribePrepared(conn, ""): two Syncs, and
    # between them the only server may serve the other psqls and a client whose simple
    # Queries destroy whatever unnamed statement it holds.
    script = "SELECT 1 AS x \\gdesc\n\\g\n" * 20
    expected, _ = psql_script(cluster.port, script).communicate(script, timeout=60)
    assert "integer" in expected and "(1 row)" in expected
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    stop = threading.Event()

    def queries(conn):
        while not stop.is_set():
            assert conn.pgconn.exec_(b"SELECT 1").status == psycopg.pq.ExecStatus.TUPLES_OK

    with connect(pgplex.port, autocommit=True) as busy:
        noise = threading.Thread(target=queries, args=(busy,))
        noise.start()
        try:
            runs = [psql_script(pgplex.port, script) for _ in range(3)]
            outputs = [run.communicate(script, timeout=60) for run in runs]
        finally:
            stop.set()
            noise.join(timeout=10)
    for run, (output, errors) in zip(runs, outputs):
        assert (run.returncode, errors) == (0, "")
        assert output == expected


def describe_and_run(conn, other=None):
    """Prepares the unnamed statement, lets `other` use the server (its own unnamed statement
    too), then describes and runs the first: what libpq returns."""
    prepared_result = conn.pgconn.prepare(b"", b"SELECT $1::int + 1 AS answer")
    assert prepared_result.status == psycopg.pq.ExecStatus.COMMAND_OK
    if other is not None:
        assert other.pgconn.prepare(b"", b"SELECT 'x'::text AS other").status == (
            psycopg.pq.ExecStatus.COMMAND_OK)
        assert other.pgconn.exec_(b"SELECT 'other'").status == psycopg.pq.ExecStatus.TUPLES_OK
        assert other.pgconn.prepare(b"", b"SELECT 'y'::text AS other").status == (
            psycopg.pq.ExecStatus.COMMAND_OK)
    described = conn.pgconn.describe_prepared(b"")
    ran = conn.pgconn.exec_prepared(b"", [b"41"])
    return (described.status, described.error_message, described.nparams,
            described.nparams and described.param_type(0), described.nfields,
            described.nfields and described.fname(0), described.nfields and described.ftype(0),
            ran.status, ran.error_message, ran.ntuples and ran.get_value(0, 0))


def test_unnamed_statement_is_described_and_run_after_another_client_used_the_server(
        make_pgplex, cluster):
    with connect(cluster.port, autocommit=True) as direct:
        expected = describe_and_run(direct)
    assert expected[2:4] == (1, 23) and expected[-1] == b"42"
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with connect(pgplex.port, autocommit=True) as conn, \
            connect(pgplex.port, autocommit=True) as other:
        assert describe_and_run(conn, other) == expected
        assert describe_and_run(conn, other) == expected  # and again, once it is known


def unnamed_after_query(conn):
    """The SQLSTATE of describing the unnamed statement after a simple Query."""
    assert conn.pgconn.prepare(b"", b"SELECT 1").status == psycopg.pq.ExecStatus.COMMAND_OK
    assert conn.pgconn.exec_(b"SELECT 2").status == psycopg.pq.ExecStatus.TUPLES_OK
    described = conn.pgconn.describe_prepared(b"")
    return described.status, described.error_field(psycopg.pq.DiagnosticField.SQLSTATE)


def test_unnamed_statement_is_gone_after_a_simple_query_as_in_postgresql(
        make_pgplex, cluster):
    with connect(cluster.port, autocommit=True) as direct:
        expected = unnamed_after_query(direct)
    assert expected == (psycopg.pq.ExecStatus.FATAL_ERROR, b"26000")
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    with connect(pgplex.port, autocommit=True) as conn:
        assert unnamed_after_query(conn) == expected


def test_a_failed_unnamed_parse_leaves_no_unnamed_statement(make_pgplex, cluster):
    steps = [parse("", "SELECT 1") + SYNC, parse("", "SELEC 1") + SYNC,
             describe(b"S", "") + SYNC]

    def replies(port):
        with raw(port) as client:
            return [[(kind, body["C"] if kind == b"E" else b"")
                     for kind, body in exchange(client, step)] for step in steps]

    expected = replies(cluster.port)
    assert expected[2] == [(b"E", "26000"), (b"Z", b"")]
    pgplex = make_pgplex(pool_size=1, settings=TRANSACTION)
    assert replies(pgplex.port) == expected
