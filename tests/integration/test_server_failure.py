"""A transaction-pooled client whose server connection dies keeps its own: the request the
dead server owed is answered 08006 in its place, a transaction block it was in is lost
(25P02 until ROLLBACK, as PostgreSQL itself answers a failed block), and the session goes
on with another server. The server backend is killed with pg_terminate_backend from a
superuser connection, as a node failure or an operator would."""

import struct
import subprocess
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from conftest import (HOST, PASSWORDS, RawClient, ServerError, clean_env, connect, message,
                      wait_until)
from test_admin_clusters import show
from test_admin_state import at_baseline

TRANSACTION = {"pool_mode": "transaction", "admin_users": ["payam"]}
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
DRIVERS = Path(__file__).parent / "drivers"
KILL_TIMEOUT_SECONDS = 10


def backend_pids(cluster, application, states):
    """Server backends of the application whose state is one of states."""
    listed = ", ".join(f"'{state}'" for state in states)
    out = cluster.admin_psql(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
        f"AND application_name = '{application}' AND state IN ({listed})")
    return [int(pid) for pid in out.split()]


def kill_backend(cluster, application, states=("idle in transaction",), query=None):
    """Terminates the one backend of the application in one of states (running query, if
    given), and waits until it is gone. Returns its pid."""
    def found():
        pids = backend_pids(cluster, application, states)
        if query is not None:
            pids = [pid for pid in pids if cluster.admin_psql(
                f"SELECT query FROM pg_stat_activity WHERE pid = {pid}") == query]
        return pids
    pids = wait_until(found, KILL_TIMEOUT_SECONDS)
    assert pids and len(pids) == 1, f"expected one backend of {application}: {pids}"
    cluster.admin_psql(f"SELECT pg_terminate_backend({pids[0]})")
    gone = wait_until(lambda: cluster.admin_psql(
        f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pids[0]}") == "0",
        KILL_TIMEOUT_SECONDS)
    assert gone, f"backend {pids[0]} did not exit"
    return pids[0]


def kept(port):
    return sum(int(row["clients_kept"]) for row in show(port, "SHOW WORKERS"))


def assert_back_to_baseline(port):
    outcome = {}

    def settled():
        ok, outcome["rows"] = at_baseline(port)
        return ok
    assert wait_until(settled, 10), f"not back to baseline: {outcome.get('rows')}"


def one(conn, sql, params=None, **kwargs):
    return conn.execute(sql, params, **kwargs).fetchone()[0]


def sleep_killed(cluster, conn, application, sql="SELECT pg_sleep(30)"):
    """Runs sql on conn while its backend is killed mid-statement; returns the error."""
    killer = threading.Thread(target=kill_backend, args=(cluster, application, ("active",), sql))
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(sql)
    finally:
        killer.join(KILL_TIMEOUT_SECONDS * 3)
    assert time.monotonic() - started < 20, "the statement ran to its end"
    return raised.value


def test_client_in_a_transaction_block_gets_08006_then_25p02_until_rollback(make_pgplex, cluster):
    """psycopg's own transactions (autocommit off): the block's server dies while idle in
    it; the next statement hears 08006 naming the server, the next 25P02, and after
    rollback() the same connection runs on another server."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    conn = connect(pgplex.port, application_name="victim_block", prepare_threshold=None)
    try:
        assert one(conn, "SELECT 1") == 1  # psycopg began a block
        dead = one(conn, "SELECT pg_backend_pid()")
        assert kill_backend(cluster, "victim_block") == dead
        with pytest.raises(psycopg.errors.ConnectionFailure) as lost:
            conn.execute("SELECT 2")
        assert lost.value.sqlstate == "08006"
        assert "transaction is lost" in str(lost.value)
        assert f":{cluster.port}" in str(lost.value)  # names the server
        assert conn.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 3")
        conn.rollback()
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert one(conn, "SELECT 42") == 42
        assert one(conn, "SELECT pg_backend_pid()") != dead
        conn.commit()
        assert not conn.closed
        assert wait_until(lambda: kept(pgplex.port) == 1, 5)  # published each tick
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)


def test_statement_in_flight_in_a_block_gets_08006_and_commit_answers_rollback(make_pgplex,
                                                                              cluster):
    """The backend dies under a pg_sleep inside BEGIN: that statement gets 08006; the block
    is failed; COMMIT in it is answered with the tag ROLLBACK, as PostgreSQL does."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    conn = connect(pgplex.port, autocommit=True, application_name="victim_flight",
                   prepare_threshold=None)
    try:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE lost_rows (x int)")
        error = sleep_killed(cluster, conn, "victim_flight")
        assert isinstance(error, psycopg.errors.ConnectionFailure), error
        assert "transaction is lost" in str(error)
        assert conn.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        cursor = conn.execute("COMMIT")
        assert cursor.statusmessage == "ROLLBACK"
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert one(conn, "SELECT 7") == 7
        assert one(conn, "SELECT to_regclass('public.lost_rows') IS NULL") is True
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)


