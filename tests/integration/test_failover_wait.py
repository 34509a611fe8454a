"""Clients through a failover: while a cluster has no primary, transactions that need one wait
in pgplex (failover_wait_timeout) instead of failing, reads go on to the replicas, and when
the wait runs out the held request is answered 57P03 and the client keeps its connection.
Routed clients whose server dies get the treatment transaction-pooled ones get (08006, then
25P02 in a lost block until ROLLBACK).

A real primary + 2 replicas per test (failover_cluster); the primary is stopped with
pg_ctl stop -m fast and a replica promoted with pg_ctl promote, as an operator would."""

import threading
import time

import psycopg
import pytest

from conftest import connect, landing_ports, run_pgbench, wait_until
from test_admin_clusters import show
from test_limits import Background

pytestmark = pytest.mark.usefixtures("hard_timeout")

TRANSACTION = {"pool_mode": "transaction", "admin_users": ["payam"]}
ROUTED = {"cluster": "c1", "dbname": "payam_db", "pool_mode": "transaction"}
FOLLOW_SECONDS = 8
WRITERS = 8


def state_sum(port, column):
    return sum(int(row[column]) for row in show(port, "SHOW WORKERS"))


def server_port(conn):
    return conn.execute("SELECT inet_server_port()").fetchone()[0]


def make_table(nodes):
    nodes.admin_psql(nodes.primary, "CREATE TABLE failover_wait (writer int, n int)",
                     dbname="payam_db", user="payam")
    nodes.wait_replayed()


def no_primary(pgplex):
    return show(pgplex.port, "SHOW CLUSTERS")[0]["primary"] == ""


def test_a_write_waits_for_the_promoted_primary_and_the_client_never_notices(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    make_table(nodes)
    pgplex = make_cluster_pgplex(nodes, services=("primary", "replica"),
                                 settings={**TRANSACTION, "failover_wait_timeout": "20s"})
    port = pgplex.service_port("primary")
    writer = connect(port, autocommit=True)
    reader = connect(pgplex.service_port("replica"), autocommit=True)
    try:
        assert wait_until(lambda: server_port(writer) == nodes.primary, FOLLOW_SECONDS)
        nodes.stop("primary")
        assert wait_until(lambda: no_primary(pgplex), FOLLOW_SECONDS), "pgplex saw no failure"
        insert = Background(lambda: writer.execute(
            "INSERT INTO failover_wait VALUES (1, 1) RETURNING inet_server_port()").fetchone())
        assert wait_until(lambda: state_sum(pgplex.port, "primary_waiting") == 1, 5), \
            show(pgplex.port, "SHOW WORKERS")
        assert not insert.done(), insert.error
        # Reads go on to the replica meanwhile.
        assert server_port(reader) == nodes.replica1
        nodes.promote("replica1")
        assert insert.join(FOLLOW_SECONDS + 5), "the held write never ran"
        assert insert.error is None, insert.error
        assert insert.result == (nodes.replica1,)
        assert wait_until(lambda: state_sum(pgplex.port, "primary_waiting") == 0, 3)
        assert server_port(writer) == nodes.replica1
    finally:
        writer.close()
        reader.close()


def test_after_failover_wait_timeout_the_write_gets_57p03_and_the_connection_stays(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), aliases={"rdb": ROUTED},
                                 settings=TRANSACTION,
                                 cluster_settings={"failover_wait_timeout": "1s"})
    conn = connect(pgplex.port, dbname="rdb", autocommit=True)
    try:
        assert wait_until(lambda: server_port(conn) == nodes.replica1, FOLLOW_SECONDS)
        nodes.stop("primary")
        assert wait_until(lambda: no_primary(pgplex), FOLLOW_SECONDS), "pgplex saw no failure"
        before = state_sum(pgplex.port, "primary_wait_timeouts")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.CannotConnectNow) as raised:
            conn.execute("CREATE TABLE never_made (x int)")
        waited = time.monotonic() - started
        assert 0.9 <= waited <= 5, waited
        assert "failover_wait_timeout" in (raised.value.diag.message_detail or "")
        assert wait_until(
            lambda: state_sum(pgplex.port, "primary_wait_timeouts") == before + 1, 3)
        # The same connection goes on: a read to the replica, the extended protocol too.
        assert not conn.closed
        assert server_port(conn) == nodes.replica1
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        # And once a replica is promoted, its writes run there.
        nodes.promote("replica1")
        assert wait_until(lambda: not no_primary(pgplex), FOLLOW_SECONDS)
        conn.execute("CREATE TABLE made_after (x int)")
        assert conn.execute("SELECT count(*) FROM made_after").fetchone() == (0,)
    finally:
        conn.close()


