"""The PgBouncer-compatible management console: database "pgbouncer" (an alias of "pgplex"),
stats_users, PgBouncer 1.25's SHOW tables with their column names, order and types, the
queries monitoring agents send, and the control commands (PAUSE, RESUME, DISABLE, ENABLE,
KILL_CLIENT, RELOAD, SUSPEND, SIGUSR1/SIGUSR2), PgBouncer's key/value SHOW STATE.

The column shapes are checked twice: against a real PgBouncer 1.18 (Debian's
/usr/sbin/pgbouncer, started here in front of the same PostgreSQL), and against the lists of
PgBouncer 1.25 below, which add what 1.18 lacks."""

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from conftest import HOST, PASSWORDS, connect, next_free_port, wait_for_tcp, wait_until

pytestmark = pytest.mark.usefixtures("hard_timeout")

ADMIN = {"admin_users": ["payam"], "stats_users": ["dataplatform_ro"],
         "pool_mode": "transaction"}
PGBOUNCER = "/usr/sbin/pgbouncer"

TEXT, INT4, INT8, NUMERIC = 25, 23, 20, 1700
S, I, N = TEXT, INT4, NUMERIC
SOCKET_COLUMNS = [
    ("type", S), ("user", S), ("database", S), ("replication", S), ("state", S), ("addr", S),
    ("port", I), ("local_addr", S), ("local_port", I), ("connect_time", S),
    ("request_time", S), ("wait", I), ("wait_us", I), ("close_needed", I), ("ptr", S),
    ("link", S), ("remote_pid", I), ("tls", S), ("application_name", S),
    ("prepared_statements", I), ("id", I)]
STAT_NAMES = ["server_assignment_count", "xact_count", "query_count", "received", "sent",
              "xact_time", "query_time", "wait_time", "client_parse_count",
              "server_parse_count", "bind_count", "client_login_count"]


def renamed(name, received, sent):
    return {"received": received, "sent": sent}.get(name, name)


# PgBouncer 1.25's columns and types, from its src/admin.c (pktbuf_write_RowDescription: "s"
# text, "i" int4, "q" int8, "T" text) and src/stats.c ("N" numeric), as of release 1.25.2.
PGBOUNCER_125 = {
    "POOLS": [("database", S), ("user", S)] + [(name, I) for name in (
        "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
        "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used",
        "sv_tested", "sv_login", "maxwait", "maxwait_us")]
    + [("pool_mode", S), ("load_balance_hosts", S)],
    "CLIENTS": SOCKET_COLUMNS,
    "SERVERS": SOCKET_COLUMNS,
    "SOCKETS": SOCKET_COLUMNS + [(name, I) for name in (
        "recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
        "send_avail")],
    "DATABASES": [
        ("name", S), ("host", S), ("port", I), ("database", S), ("force_user", S),
        ("pool_size", I), ("min_pool_size", I), ("reserve_pool_size", I),
        ("server_lifetime", I), ("pool_mode", S), ("load_balance_hosts", S),
        ("max_connections", I), ("current_connections", I), ("max_client_connections", I),
        ("current_client_connections", I), ("paused", I), ("disabled", I)],
    "USERS": [("name", S), ("pool_size", S), ("reserve_pool_size", S), ("pool_mode", S),
              ("max_user_connections", I), ("current_connections", I),
              ("max_user_client_connections", I), ("current_client_connections", I)],
    "STATS": [("database", S)]
    + [("total_" + name, N) for name in STAT_NAMES]
    + [("avg_" + renamed(name, "recv", "sent"), N) for name in STAT_NAMES],
    "STATS_TOTALS": [("database", S)]
    + [(renamed(name, "bytes_received", "bytes_sent"), N) for name in STAT_NAMES],
    "STATS_AVERAGES": [("database", S)]
    + [(("avg_" if name.endswith(("parse_count", "bind_count", "login_count")) else "")
        + renamed(name, "bytes_received", "bytes_sent"), N) for name in STAT_NAMES],
    "TOTALS": [("name", S), ("value", N)],
    "LISTS": [("list", S), ("items", I)],
    "CONFIG": [("key", S), ("value", S), ("default", S), ("changeable", S)],
    "MEM": [("name", S), ("size", I), ("used", I), ("free", I), ("memtotal", I)],
    "VERSION": [("version", S)],
    "STATE": [("key", S), ("value", S)],
}
# 1.25 renamed DATABASES' reserve_pool (1.18) to reserve_pool_size, and has SHOW STATE.
RENAMED_SINCE_118 = {"reserve_pool": "reserve_pool_size"}
ADDED_SINCE_118 = {"STATE"}