@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_implicit_statement_in_flight_gets_08006_and_the_session_goes_on(make_pgplex, cluster,
                                                                         mode):
    """Outside a block the statement's fate is unknown (08006 says so), ReadyForQuery is
    idle, and the next statement simply runs; in statement pooling too."""
    pgplex = make_pgplex(settings={**TRANSACTION, "pool_mode": mode}, pool_size=2)
    conn = connect(pgplex.port, autocommit=True, application_name="victim_implicit",
                   prepare_threshold=None)
    try:
        conn.execute("SET search_path = public")  # session state that must follow it
        error = sleep_killed(cluster, conn, "victim_implicit")
        assert isinstance(error, psycopg.errors.ConnectionFailure), error
        assert "whether it ran is unknown" in str(error)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert one(conn, "SELECT 5") == 5
        assert one(conn, "SHOW search_path") == "public"
        assert one(conn, "SHOW application_name") == "victim_implicit"
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)


def test_prepared_statements_through_the_extended_protocol_survive(make_pgplex, cluster):
    """psycopg with named prepared statements (Parse/Bind/Execute/Sync), ROLLBACK among
    them, prepared on the dead server: the same answers through the extended protocol."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    conn = connect(pgplex.port, autocommit=True, application_name="victim_extended",
                   prepare_threshold=0)
    try:
        for _ in range(2):
            assert one(conn, "SELECT %s::int + 1", [1], prepare=True) == 2
        conn.execute("BEGIN", prepare=True)
        assert one(conn, "SELECT %s::int + 1", [2], prepare=True) == 3
        conn.execute("ROLLBACK", prepare=True)  # prepared now, on the server to die
        conn.execute("BEGIN", prepare=True)
        assert one(conn, "SELECT %s::int + 1", [3], prepare=True) == 4
        kill_backend(cluster, "victim_extended")
        with pytest.raises(psycopg.errors.ConnectionFailure):
            conn.execute("SELECT %s::int + 1", [4], prepare=True)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT %s::int + 1", [5], prepare=True)
        assert conn.execute("ROLLBACK", prepare=True).statusmessage == "ROLLBACK"
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert one(conn, "SELECT %s::int + 1", [6], prepare=True) == 7
        error = sleep_killed(cluster, conn, "victim_extended", "SELECT pg_sleep(30)")
        assert "whether it ran is unknown" in str(error)
        assert one(conn, "SELECT %s::int + 1", [7], prepare=True) == 8
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)


def read_reply(raw):
    """Messages up to and including the next ReadyForQuery."""
    messages = []
    while True:
        kind, body = raw.read_message()
        assert kind is not None, f"closed after {messages}"
        messages.append((kind, body))
        if kind == b"Z":
            return messages


def sqlstate(body):
    for field in body.split(b"\0"):
        if field[:1] == b"C":
            return field[1:].decode()
    return None


def summary(messages):
    """(types, SQLSTATEs, the ReadyForQuery status) of one reply; a RowDescription, which
    PostgreSQL sends before it runs a query, left out."""
    kinds = b"".join(kind for kind, _ in messages if kind != b"T")
    codes = [sqlstate(body) for kind, body in messages if kind == b"E"]
    return kinds, codes, messages[-1][1]


def test_pipelined_simple_queries_each_get_their_answer_in_order(make_pgplex, cluster):
    """Queries sent behind one that dies with its server: each gets its ErrorResponse and
    ReadyForQuery in order, 08006 outside a block, 25P02 inside one; then the session goes
    on, and the failed block ends with ROLLBACK."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    with RawClient(pgplex.port, timeout=30) as raw:
        raw.login("payam", "payam_db", application_name="victim_pipe")
        pipeline = b"".join(message(b"Q", sql.encode() + b"\0") for sql in
                            ("SELECT pg_sleep(30)", "SELECT 1", "SELECT 2"))
        raw.send(pipeline)
        kill_backend(cluster, "victim_pipe", ("active",), "SELECT pg_sleep(30)")
        replies = [summary(read_reply(raw)) for _ in range(3)]
        assert replies == [(b"EZ", ["08006"], b"I")] * 3
        assert raw.query("SELECT 3") == [["3"]]

        assert raw.query("BEGIN") == []
        raw.send(pipeline)
        kill_backend(cluster, "victim_pipe", ("active",), "SELECT pg_sleep(30)")
        replies = [summary(read_reply(raw)) for _ in range(3)]
        assert replies == [(b"EZ", ["08006"], b"E"), (b"EZ", ["25P02"], b"E"),
                           (b"EZ", ["25P02"], b"E")]
        raw.send(message(b"Q", b"ROLLBACK\0"))
        kinds, codes, status = summary(read_reply(raw))
        assert (kinds, codes, status) == (b"CZ", [], b"I")
        assert raw.query("SELECT 4") == [["4"]]
    assert_back_to_baseline(pgplex.port)