def test_failover_wait_timeout_zero_answers_a_write_at_once(failover_cluster,
                                                            make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), aliases={"rdb": ROUTED},
                                 settings={**TRANSACTION, "failover_wait_timeout": "0"})
    # With no wait at all, a login before the monitor's first checks found the primary would
    # be refused too (as it should): log in once it is known.
    assert wait_until(lambda: not no_primary(pgplex), FOLLOW_SECONDS), "no primary found"
    conn = connect(pgplex.port, dbname="rdb", autocommit=True)
    try:
        nodes.stop("primary")
        assert wait_until(lambda: no_primary(pgplex), FOLLOW_SECONDS), "pgplex saw no failure"
        started = time.monotonic()
        with pytest.raises(psycopg.errors.CannotConnectNow):
            conn.execute("CREATE TABLE never_made (x int)")
        assert time.monotonic() - started < 1.5
        assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        conn.close()


def writer_loop(port, index, stop, outcome):
    """Inserts one row per autocommit transaction until stop; notes errors, and whether the
    connection was ever closed under it."""
    errors, rows = [], 0
    conn = connect(port, autocommit=True, application_name=f"writer-{index}")
    try:
        while not stop.is_set():
            try:
                conn.execute("INSERT INTO failover_wait VALUES (%s, %s)", (index, rows))
                rows += 1
            except psycopg.Error as error:
                errors.append((error.sqlstate, str(error).strip()))
                if conn.closed:
                    break
                time.sleep(0.05)
    finally:
        outcome[index] = {"rows": rows, "errors": errors, "closed": conn.closed}
        conn.close()