def admin(port, user="payam", dbname="pgbouncer"):
    """The console takes simple queries only, as PgBouncer's: psycopg must not prepare a
    command it repeats (it would after 5 runs)."""
    return connect(port, dbname=dbname, user=user, autocommit=True, prepare_threshold=None)


def columns(conn, command):
    cursor = conn.execute(command)
    return [(column.name, column.type_code) for column in cursor.description]


def rows(conn, command):
    cursor = conn.execute(command)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


@pytest.fixture
def console(make_pgplex):
    return make_pgplex(settings=ADMIN)


@pytest.fixture
def pgbouncer(cluster):
    """PgBouncer 1.18 in front of the test PostgreSQL, run as postgres (it refuses root),
    from a directory postgres can reach (pytest's tmp_path is private to root)."""
    if not shutil.which(PGBOUNCER):
        pytest.skip("no /usr/sbin/pgbouncer")
    port = next_free_port()
    directory = Path(tempfile.mkdtemp(prefix="pgplex-console-pgbouncer-"))
    directory.chmod(0o777)
    (directory / "users.txt").write_text('"payam" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(f"[databases]\npayam_db = host={HOST} port={cluster.port}\n"
                   f"[pgbouncer]\nlisten_addr = {HOST}\nlisten_port = {port}\n"
                   f"auth_type = trust\nauth_file = {directory}/users.txt\n"
                   f"admin_users = payam\nunix_socket_dir =\n"
                   f"logfile = {directory}/pgbouncer.log\n")
    for path in directory.iterdir():
        path.chmod(0o644)
    process = subprocess.Popen(["runuser", "-u", "postgres", "--", PGBOUNCER, str(ini)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_tcp(port, 10, process), "PgBouncer did not start"
    yield port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    shutil.rmtree(directory, ignore_errors=True)


# --- database "pgbouncer" and stats_users ---------------------------------------------------

def test_pgbouncer_is_the_management_database_for_admin_and_stats_users(console):
    for user in ("payam", "dataplatform_ro"):
        with admin(console.port, user) as conn:
            assert conn.execute("SHOW VERSION").fetchone()[0].startswith("PgBouncer 1.25.0 (pgplex")


def test_a_stats_user_may_show_but_not_pause(console):
    with admin(console.port, "dataplatform_ro") as conn:
        assert rows(conn, "SHOW POOLS") is not None
        for command in ("PAUSE", "SUSPEND", "RELOAD", "KILL_CLIENT 1", "DISABLE payam_db",
                        "SET default_pool_size = 1", "KILL"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(command)
        assert rows(conn, "SHOW LISTS"), "the connection goes on after a refusal"


# --- the shapes of PgBouncer's tables ----------------------------------------------------

def test_every_show_has_pgbouncer_125_columns_in_order_with_their_types(console):
    with admin(console.port) as conn:
        for command, expected in PGBOUNCER_125.items():
            got = columns(conn, "SHOW " + command)
            assert got[:len(expected)] == expected, command


def test_pgbouncer_118_columns_are_all_in_pgplex_in_the_same_order_and_type(console, pgbouncer):
    with connect(pgbouncer, dbname="pgbouncer", autocommit=True) as bouncer, \
            admin(console.port) as conn:
        for command in PGBOUNCER_125.keys() - ADDED_SINCE_118:
            theirs = [(RENAMED_SINCE_118.get(name, name), oid)
                      for name, oid in columns(bouncer, "SHOW " + command)]
            ours = columns(conn, "SHOW " + command)
            positions = [ours.index(column) for column in theirs]  # ValueError: missing
            assert positions == sorted(positions), f"SHOW {command}: order differs"


# --- what monitoring agents send -------------------------------------------------------

def test_pgbouncer_exporter_datadog_and_pgwatch_queries_parse(console):
    """prometheus-community/pgbouncer_exporter (collector.go) sends "SHOW STATS" to check the
    connection, then "SHOW VERSION;", "SHOW LISTS;", "SHOW CONFIG;" and "SHOW <namespace>;"
    for databases, stats_totals and pools; it wants one "version" column, two columns in
    LISTS, four in CONFIG, and numbers where it maps a column to a metric. Datadog's check
    (DataDog/integrations-core pgbouncer/datadog_checks/pgbouncer/pgbouncer.py, metrics.py)
    takes the first N.N.N of "SHOW VERSION;", sends SHOW STATS, POOLS, DATABASES, CONFIG,
    CLIENTS and SERVERS, skips rows of database "pgbouncer", and parses connect_time and
    request_time as "%Y-%m-%d %H:%M:%S" after cutting what follows the second space."""
    import re
    with connect(console.port, autocommit=True) as client:
        client.execute("SELECT 1")
    with admin(console.port, "dataplatform_ro") as conn:
        version = rows(conn, "SHOW VERSION;")
        assert list(version[0]) == ["version"]
        assert re.search(r"\d+\.\d+\.\d+", version[0]["version"]).group() == "1.25.0"
        assert all(len(row) == 2 and float(row["items"]) >= 0 for row in rows(conn, "SHOW LISTS;"))
        config = {row["key"]: row["value"] for row in rows(conn, "SHOW CONFIG;")}
        float(config["max_client_conn"]), float(config["max_user_connections"])
        for command, numbers in (
                ("SHOW DATABASES;", ("pool_size", "max_connections", "current_connections",
                                     "paused", "disabled")),
                ("SHOW STATS_TOTALS;", ("query_count", "query_time", "bytes_received",
                                        "bytes_sent", "wait_time", "xact_count", "xact_time")),
                ("SHOW POOLS;", ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used",
                                 "sv_tested", "sv_login", "maxwait")),
                ("SHOW STATS", ("total_query_count", "avg_query_time")),
                ("SHOW CLIENTS", ("port",)), ("SHOW SERVERS", ("remote_pid",))):
            for row in rows(conn, command):
                for column in numbers:
                    float(row[column])
        for command in ("SHOW CLIENTS", "SHOW SERVERS"):
            listed = rows(conn, command)
            assert listed, command
            for row in listed:
                for column in ("connect_time", "request_time"):
                    stamp = re.findall(r"^[^ ]+ [^ ]+", row[column])[0]
                    time.strptime(stamp, "%Y-%m-%d %H:%M:%S")


def test_stats_count_queries_transactions_and_bytes(console):
    with connect(console.port, autocommit=True) as client:
        for _ in range(5):
            client.execute("SELECT repeat('x', 1000)").fetchone()
        with client.transaction():
            client.execute("SELECT 1")
            client.execute("SELECT 2")
    with admin(console.port) as conn:
        stats = {row["database"]: row for row in rows(conn, "SHOW STATS")}["payam_db"]
        assert stats["total_query_count"] >= 8  # 5, and BEGIN, 2 SELECTs, COMMIT
        assert stats["total_xact_count"] >= 6
        assert stats["total_sent"] >= 5000 and stats["total_received"] > 0
        assert stats["total_server_assignment_count"] >= 6
        pools = [row for row in rows(conn, "SHOW POOLS") if row["database"] == "payam_db"]
        assert pools and pools[0]["pool_mode"] == "transaction"
        assert sum(row["sv_idle"] + row["sv_active"] for row in pools) >= 1
        servers = rows(conn, "SHOW SERVERS")
        assert any(row["database"] == "payam_db" and row["type"] == "S" for row in servers)


# --- control commands ------------------------------------------------------------------

def run_in_thread(function):
    result = {}

    def run():
        try:
            result["value"] = function()
        except Exception as error:  # noqa: BLE001 (reported by the test)
            result["error"] = error
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_pause_waits_for_the_transaction_in_flight_then_holds_queries_until_resume(console):
    with connect(console.port, autocommit=True) as busy, \
            connect(console.port, autocommit=True) as waiting, admin(console.port) as conn:
        waiting.execute("SELECT 1")

        def transaction():
            with busy.transaction():
                busy.execute("SELECT pg_sleep(1.5)")
        running, _ = run_in_thread(transaction)
        time.sleep(0.4)
        started = time.monotonic()
        conn.execute("PAUSE")
        assert time.monotonic() - started >= 0.7, "PAUSE answered before the transaction ended"
        running.join()
        held, result = run_in_thread(lambda: waiting.execute("SELECT 42").fetchone()[0])
        held.join(1.0)
        assert held.is_alive(), f"a query ran while paused: {result}"
        assert state(conn) == {"active": "no", "paused": "yes", "suspended": "no"}
        conn.execute("RESUME")
        held.join(5)
        assert result.get("value") == 42, result


def state(conn):
    return {row["key"]: row["value"] for row in rows(conn, "SHOW STATE")}


def test_show_state_is_pgbouncers_key_value_rows(console):
    with admin(console.port) as conn:
        assert [row["key"] for row in rows(conn, "SHOW STATE")] == ["active", "paused",
                                                                    "suspended"]
        assert state(conn) == {"active": "yes", "paused": "no", "suspended": "no"}
        conn.execute("PAUSE payam_db")  # one database: the pooler is still active
        assert state(conn) == {"active": "yes", "paused": "no", "suspended": "no"}
        conn.execute("RESUME payam_db")
        assert {"worker", "cl_idle", "clients_kept"} <= set(rows(conn, "SHOW WORKERS")[0])


def refused_login(port, seconds):
    """True when a new connection gets no answer (not accepted) within seconds."""
    try:
        with connect(port, connect_timeout=seconds):
            return False
    except psycopg.OperationalError:
        return True


def test_suspend_holds_queries_and_new_connections_until_resume(console):
    with connect(console.port, autocommit=True) as client, admin(console.port) as conn:
        client.execute("SELECT 1")
        started = time.monotonic()
        conn.execute("SUSPEND")
        assert time.monotonic() - started < 5, "SUSPEND took too long to answer"
        assert state(conn) == {"active": "no", "paused": "no", "suspended": "yes"}
        held, result = run_in_thread(lambda: client.execute("SELECT 8").fetchone()[0])
        held.join(1.0)
        assert held.is_alive(), f"a query ran while suspended: {result}"
        assert refused_login(console.port, 2), "a new connection was served while suspended"
        with pytest.raises(psycopg.Error, match="already suspended/paused"):
            conn.execute("PAUSE")
        assert state(conn)["suspended"] == "yes", "the console stopped while suspended"
        conn.execute("RESUME")
        held.join(5)
        assert result.get("value") == 8, result
        assert state(conn) == {"active": "yes", "paused": "no", "suspended": "no"}
        with connect(console.port) as late:
            assert late.execute("SELECT 9").fetchone()[0] == 9


def test_suspend_does_not_wait_for_an_open_transaction_which_goes_on_after_resume(console):
    with connect(console.port) as client, admin(console.port) as conn:
        client.execute("CREATE TEMP TABLE kept (n int)")
        client.execute("INSERT INTO kept VALUES (4)")  # the transaction stays open
        started = time.monotonic()
        conn.execute("SUSPEND")  # PAUSE would wait for the COMMIT
        assert time.monotonic() - started < 5, "SUSPEND waited for the open transaction"
        held, result = run_in_thread(lambda: client.execute("SELECT n FROM kept").fetchone()[0])
        held.join(1.0)
        assert held.is_alive(), f"a statement ran while suspended: {result}"
        conn.execute("RESUME")
        held.join(5)
        assert result.get("value") == 4, result
        client.commit()


def test_sigusr1_pauses_and_sigusr2_resumes(console):
    with connect(console.port, autocommit=True) as client:
        client.execute("SELECT 1")
        console.signal(signal.SIGUSR1)
        time.sleep(0.5)
        held, result = run_in_thread(lambda: client.execute("SELECT 7").fetchone()[0])
        held.join(1.0)
        assert held.is_alive(), f"a query ran while paused: {result}"
        console.signal(signal.SIGUSR2)
        held.join(5)
        assert result.get("value") == 7, result


def test_resume_when_not_paused_is_pgbouncers_error(console):
    with admin(console.port) as conn:
        with pytest.raises(psycopg.Error, match="not paused"):
            conn.execute("RESUME")
        with pytest.raises(psycopg.Error, match="no such database: nope"):
            conn.execute("PAUSE nope")


def test_kill_client_closes_that_client(console):
    with connect(console.port, autocommit=True, application_name="victim") as victim, \
            admin(console.port) as conn:
        victim.execute("SELECT 1")
        ids = [row["id"] for row in rows(conn, "SHOW CLIENTS")
               if row["application_name"] == "victim"]
        assert len(ids) == 1
        conn.execute(f"KILL_CLIENT {ids[0]}")
        with pytest.raises(psycopg.OperationalError):
            wait_until(lambda: victim.execute("SELECT 1") and False, timeout=5,
                       ignore=())
        assert all(row["application_name"] != "victim" for row in rows(conn, "SHOW CLIENTS"))


def test_reconnect_replaces_the_servers_opened_before_it(make_pgplex):
    """RECONNECT [db]: the servers open now close once released (an idle one at the next
    tick); the clients go on, on new servers."""
    pgplex = make_pgplex(settings={**ADMIN, "pool_mode": "transaction"})
    with connect(pgplex.port, autocommit=True) as client, admin(pgplex.port) as conn:
        before = client.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("RECONNECT payam_db")
        time.sleep(0.6)  # a tick (200 ms) closes the idle server
        assert client.execute("SELECT pg_backend_pid()").fetchone()[0] != before
        assert "RECONNECT" in pgplex.log()
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("RECONNECT no_such_db")
        assert "no such database" in str(raised.value)


def test_wait_close_answers_once_the_servers_reconnect_marked_are_closed(make_pgplex):
    """WAIT_CLOSE after RECONNECT: a server held by a transaction keeps the answer waiting
    until the transaction ends and the server closes; then it answers."""
    pgplex = make_pgplex(settings={**ADMIN, "pool_mode": "transaction"})
    with connect(pgplex.port) as client, admin(pgplex.port) as conn:
        held = client.execute("SELECT pg_backend_pid()").fetchone()[0]  # a block holds it
        conn.execute("RECONNECT")
        answered = threading.Event()

        def wait_close():
            with admin(pgplex.port) as other:
                other.execute("WAIT_CLOSE")
                answered.set()
        waiter = threading.Thread(target=wait_close)
        waiter.start()
        assert not answered.wait(1.0), "WAIT_CLOSE answered while a marked server was lent"
        client.commit()  # the server goes back, marked: it closes
        waiter.join(10)
        assert answered.is_set()
        assert client.execute("SELECT pg_backend_pid()").fetchone()[0] != held
        client.commit()


def closed(conn):
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_kill_drops_the_databases_clients_and_new_ones_wait_for_resume(console):
    with connect(console.port, autocommit=True) as victim, \
            connect(console.port, dbname="payam_dw", autocommit=True) as other, \
            admin(console.port) as conn:
        victim.execute("SELECT 1")
        other.execute("SELECT 1")
        conn.execute("KILL payam_db")
        assert wait_until(lambda: closed(victim), timeout=5), "KILL left the client connected"
        assert other.execute("SELECT 2").fetchone()[0] == 2, "another database goes on"
        databases = {row["name"]: row for row in rows(conn, "SHOW DATABASES")}
        assert databases["payam_db"]["paused"] == 1

        def later():
            with connect(console.port, autocommit=True) as client:
                return client.execute("SELECT 5").fetchone()[0]
        waiting, result = run_in_thread(later)
        waiting.join(1.0)
        assert waiting.is_alive(), f"a client of the killed database got a server: {result}"
        conn.execute("RESUME payam_db")
        waiting.join(8)
        assert result.get("value") == 5, result


def test_disable_refuses_new_logins_with_pgbouncers_error_until_enable(console):
    with connect(console.port, autocommit=True) as before, admin(console.port) as conn:
        conn.execute("DISABLE payam_db")
        databases = {row["name"]: row for row in rows(conn, "SHOW DATABASES")}
        assert databases["payam_db"]["disabled"] == 1 and databases["payam_dw"]["disabled"] == 0
        with pytest.raises(psycopg.OperationalError, match='database "payam_db" is disabled'):
            connect(console.port)
        assert before.execute("SELECT 1").fetchone()[0] == 1, "connected clients go on"
        conn.execute("ENABLE payam_db")
        with connect(console.port) as after:
            assert after.execute("SELECT 1").fetchone()[0] == 1


def test_reload_applies_a_changed_file(console):
    console.settings["default_pool_size"] = 7
    console.write()
    with admin(console.port) as conn:
        conn.execute("RELOAD")

        def pool_size():
            return {row["key"]: row["value"]
                    for row in rows(conn, "SHOW CONFIG")}["default_pool_size"] == "7"
        assert wait_until(pool_size, timeout=5)


def test_set_applies_a_live_setting_and_refuses_a_bad_one(console):
    with admin(console.port) as conn:
        def setting(key):
            return {row["key"]: row["value"] for row in rows(conn, "SHOW CONFIG")}[key]
        conn.execute("SET default_pool_size = 5")
        assert wait_until(lambda: setting("default_pool_size") == "5", timeout=5)
        conn.execute("SET query_wait_timeout = '45s'")
        assert wait_until(lambda: setting("query_wait_timeout") == "45", timeout=5)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="default_pool_size"):
            conn.execute("SET default_pool_size = many")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="live"):
            conn.execute("SET workers = 8")
        assert setting("default_pool_size") == "5", "a refused SET changes nothing"
        with connect(console.port) as client:
            assert client.execute("SELECT 1").fetchone()[0] == 1
        conn.execute("RELOAD")
        assert wait_until(lambda: setting("default_pool_size") == "20", timeout=5), \
            "RELOAD puts back what the file says"