def test_extended_batch_without_its_sync_is_answered_at_the_sync(make_pgplex, cluster):
    """Parse/Bind/Execute with a Flush, the Sync still unsent when the server dies: the
    error comes at once, what follows up to the Sync is skipped, the Sync gets
    ReadyForQuery (PostgreSQL's rule after an extended-protocol error)."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    with RawClient(pgplex.port, timeout=30) as raw:
        raw.login("payam", "payam_db", application_name="victim_flush")
        assert raw.query("BEGIN") == []
        sql = b"SELECT pg_sleep(30)"
        raw.send(message(b"P", b"\0" + sql + b"\0" + struct.pack("!H", 0)) +
                 message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
                 message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"H"))
        kill_backend(cluster, "victim_flush", ("active",), sql.decode())
        kinds = []
        while b"E" not in kinds:
            kind, body = raw.read_message()
            assert kind is not None
            kinds.append(kind)
        assert sqlstate(body) == "08006"
        raw.send(message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"S"))
        assert summary(read_reply(raw)) == (b"Z", [], b"E")
        assert raw.query("ROLLBACK") == []
        assert raw.query("SELECT 9") == [["9"]]
    assert_back_to_baseline(pgplex.port)


def test_idle_client_never_notices_its_last_server_died(make_pgplex, cluster):
    """Between transactions a client holds no server: the pool's server dying is not its
    business; its next statement runs on another."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_idle") as conn:
        dead = one(conn, "SELECT pg_backend_pid()")
        kill_backend(cluster, "victim_idle", ("idle",))
        assert one(conn, "SELECT 1") == 1
        assert one(conn, "SELECT pg_backend_pid()") != dead
    assert_back_to_baseline(pgplex.port)  # a tick has published the counters since
    assert kept(pgplex.port) == 0


SESSION = {"pool_mode": "session", "admin_users": ["payam"]}


def test_session_pooling_client_without_session_state_is_moved(make_pgplex, cluster):
    """Session pooling, a session that is its startup parameters alone: its server dies
    between statements and its next one runs on another server, given the same startup
    parameters; a block it was in is lost as in transaction pooling (08006, 25P02, then
    ROLLBACK and it goes on)."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_session",
                 prepare_threshold=None) as conn:
        dead = one(conn, "SELECT pg_backend_pid()")
        kill_backend(cluster, "victim_session", ("idle",))
        assert one(conn, "SELECT pg_backend_pid()") != dead
        assert one(conn, "SHOW application_name") == "victim_session"
        conn.execute("BEGIN")
        dead = one(conn, "SELECT pg_backend_pid()")
        kill_backend(cluster, "victim_session")
        with pytest.raises(psycopg.errors.ConnectionFailure) as lost:
            conn.execute("SELECT 2")
        assert lost.value.sqlstate == "08006"
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 3")
        conn.execute("ROLLBACK")
        assert one(conn, "SELECT pg_backend_pid()") not in (dead, None)
        assert not conn.closed
    assert wait_until(lambda: kept(pgplex.port) == 2, 5)
    assert_back_to_baseline(pgplex.port)


# (statement that leaves session state, query that shows it, what it shows)
MOVABLE_STATE = [
    ("SET work_mem = '8MB'", "SHOW work_mem", "8MB"),
    ("SELECT set_config('search_path', 'pg_catalog, public', false)",
     "SELECT current_setting('search_path')", "pg_catalog, public"),
    ("SET ROLE payam", "SELECT current_user", "payam"),
    ("PREPARE p AS SELECT 41 + 1", "EXECUTE p", 42),
    ("LISTEN victim_channel", "SELECT pg_catalog.array_agg(c)::text FROM "
     "pg_catalog.pg_listening_channels() c", "{victim_channel}"),
    ("BEGIN; SET LOCAL work_mem = '9MB'; COMMIT", "SHOW work_mem", "4MB"),
]


@pytest.mark.parametrize("statement,show_sql,expected", MOVABLE_STATE,
                         ids=["set", "set_config", "role", "prepare", "listen", "set_local"])
def test_session_pooling_client_state_moves_to_the_next_server(make_pgplex, cluster, statement,
                                                               show_sql, expected):
    """Session pooling: settings, the role, SQL-level prepared statements and LISTENs are
    read back when the transaction that made them ends, and given to the next server when
    the client's dies: the client sees the same session, on another backend."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_session",
                 prepare_threshold=None) as conn:
        conn.execute(statement)
        assert one(conn, show_sql) == expected
        dead = one(conn, "SELECT pg_backend_pid()")
        kill_backend(cluster, "victim_session", ("idle",))
        assert one(conn, "SELECT pg_backend_pid()") != dead
        assert one(conn, show_sql) == expected
        assert one(conn, "SHOW application_name") == "victim_session"
    assert wait_until(lambda: kept(pgplex.port) == 1, 5)
    assert_back_to_baseline(pgplex.port)