def test_eight_writers_through_the_primary_service_keep_every_connection_over_a_failover(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    make_table(nodes)
    pgplex = make_cluster_pgplex(nodes, services=("primary",),
                                 settings={**TRANSACTION, "failover_wait_timeout": "20s"})
    port = pgplex.service_port("primary")
    stop, outcome = threading.Event(), {}
    threads = [threading.Thread(target=writer_loop, args=(port, i, stop, outcome))
               for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        nodes.stop("primary")
        time.sleep(1.5)  # writes wait for a primary meanwhile
        nodes.promote("replica1")
        assert wait_until(lambda: not no_primary(pgplex), FOLLOW_SECONDS)
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len(outcome) == WRITERS, outcome
    assert not any(result["closed"] for result in outcome.values()), outcome
    # A statement in flight on the primary as it stopped may be answered 08006 (whether it
    # ran is unknown); nothing else fails: the rest waited for the new primary.
    for result in outcome.values():
        assert all(code == "08006" for code, _ in result["errors"]), outcome
        assert len(result["errors"]) <= 1, outcome
    written = nodes.admin_psql(nodes.replica1, "SELECT count(*) FROM failover_wait",
                               dbname="payam_db", user="payam")
    assert int(written) >= sum(result["rows"] for result in outcome.values())


def test_a_routed_client_in_a_block_on_a_replica_that_dies_gets_08006_then_25p02_until_rollback(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), aliases={"rdb": ROUTED},
                                 settings=TRANSACTION, offline=())
    conn = connect(pgplex.port, dbname="rdb", options="-c pgplex.intent=read-only")
    try:
        port = server_port(conn)  # opens a block on a replica
        assert port in (nodes.replica1, nodes.replica2)
        nodes.stop("replica1" if port == nodes.replica1 else "replica2")
        with pytest.raises(psycopg.errors.ConnectionFailure):
            conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert not conn.closed
        assert server_port(conn) in (nodes.replica1, nodes.replica2)
        conn.commit()
    finally:
        conn.close()


def test_a_routed_idle_client_whose_primary_dies_goes_on_with_the_promoted_one(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    make_table(nodes)
    pgplex = make_cluster_pgplex(nodes, services=("primary",), aliases={"rdb": ROUTED},
                                 settings={**TRANSACTION, "failover_wait_timeout": "20s"})
    conn = connect(pgplex.port, dbname="rdb", autocommit=True)
    try:
        conn.execute("INSERT INTO failover_wait VALUES (0, 0)")
        nodes.stop("primary")
        nodes.promote("replica1")
        conn.execute("INSERT INTO failover_wait VALUES (0, 1)")
        rows = nodes.admin_psql(nodes.replica1, "SELECT count(*) FROM failover_wait",
                                dbname="payam_db", user="payam")
        assert rows == "2"
    finally:
        conn.close()


def terminate_running(nodes, name, application, query, timeout=10):
    """pg_terminate_backend of the backend on node `name` running query for application."""
    port = nodes.ports[name]
    sql = ("SELECT pid FROM pg_stat_activity WHERE application_name = "
           f"'{application}' AND state = 'active' AND query = '{query}'")
    pids = wait_until(lambda: nodes.admin_psql(port, sql), timeout)
    assert pids, f"no backend of {application} runs {query} on {name}"
    nodes.admin_psql(port, f"SELECT pg_terminate_backend({pids})")


def serving(port, node_ports):
    """Waits until fresh clients of a service land on node_ports and nowhere else: until
    the monitor has seen the replicas up, the service's backup (the primary) serves it."""
    assert wait_until(lambda: set(landing_ports(port, count=2 * len(node_ports)))
                      == set(node_ports), FOLLOW_SECONDS), "the service never used its nodes"


def sleeper(port, application):
    # Simple query protocol: nothing of the answer reaches the client before the end.
    return connect(port, autocommit=True, application_name=application,
                   cursor_factory=psycopg.ClientCursor)


SLEEP = "SELECT pg_sleep(1.5), inet_server_port()"


def test_a_read_on_a_replica_that_dies_before_answering_runs_again_unnoticed(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("replica",), settings=TRANSACTION,
                                 offline=())
    serving(pgplex.service_port("replica"), [nodes.replica1, nodes.replica2])
    conn = sleeper(pgplex.service_port("replica"), "rerun-me")
    try:
        before = state_sum(pgplex.port, "requests_rerun")
        for name in ("replica1", "replica2"):
            # Find the replica the next statement lands on, then kill it there.
            reading = Background(lambda: conn.execute(SLEEP).fetchone())
            killed = None
            deadline = time.monotonic() + 5
            while killed is None and time.monotonic() < deadline:
                for node in ("replica1", "replica2"):
                    out = nodes.admin_psql(nodes.ports[node], (
                        "SELECT pid FROM pg_stat_activity WHERE application_name = "
                        f"'rerun-me' AND state = 'active' AND query = '{SLEEP}'"))
                    if out:
                        nodes.admin_psql(nodes.ports[node], f"SELECT pg_terminate_backend({out})")
                        killed = node
                        break
            assert killed, "the statement never ran on a replica"
            assert reading.join(10), "the statement never finished"
            assert reading.error is None, reading.error
            assert reading.result[1] in (nodes.replica1, nodes.replica2)
        assert wait_until(lambda: state_sum(pgplex.port, "requests_rerun") == before + 2, 3)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        conn.close()


def test_a_read_whose_replica_stops_runs_on_the_other_replica(failover_cluster,
                                                              make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("replica",), settings=TRANSACTION,
                                 offline=())
    serving(pgplex.service_port("replica"), [nodes.replica1, nodes.replica2])
    conn = sleeper(pgplex.service_port("replica"), "rerun-stop")
    try:
        first = server_port(conn)
        name = "replica1" if first == nodes.replica1 else "replica2"
        other = nodes.replica2 if name == "replica1" else nodes.replica1
        # Until pgplex sees it down, the next read may land on it again: run until one does.
        reading = Background(lambda: [conn.execute(SLEEP).fetchone() for _ in range(2)])
        assert wait_until(lambda: nodes.admin_psql(nodes.ports[name], (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rerun-stop' "
            "AND state = 'active' "
            f"AND query = '{SLEEP}'")) == "1", 5), "no read landed on it"
        nodes.stop(name)
        assert reading.join(20), "the reads never finished"
        assert reading.error is None, reading.error
        assert reading.result[-1][1] == other
        assert wait_until(lambda: state_sum(pgplex.port, "requests_rerun") >= 1, 3)
    finally:
        conn.close()


def test_a_statement_on_the_primary_is_never_run_again(failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION)
    conn = sleeper(pgplex.service_port("primary"), "no-rerun")
    try:
        assert server_port(conn) == nodes.primary
        running = Background(lambda: conn.execute(SLEEP).fetchone())
        terminate_running(nodes, "primary", "no-rerun", SLEEP)
        assert running.join(10)
        assert isinstance(running.error, psycopg.errors.ConnectionFailure), running.error
        assert state_sum(pgplex.port, "requests_rerun") == 0
        assert server_port(conn) == nodes.primary
    finally:
        conn.close()


def test_a_read_in_a_transaction_block_on_a_replica_is_never_run_again(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("replica",), settings=TRANSACTION)
    serving(pgplex.service_port("replica"), [nodes.replica1])
    conn = connect(pgplex.service_port("replica"), application_name="block-no-rerun",
                   cursor_factory=psycopg.ClientCursor)
    try:
        assert server_port(conn) == nodes.replica1  # opens the block
        running = Background(lambda: conn.execute(SLEEP).fetchone())
        terminate_running(nodes, "replica1", "block-no-rerun", SLEEP)
        assert running.join(10)
        assert isinstance(running.error, psycopg.errors.ConnectionFailure), running.error
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert server_port(conn) == nodes.replica1
        assert state_sum(pgplex.port, "requests_rerun") == 0
    finally:
        conn.close()


def test_pgbench_writers_through_the_primary_service_lose_no_connection_over_a_failover(
        failover_cluster, make_cluster_pgplex, tmp_path):
    """8 pgbench clients insert through the primary service (a think time of 20 ms, so most
    are between transactions when the primary stops, as most clients of a pool are); the
    primary stops, replica1 is promoted by hand. No connection is lost: clients between
    transactions wait and go on; pgbench gives up on a client only if its statement was
    in flight (08006: whether it ran is unknown), never because a connection closed."""
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",),
                                 settings={**TRANSACTION, "failover_wait_timeout": "20s"})
    port = pgplex.service_port("primary")
    script = tmp_path / "insert.sql"
    script.write_text("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                      "VALUES (1, 1, 1, 1, clock_timestamp());\n\\sleep 20 ms\n")
    bench = Background(lambda: run_pgbench(
        port, ["-n", "-c", str(WRITERS), "-j", "2", "-T", "10", "-f", str(script)],
        timeout=60))
    time.sleep(2.5)
    nodes.stop("primary")
    time.sleep(1.5)
    nodes.promote("replica1")
    promoted = time.time()
    assert bench.join(60), "pgbench did not finish"
    result = bench.result
    output = result.stdout + result.stderr
    print("PGBENCH", output)
    assert "server closed the connection" not in output, output
    assert "connection to server" not in output, output
    aborted = [line for line in output.splitlines() if "aborted in command" in line]
    assert all("server connection failed" in line for line in aborted), output
    # How many clients had a statement in flight when the primary stopped is up to timing (on
    # a loaded machine it may be all of them): pgbench gives up on those. Writes must go on
    # through the same pgplex, on the promoted node, with nothing aborted.
    again = run_pgbench(port, ["-n", "-c", str(WRITERS), "-j", "2", "-T", "2", "-f", str(script)],
                        timeout=60)
    assert again.returncode == 0 and "aborted" not in again.stdout + again.stderr, \
        again.stdout + again.stderr
    after = nodes.admin_psql(nodes.replica1, (
        "SELECT count(*) FROM pgbench_history WHERE mtime > "
        f"to_timestamp({promoted})"), dbname="appdb")
    assert int(after) > 0, output