# --- console commands in a comment, from a client of a database ---------------------------

def test_a_comment_command_gets_the_consoles_answer_for_an_admin_user(console):
    with connect(console.port, autocommit=True, prepare_threshold=None) as client:
        client.execute("SELECT 1")
        pools = rows(client, "--!pgplex SHOW POOLS")
        assert "payam_db" in [row["database"] for row in pools]
        assert rows(client, "  --!pgplex show state;")[0] == {"key": "active", "value": "yes"}
        client.execute("--!pgplex PAUSE payam_db")
        with admin(console.port) as conn:
            paused = {row["name"]: row["paused"] for row in rows(conn, "SHOW DATABASES")}
            assert paused["payam_db"] == 1
        client.execute("--!pgplex RESUME payam_db")
        assert client.execute("SELECT 5").fetchone()[0] == 5


def test_a_comment_command_is_refused_to_other_users(console):
    with connect(console.port, user="app", autocommit=True) as client:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="console commands"):
            client.execute("--!pgplex SHOW POOLS")
        assert client.execute("SELECT 6").fetchone()[0] == 6, "the connection goes on"
    with connect(console.port, user="dataplatform_ro", autocommit=True) as client:
        assert rows(client, "--!pgplex SHOW LISTS"), "a stats user may SHOW"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute("--!pgplex PAUSE")
    with admin(console.port) as conn:
        assert state(conn)["paused"] == "no"


def test_a_comment_command_does_not_take_routing_hints_or_sql_with_it(console):
    with connect(console.port, autocommit=True) as client:
        # key=value pairs are a routing hint: PostgreSQL sees the comment and the statement.
        assert client.execute("--!pgplex route=primary\nSELECT 3").fetchone()[0] == 3
        with pytest.raises(psycopg.errors.SyntaxError, match="stands alone"):
            client.execute("--!pgplex SHOW POOLS\nSELECT 1")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="management database"):
            client.execute("--!pgplex SUSPEND")
        with admin(console.port) as conn:
            assert state(conn)["suspended"] == "no"