def test_session_pooling_listen_hears_notifications_after_the_move(make_pgplex, cluster):
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_listen") as conn:
        conn.execute("LISTEN moved_channel")
        kill_backend(cluster, "victim_listen", ("idle",))
        assert one(conn, "SELECT 1") == 1
        heard = []
        conn.add_notify_handler(lambda notify: heard.append(notify.payload))
        cluster.admin_psql("NOTIFY moved_channel, 'after the move'", dbname="payam_db")
        assert wait_until(lambda: conn.execute("SELECT 1") and heard, 5), "nothing heard"
        assert heard == ["after the move"]


def test_session_pooling_notifications_arriving_during_a_check_reach_the_client(make_pgplex,
                                                                                cluster):
    """The check after a SET runs on the client's own server, where it LISTENs: a
    notification that arrives meanwhile is the client's, and reaches it."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    count = 60
    with connect(pgplex.port, autocommit=True, application_name="listen_checked") as conn:
        heard = []
        conn.add_notify_handler(lambda notify: heard.append(notify.payload))
        conn.execute("LISTEN checked_channel")
        # One transaction each: a notification is sent when its transaction commits.
        sender = threading.Thread(target=lambda: cluster.admin_psql(
            f"DO $$ BEGIN FOR i IN 1..{count} LOOP PERFORM pg_notify('checked_channel', "
            "i::text); COMMIT; PERFORM pg_sleep(0.005); END LOOP; END $$", dbname="payam_db"))
        sender.start()
        sets = 0
        started = time.monotonic()
        while sender.is_alive() and time.monotonic() - started < 20:
            conn.execute("SET work_mem = '5MB'")  # each is followed by a check
            sets += 1
        sender.join(20)
        assert sets > 0
        assert wait_until(lambda: conn.execute("SELECT 1") and len(heard) >= count, 5), \
            f"{len(heard)} of {count} notifications heard"
        assert sorted(heard, key=int) == [str(i) for i in range(1, count + 1)]


def test_session_pooling_protocol_prepared_statements_move(make_pgplex, cluster):
    """Named statements of the extended protocol (psycopg prepares after the first use with
    prepare_threshold 0): kept as sent once the server answered ParseComplete, prepared
    again on the next server; one closed before the failure stays closed."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_parse",
                 prepare_threshold=0) as conn:
        assert one(conn, "SELECT %s::int + 1", (1,)) == 2
        assert one(conn, "SELECT %s::text || 'b'", ("a",)) == "ab"
        names = one(conn, "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
                    prepare=False)
        assert names >= 2
        kill_backend(cluster, "victim_parse", ("idle",))
        assert one(conn, "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
                   prepare=False) == names
        # The driver's names still work: it sends only Bind/Execute for them.
        assert one(conn, "SELECT %s::int + 1", (41,)) == 42
        assert one(conn, "SELECT %s::text || 'b'", ("b",)) == "bb"
        conn.execute("DEALLOCATE ALL", prepare=False)
        kill_backend(cluster, "victim_parse", ("idle",))
        assert one(conn, "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
                   prepare=False) == 0
    assert wait_until(lambda: kept(pgplex.port) == 2, 5)


