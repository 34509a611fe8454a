"""Limits a user runs into: max_client_conn, pool sizes, query_wait_timeout, and what a
session leaves behind on a pooled server connection."""

import re
import threading
import time

import psycopg
import pytest

from conftest import (RawClient, ServerError, connect, login_error, parse_error_fields, psql,
                      wait_until)
from test_gossip import start_appliances


class Background:
    """Runs fn in a thread; records its result or exception and when it finished."""

    def __init__(self, fn):
        self.result = self.error = self.finished_at = None
        self.started_at = time.monotonic()
        self.thread = threading.Thread(target=self.run, args=(fn,), daemon=True)
        self.thread.start()

    def run(self, fn):
        try:
            self.result = fn()
        except BaseException as error:  # noqa: B902 - reported to the test
            self.error = error
        self.finished_at = time.monotonic()

    def done(self):
        return self.finished_at is not None

    def join(self, timeout):
        self.thread.join(timeout)
        return self.done()

    def elapsed(self):
        return self.finished_at - self.started_at


def query_once(port, sql="SELECT 1", **kwargs):
    with connect(port, **kwargs) as conn:
        return conn.execute(sql).fetchone()


@pytest.mark.smoke
def test_client_over_max_client_conn_gets_53300_and_earlier_clients_keep_working(make_pgplex):
    pgplex = make_pgplex(max_client_conn=5)
    clients = [connect(pgplex.port, autocommit=True) for _ in range(5)]
    try:
        for conn in clients:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        error = login_error(pgplex.port, "payam", "payam_db")
        assert error is not None and error.sqlstate == "53300", error
        for i, conn in enumerate(clients):
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        for conn in clients:
            conn.close()


def test_slot_freed_by_a_closed_client_admits_a_new_one(make_pgplex):
    pgplex = make_pgplex(max_client_conn=2)
    first, second = connect(pgplex.port), connect(pgplex.port)
    try:
        error = login_error(pgplex.port, "payam", "payam_db")
        assert error is not None and error.sqlstate == "53300", error
        first.close()
        deadline = time.monotonic() + 5
        while login_error(pgplex.port, "payam", "payam_db") is not None:
            assert time.monotonic() < deadline, "closed client's slot was never freed"
            time.sleep(0.1)
        assert second.execute("SELECT 1").fetchone() == (1,)
    finally:
        first.close()
        second.close()


def test_third_session_waits_for_a_pool_of_two_and_is_served_when_one_closes(make_pgplex):
    pgplex = make_pgplex(pool_size=2)
    first = connect(pgplex.port, autocommit=True)
    second = connect(pgplex.port, autocommit=True)
    try:
        pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                for conn in (first, second)}
        assert len(pids) == 2
        third = Background(lambda: query_once(pgplex.port, "SELECT pg_backend_pid()"))
        assert not third.join(1.5), f"third session was served past the pool: {third.result}"
        first.close()
        assert third.join(10), "third session was not served after a pool slot freed"
        assert third.error is None, third.error
        # It got the server connection the first session gave back.
        assert third.result[0] in pids
        assert second.execute("SELECT 1").fetchone() == (1,)
    finally:
        first.close()
        second.close()


def test_waiting_past_query_wait_timeout_gives_an_error(make_pgplex):
    pgplex = make_pgplex(pool_size=1, query_wait_timeout="1s")
    holder = connect(pgplex.port, autocommit=True)
    try:
        holder.execute("SELECT 1")
        waiter = Background(lambda: query_once(pgplex.port))
        assert waiter.join(10), "waiting client got no answer at all"
        assert isinstance(waiter.error, psycopg.Error), \
            f"expected an error, got {waiter.result!r} / {waiter.error!r}"
        assert "query_wait_timeout" in str(waiter.error), str(waiter.error)
        assert 0.8 <= waiter.elapsed() <= 3.5, waiter.elapsed()
        # Before the error, a log line said why it waited (from half the timeout on).
        assert re.search(r"has waited \d+ ms for a server of payam_db/payam: 1 of pool_size 1 "
                         r"servers open, 1 clients waiting", pgplex.log()), pgplex.log()[-3000:]
        raw = login_error(pgplex.port, "payam", "payam_db")  # libpq hides its SQLSTATE
        assert raw is not None and raw.sqlstate == "08P01", raw
        # The holder is unaffected, and once it leaves a new client is served.
        assert holder.execute("SELECT 2").fetchone() == (2,)
        holder.close()
        assert query_once(pgplex.port) == (1,)
    finally:
        holder.close()