@pytest.mark.parametrize("statement", [
    "CREATE TEMP TABLE t (a int)", "SELECT pg_advisory_lock(4242)",
    "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT"])
def test_session_pooling_client_with_unmovable_state_is_closed(make_pgplex, cluster, statement):
    """Session pooling, once the session holds what no other server can be given (a
    temporary table, a session advisory lock, a WITH HOLD cursor): that died with the server
    and pgplex cannot rebuild it, so the client is closed, as PostgreSQL would close it, with
    the reason."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    conn = connect(pgplex.port, autocommit=True, application_name="victim_session")
    try:
        conn.execute(statement)
        kill_backend(cluster, "victim_session", ("idle",))
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute("SELECT 1")
        assert "cannot be moved to another" in str(raised.value), raised.value
        assert conn.closed or conn.broken
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)
    assert kept(pgplex.port) == 0


def test_session_pooling_temp_table_dropped_again_moves(make_pgplex, cluster):
    """The check counts what the session holds, not what it once made."""
    pgplex = make_pgplex(settings=SESSION, pool_size=2)
    with connect(pgplex.port, autocommit=True, application_name="victim_temp") as conn:
        conn.execute("CREATE TEMP TABLE gone_again (a int)")
        conn.execute("DROP TABLE gone_again")
        conn.execute("SET work_mem = '7MB'")
        kill_backend(cluster, "victim_temp", ("idle",))
        assert one(conn, "SHOW work_mem") == "7MB"


@pytest.mark.skipif(not JDBC_JAR.exists() or shutil.which("javac") is None,
                    reason="PostgreSQL's JDBC driver is not installed")
def test_jdbc_client_rolls_back_a_lost_transaction_and_goes_on(make_pgplex, cluster):
    """JDBC (named statements from the start, its ROLLBACK through the extended protocol):
    08006, then 25P02, then rollback() and the same connection goes on."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    command = ["java", "-cp", str(JDBC_JAR), str(DRIVERS / "ServerFailure.java"), HOST,
               str(pgplex.port), "payam", PASSWORDS["payam"], "payam_db", "victim_jdbc"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = process.stdout.readline().strip()
        assert line == "in transaction", (line, process.stderr.read() if not line else "")
        kill_backend(cluster, "victim_jdbc")
        process.stdin.write("go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and out.strip() == "ok", (out, err)
    assert_back_to_baseline(pgplex.port)


def test_client_pinned_by_session_state_is_still_closed(make_pgplex, cluster):
    """A session advisory lock pinned the client to its server: the lock died with it, and
    no answer in the server's place could say so; the client is closed as before."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2)
    conn = connect(pgplex.port, autocommit=True, application_name="victim_pinned")
    try:
        conn.execute("SELECT pg_advisory_lock(4242)")
        kill_backend(cluster, "victim_pinned", ("idle",))
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute("SELECT 1")
        assert not isinstance(raised.value, psycopg.errors.InFailedSqlTransaction)
        assert conn.closed or conn.broken
    finally:
        conn.close()
    assert_back_to_baseline(pgplex.port)  # a tick has published the counters since
    assert kept(pgplex.port) == 0


def test_statements_pgplex_answers_between_transactions_are_refused_in_a_lost_block(
        make_pgplex, cluster):
    """A Parse of a statement pgplex already knows is answered by pgplex between
    transactions; in a lost block PostgreSQL would refuse it (25P02), so pgplex must not
    answer it as if the block were over."""
    pgplex = make_pgplex(settings=TRANSACTION, pool_size=2, workers=1)
    parse_sync = (message(b"P", b"s1\0SELECT 1\0" + struct.pack("!H", 0)) + message(b"S"))
    with RawClient(pgplex.port, timeout=30) as raw:
        raw.login("payam", "payam_db", application_name="victim_known")
        raw.send(message(b"P", b"s0\0SELECT 1\0" + struct.pack("!H", 0)) + message(b"S"))
        assert summary(read_reply(raw)) == (b"1Z", [], b"I")  # now a statement pgplex knows
        assert raw.query("BEGIN") == []
        kill_backend(cluster, "victim_known")
        with pytest.raises(ServerError) as lost:
            raw.query("SELECT 2")
        assert lost.value.sqlstate == "08006", lost.value
        raw.send(parse_sync)
        assert summary(read_reply(raw)) == (b"EZ", ["25P02"], b"E")
        assert raw.query("ROLLBACK") == []
        raw.send(parse_sync)
        assert summary(read_reply(raw)) == (b"1Z", [], b"I")
    assert_back_to_baseline(pgplex.port)