def test_a_replay_waiting_on_a_lock_ends_at_query_wait_timeout(make_pgplex, cluster):
    """Transaction pooling: a client's SQL PREPARE is replayed on each server it is lent; the
    replay waits for a lock like any statement. It is bounded by query_wait_timeout too, ends
    with 08P01 for that client alone, and its server is not lent on mid-replay."""
    cluster.admin_psql("DROP TABLE IF EXISTS replay_locked; CREATE TABLE replay_locked (x int);"
                       " GRANT ALL ON replay_locked TO payam", dbname="payam_db")
    pgplex = make_pgplex(pool_size=2, settings={"pool_mode": "transaction"},
                         query_wait_timeout="2s")
    preparer = RawClient(pgplex.port)  # libpq keeps a FATAL's SQLSTATE to itself
    preparer.login("payam", "payam_db")
    other = connect(pgplex.port, autocommit=True)
    locker = psycopg.connect(host=cluster.dir, port=cluster.port, dbname="payam_db",
                             user="payam", autocommit=True)
    try:
        preparer.query("PREPARE p AS SELECT count(*) FROM replay_locked")  # on server 1
        other.execute("BEGIN")
        other.execute("SELECT 1")  # holds server 1: the preparer's next gets server 2
        locker.execute("BEGIN")
        locker.execute("LOCK replay_locked IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(ServerError) as raised:
            preparer.query("SELECT 1")  # waits while server 2 replays PREPARE p
        assert raised.value.sqlstate == "08P01", raised.value
        assert "query_wait_timeout" in str(raised.value), str(raised.value)
        assert 1.5 <= time.monotonic() - started <= 5
        assert re.search(r"has waited \d+ ms for pgplex's own statements for its session on "
                         r"server backend \d+", pgplex.log()), pgplex.log()[-3000:]
        assert other.execute("SELECT 2").fetchone() == (2,)  # the other client goes on
        locker.execute("ROLLBACK")
        other.execute("COMMIT")
        with connect(pgplex.port, autocommit=True) as fresh:
            assert fresh.execute("SELECT count(*) FROM replay_locked").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                fresh.execute("EXECUTE p")  # never anyone else's
    finally:
        for conn in (preparer, other, locker):
            conn.close()


def test_server_connection_is_reused_after_a_client_disconnects(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=2)
    since = cluster.server_now()
    pids = set()
    for _ in range(10):
        pids.add(query_once(pgplex.port, "SELECT pg_backend_pid()")[0])
    # Each session's server goes back to the pool (after server_reset_query) and is lent
    # again; a new one may open only while the pool is below its size.
    assert len(pids) <= 2, f"10 sequential sessions used {len(pids)} server connections"
    for _ in range(3):
        a, b = connect(pgplex.port), connect(pgplex.port)
        pids.add(a.execute("SELECT pg_backend_pid()").fetchone()[0])
        pids.add(b.execute("SELECT pg_backend_pid()").fetchone()[0])
        a.close()
        b.close()
    assert len(pids) <= 2
    assert cluster.backends("payam", since=since, dbname="payam_db") <= 2


def test_pool_never_opens_more_server_connections_than_pool_size(make_pgplex, cluster):
    pgplex = make_pgplex(pool_size=3)
    since = cluster.server_now()
    workers = [Background(lambda: query_once(pgplex.port, "SELECT pg_sleep(0.3)"))
               for _ in range(9)]
    for worker in workers:
        assert worker.join(20)
        assert worker.error is None, worker.error
    assert cluster.backends("payam", since=since, dbname="payam_db") <= 3


def test_session_settings_and_temp_tables_do_not_leak_to_the_next_session(make_pgplex):
    pgplex = make_pgplex(pool_size=1)
    with connect(pgplex.port, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SET search_path = leaked_schema, public")
        conn.execute("CREATE TEMP TABLE leaked_temp (x int)")
        conn.execute("PREPARE leaked_statement AS SELECT 1")
        conn.execute("SET statement_timeout = '4321ms'")
    with connect(pgplex.port, autocommit=True) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid, \
            "pool of 1 did not hand the same server connection to the next session"
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'leaked_temp'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_session_left_inside_a_transaction_is_rolled_back_for_the_next(make_pgplex):
    pgplex = make_pgplex(pool_size=1)
    conn = connect(pgplex.port)
    conn.execute("INSERT INTO orders VALUES (7001, 'never committed')")
    conn.close()  # mid-transaction
    assert psql(pgplex.port, "SELECT count(*) FROM orders WHERE id = 7001") == "0"
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_a_login_that_never_finishes_ends_at_client_login_timeout(make_pgplex):
    """SHOW CLIENTS' "login" wait: a client that sends half a startup packet and nothing
    more is refused with 08P01 at client_login_timeout and its slot is freed."""
    pgplex = make_pgplex(settings={"client_login_timeout": "1s"})
    with RawClient(pgplex.port) as client:
        client.send(b"\0\0\0\x40\0\x03")  # a startup packet's length and half its version
        started = time.monotonic()
        kind, body = client.read_message()
        assert kind == b"E", kind
        assert parse_error_fields(body)["C"] == "08P01", parse_error_fields(body)
        assert 0.8 <= time.monotonic() - started <= 3
        assert client.is_closed()
    assert query_once(pgplex.port) == (1,)


def test_when_every_client_slot_is_taken_accepting_pauses_and_resumes(make_pgplex):
    """Run with a file limit that leaves a worker fewer client slots than max_client_conn
    asks for: once every slot is taken, pgplex stops accepting (the kernel's listen queue
    holds the next connections, nothing is refused or lost), logs it, keeps serving the
    clients it has, and accepts the waiting ones as slots free up."""
    pgplex = make_pgplex(workers=1, max_client_conn=5000, start=False)
    # client slots = file limit - server slots (an eighth of the limit, at least 1024) - 64
    # (worker.cc): 1132 leaves 44.
    pgplex.file_limit = 1132
    pgplex.start()
    slots = int(pgplex.wait_log(r"(\d+) client slots").group(1))
    assert slots == 44, pgplex.log()
    held = [RawClient(pgplex.port) for _ in range(slots)]
    try:
        for client in held[:3]:
            client.login("payam", "payam_db")
        late = [RawClient(pgplex.port) for _ in range(5)]  # connected; in the listen queue
        assert pgplex.wait_log(r"every client slot \(44\) is taken", timeout=5), pgplex.log()
        assert held[0].query("SELECT 1") == [["1"]]  # a client it has is still served
        for client in held[3:13]:
            client.close()
        for client in late:  # accepted now that slots are free, and served
            client.login("payam", "payam_db")
        for client in late:
            client.close()
    finally:
        for client in held:
            client.close()
    with connect(pgplex.port, autocommit=True) as conn:
        assert conn.execute("SELECT 'after'").fetchone() == ("after",)


# PgBouncer's max_db_connections, max_user_connections, max_db_client_connections and
# max_user_client_connections.

def pgplex_backends(cluster, dbname="payam_db", user="payam"):
    """Server connections pgplex holds to the node for (dbname, user), as the node sees them."""
    return int(cluster.admin_psql(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        f"AND datname = '{dbname}' AND usename = '{user}'"))


def hold_transaction(port, seconds, seen, **kwargs):
    """A client that holds a transaction open for `seconds`; records its backend pid."""
    with connect(port, **kwargs) as conn:
        with conn.transaction():
            seen.append(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            time.sleep(seconds)
        return conn.execute("SELECT 1").fetchone()


def console_rows(port, command):
    with connect(port, dbname="pgbouncer", user="payam", autocommit=True,
                 prepare_threshold=None) as conn:
        cursor = conn.execute(command)
        if cursor.description is None:
            return []
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_max_db_connections_holds_five_clients_to_two_servers_and_all_finish(make_pgplex,
                                                                             cluster):
    pgplex = make_pgplex(pool_size=10, settings={"max_db_connections": 2})
    seen, peak = [], 0
    clients = [Background(lambda: hold_transaction(pgplex.port, 0.6, seen)) for _ in range(5)]
    deadline = time.monotonic() + 20
    while not all(client.done() for client in clients) and time.monotonic() < deadline:
        peak = max(peak, pgplex_backends(cluster))
        time.sleep(0.05)
    for client in clients:
        assert client.join(1), "a client waiting for max_db_connections never finished"
        assert client.error is None, client.error
        assert client.result == (1,)
    assert 1 <= peak <= 2, f"the node saw {peak} connections of payam_db over max_db_connections 2"
    assert len(set(seen)) <= 2, f"clients were served by {len(set(seen))} backends: {seen}"


def test_max_db_connections_counts_every_user_of_the_database(make_pgplex, cluster):
    """Two aliases' users share no pool, but payam_db's limit holds over both of its pools."""
    pgplex = make_pgplex(pool_size=10, query_wait_timeout="2s",
                         databases={"payam_db": {"max_db_connections": 1}})
    holder = connect(pgplex.port, autocommit=True)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        waiter = Background(lambda: query_once(pgplex.port))
        assert waiter.join(10)
        assert isinstance(waiter.error, psycopg.Error), (waiter.result, waiter.error)
        assert "query_wait_timeout" in str(waiter.error)
        # Another alias over the same node and database name is not held by payam_db's limit.
        assert query_once(pgplex.port, dbname="payam_dw", user="dataplatform_ro") == (1,)
        holder.execute("COMMIT")
        holder.close()  # session pooling: its server is free once it leaves
        assert query_once(pgplex.port) == (1,)
        assert pgplex_backends(cluster) <= 1
    finally:
        holder.close()


def test_max_user_connections_makes_a_second_client_wait_until_the_first_commits(make_pgplex):
    pgplex = make_pgplex(pool_size=10, user_settings={"payam": {"max_user_connections": 1}})
    holder = connect(pgplex.port, autocommit=True)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        waiter = Background(lambda: query_once(pgplex.port))
        assert not waiter.join(1.5), f"served past max_user_connections: {waiter.result}"
        holder.execute("COMMIT")
        holder.close()
        assert waiter.join(10) and waiter.error is None, waiter.error
    finally:
        holder.close()


def test_max_db_client_connections_refuses_the_third_login_with_53300(make_pgplex):
    pgplex = make_pgplex(settings={"max_db_client_connections": 2})
    first, second = connect(pgplex.port), connect(pgplex.port)
    try:
        error = login_error(pgplex.port, "payam", "payam_db")
        assert error is not None and error.sqlstate == "53300", error
        assert "no more connections allowed (max_db_client_connections)" in str(error), error
        # Another database is not counted with payam_db.
        assert query_once(pgplex.port, dbname="payam_dw", user="dataplatform_ro") == (1,)
        assert first.execute("SELECT 1").fetchone() == (1,)
        first.close()
        assert wait_until(lambda: login_error(pgplex.port, "payam", "payam_db") is None, 5), \
            "a closed client's place was never given back"
    finally:
        first.close()
        second.close()


def test_max_user_client_connections_per_user_table_refuses_that_user_only(make_pgplex):
    pgplex = make_pgplex(user_settings={"payam": {"max_user_client_connections": 1}})
    first = connect(pgplex.port)
    try:
        error = login_error(pgplex.port, "payam", "payam_db")
        assert error is not None and error.sqlstate == "53300", error
        assert "(max_user_client_connections)" in str(error), error
        assert query_once(pgplex.port, dbname="payam_dw", user="dataplatform_ro") == (1,)
    finally:
        first.close()


def test_reload_and_set_change_max_db_client_connections_and_show_reports_it(make_pgplex):
    pgplex = make_pgplex(settings={"max_db_client_connections": 3, "admin_users": ["payam"]})
    clients = [connect(pgplex.port) for _ in range(2)]
    try:
        [row] = [r for r in console_rows(pgplex.port, "SHOW DATABASES")
                 if r["name"] == "payam_db"]
        assert (row["max_client_connections"], row["current_client_connections"]) == (3, 2)
        assert row["max_connections"] == 0
        config = {r["key"]: r["value"] for r in console_rows(pgplex.port, "SHOW CONFIG")}
        assert config["max_db_client_connections"] == "3"
        pgplex.settings["max_db_client_connections"] = 2
        pgplex.reload()
        error = login_error(pgplex.port, "payam", "payam_db")
        assert error is not None and error.sqlstate == "53300", error
        pgplex.settings["max_db_client_connections"] = 0
        pgplex.reload()
        assert login_error(pgplex.port, "payam", "payam_db") is None
        console_rows(pgplex.port, "SET max_db_client_connections = 2")
        assert wait_until(lambda: login_error(pgplex.port, "payam", "payam_db") is not None, 5)
        config = {r["key"]: r["value"] for r in console_rows(pgplex.port, "SHOW CONFIG")}
        assert config["max_db_client_connections"] == "2"
        for conn in clients:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in clients:
            conn.close()


def test_show_databases_and_users_report_server_limits_and_counts(make_pgplex):
    pgplex = make_pgplex(settings={"admin_users": ["payam"], "max_db_connections": 4},
                         user_settings={"payam": {"max_user_connections": 3}})
    holder = connect(pgplex.port, autocommit=True)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        [db] = [r for r in console_rows(pgplex.port, "SHOW DATABASES") if r["name"] == "payam_db"]
        assert (db["max_connections"], db["current_connections"]) == (4, 1)
        assert db["current_client_connections"] == 1
        [user] = [r for r in console_rows(pgplex.port, "SHOW USERS") if r["name"] == "payam"]
        assert (user["max_user_connections"], user["current_connections"]) == (3, 1)
        # The console's own login is not counted (an admin login has no database).
        assert user["current_client_connections"] == 1
    finally:
        holder.close()


# A node's max_db_connections (node_options), shared by the appliances of a site through
# gossip (issue 12 item 6).

def start_budget_appliances(make_cluster_pgplex, nodes, tmp_path, budget):
    """Three gossiping appliances over nodes, the primary's budget `budget`."""
    options = {"services": {"primary": {}},
               "settings": {"admin_users": ["payam"], "pool_mode": "transaction"},
               "node_options": {"primary": {"max_db_connections": budget}}}
    return start_appliances(make_cluster_pgplex, nodes, tmp_path, options=options)[0]


def node_backends(nodes, port, user="payam"):
    return int(nodes.admin_psql(port, "SELECT count(*) FROM pg_stat_activity WHERE "
                                f"backend_type = 'client backend' AND usename = '{user}'"))


@pytest.mark.usefixtures("hard_timeout")
def test_appliances_sharing_a_node_budget_never_open_more_than_it_together(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    budget = 4
    appliances = start_budget_appliances(make_cluster_pgplex, nodes, tmp_path, budget)
    done = {appliance.port: 0 for appliance in appliances}
    errors = []
    lock = threading.Lock()
    deadline = time.monotonic() + 12

    def load(appliance):
        try:
            # A login takes a server too: it may wait for its appliance's turn to grow.
            with connect(appliance.service_port("primary"), autocommit=True,
                         connect_timeout=30) as conn:
                while time.monotonic() < deadline:
                    conn.execute("SELECT pg_sleep(0.05)")
                    with lock:
                        done[appliance.port] += 1
        except psycopg.Error as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=load, args=(a,), daemon=True)
               for a in appliances for _ in range(4)]
    for thread in threads:
        thread.start()
    peak = 0
    while time.monotonic() < deadline:
        peak = max(peak, node_backends(nodes, nodes.primary))
        time.sleep(0.05)
    for thread in threads:
        thread.join(40)
    assert not errors, errors[:3]
    # Twelve clients in a sleep each: without the budget the node would see up to 12.
    assert 1 <= peak <= budget, f"the node saw {peak} pgplex connections, budget {budget}"
    assert all(count > 0 for count in done.values()), f"an appliance starved: {done}"


@pytest.mark.usefixtures("hard_timeout")
def test_without_gossip_one_appliance_uses_the_whole_node_budget_and_no_more(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(
        nodes, services={"primary": {}}, offline=(), query_wait_timeout="30s",
        settings={"pool_mode": "transaction"},
        node_options={"primary": {"max_db_connections": 2}})
    errors, done = [], []
    deadline = time.monotonic() + 6

    def load():
        try:
            with connect(pgplex.service_port("primary"), autocommit=True,
                         connect_timeout=30) as conn:
                while time.monotonic() < deadline:
                    conn.execute("SELECT pg_sleep(0.05)")
                done.append(1)
        except psycopg.Error as error:
            errors.append(error)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    peak = 0
    while time.monotonic() < deadline:
        peak = max(peak, node_backends(nodes, nodes.primary))
        time.sleep(0.05)
    for thread in threads:
        thread.join(40)
    assert not errors, errors[:3]
    assert len(done) == 5, "a client never finished"
    assert peak == 2, f"the node saw {peak} pgplex connections, its budget is 2"
