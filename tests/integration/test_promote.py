"""failover = "promote": pgplex promotes the most advanced healthy replica itself when the
primary is down (pgplex.toml(5)), fences the old primary (nothing routes to it; read-only when
the pgplex schema is installed), and SWITCHOVER moves the primary on an operator's word.

Each test gets a fresh primary + replica1 + replica2 (failover_cluster); replica2 is flagged
offline, so replica1 is the one candidate. The outage tests print what they measured
(bench/README.md, "Failover"): the time from the primary's stop to the first write committed
on the new primary, and what the clients saw.

That a switchover holds transactions at their boundaries instead of failing them is the data
path's part (ClusterStatus::hold_writes, failover_wait_timeout).
"""

import os
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import (PASSWORDS, PG_BIN, clean_env, conninfo, connect, landing, run_pgbench,
                      assert_pgbench_clean, wait_until)
from test_admin_clusters import node_row, show

pytestmark = pytest.mark.usefixtures("hard_timeout")

TRANSACTION = {"pool_mode": "transaction", "admin_users": ["payam"]}
# The defaults: inter = 1s, fall = 3; and the same with fastinter = 200ms.
DEFAULT_CHECKS = {"inter": "1s", "fastinter": "1s", "downinter": "1s", "rise": 2, "fall": 3,
                  "check_timeout": "1s"}
FAST_INTER = {**DEFAULT_CHECKS, "fastinter": "200ms"}
WRITERS = 3


def install_schema(nodes):
    """pgplex --print-schema into the monitor's database on the primary (replicated)."""
    binary = os.environ.get("PGPLEX_BIN", "build/pgplex")
    schema = subprocess.run([binary, "--print-schema"], capture_output=True, text=True,
                            timeout=10, check=True).stdout
    result = subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-q", "-h", nodes.dir, "-p",
         str(nodes.primary), "-U", "postgres", "-d", "postgres"], input=schema,
        capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode == 0, result.stderr
    nodes.wait_replayed()


def admin(port, command):
    """(returncode, stdout + stderr) of one admin command through psql."""
    result = subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At",
         conninfo(port, "pgplex", "payam"), "-c", command],
        capture_output=True, text=True, timeout=30,
        env=clean_env(PGPASSWORD=PASSWORDS["payam"], PGCONNECT_TIMEOUT=10))
    return result.returncode, result.stdout + result.stderr


class Writers:
    """WRITERS clients writing one row per transaction through port until stopped: what each
    write returned and when, the errors they saw, and how many connections were lost."""

    def __init__(self, port):
        self.port = port
        self.commits = []  # (monotonic time, node port)
        self.errors = []
        self.closed = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(WRITERS)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def connect(self):
        while not self.stopping.is_set():
            try:
                return connect(self.port, autocommit=True, prepare_threshold=None,
                               connect_timeout=5)
            except psycopg.Error:
                time.sleep(0.05)
        return None

    def run(self):
        conn = self.connect()
        while conn is not None and not self.stopping.is_set():
            try:
                port = conn.execute("INSERT INTO promote_log VALUES (inet_server_port()) "
                                    "RETURNING port").fetchone()[0]
                with self.lock:
                    self.commits.append((time.monotonic(), port))
            except psycopg.Error as error:
                with self.lock:
                    self.errors.append(f"{type(error).__name__}: {error}".strip())
                if conn.closed or conn.broken:
                    with self.lock:
                        self.closed += 1
                    conn = self.connect()
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def first_commit_on(self, port, after):
        times = [t for t, p in self.commits if p == port and t >= after]
        return min(times) if times else None


def start_promoting_pgplex(nodes, make_cluster_pgplex, checks):
    return make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION,
                               query_wait_timeout="30s",
                               cluster_settings={**checks, "failover": "promote"})


def read_only(nodes, name):
    return nodes.admin_psql(nodes.ports[name], "SHOW default_transaction_read_only") == "on"


@pytest.mark.parametrize("checks,target_seconds", [(DEFAULT_CHECKS, 5.0), (FAST_INTER, 2.0)],
                         ids=["inter1s_fall3", "fastinter200ms"])
def test_a_dead_primary_is_replaced_by_the_replica_pgplex_promotes_and_stays_fenced(
        failover_cluster, make_cluster_pgplex, checks, target_seconds):
    nodes = failover_cluster
    install_schema(nodes)
    nodes.admin_psql(nodes.primary, "CREATE TABLE promote_log (port int)", dbname="payam_db",
                     user="payam")
    pgplex = start_promoting_pgplex(nodes, make_cluster_pgplex, checks)
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), 10,
                      ignore=(psycopg.Error,))
    writers = Writers(port)
    writers.start()
    # A client inside a transaction block when the primary dies.
    block = connect(port, prepare_threshold=None)
    try:
        assert wait_until(lambda: writers.first_commit_on(nodes.primary, 0), 10)
        block.execute("INSERT INTO promote_log VALUES (0)")
        time.sleep(1.0)
        died = time.monotonic()
        nodes.stop("primary")
        assert wait_until(lambda: writers.first_commit_on(nodes.replica1, died), 20), \
            f"no write reached replica1:\n{pgplex.log()}"
        time.sleep(0.5)
        with pytest.raises(psycopg.errors.ConnectionFailure) as lost:
            block.execute("SELECT 1")
        assert lost.value.sqlstate == "08006"
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            block.execute("SELECT 2")
        block.rollback()
        assert block.execute("SELECT inet_server_port()").fetchone()[0] == nodes.replica1
        block.commit()
    finally:
        writers.stop()
        block.close()
    outage = writers.first_commit_on(nodes.replica1, died) - died
    print(f"\nfailover ({checks['inter']}/{checks['fastinter']}, fall {checks['fall']}): "
          f"write outage {outage:.2f} s, {len(writers.errors)} client errors, "
          f"{writers.closed} connections lost; errors seen: {sorted(set(writers.errors))[:4]}")
    print("\n".join(line for line in pgplex.log().splitlines()
                    if any(word in line for word in ("is down", "promoting", "is primary"))))
    assert not nodes.in_recovery("replica1")
    assert nodes.in_recovery("replica2"), "the offline replica was promoted"
    assert outage < target_seconds, f"write outage {outage:.2f} s\n{pgplex.log()}"
    assert writers.closed == 0, writers.errors

    # The old primary comes back claiming primary: fenced, never routed to, read-only.
    nodes.start("primary")
    # pgplex.fence() ends every other session, this probe's too if it lands just then.
    assert wait_until(lambda: read_only(nodes, "primary"), 15, ignore=(AssertionError,)), \
        pgplex.log()
    row = node_row(show(pgplex.port, "SHOW NODES"), nodes.primary)
    assert row["fenced"] == "t" and row["role"] == "primary", row
    pgplex.reload()  # a fence survives a reload
    assert node_row(show(pgplex.port, "SHOW NODES"), nodes.primary)["fenced"] == "t"
    assert all(landing(port) == (nodes.replica1, False) for _ in range(4))
    code, text = admin(pgplex.port, f"UNFENCE c1 127.0.0.1:{nodes.primary}")
    assert code != 0 and "still says it is primary" in text, text


def test_a_fence_outlives_a_restart_through_state_file(failover_cluster, make_cluster_pgplex):
    """Without the pgplex schema a fence lives in pgplex alone: state_file keeps it, so a
    pgplex restarted after a promotion never takes the old primary, back and writable, for
    one more primary."""
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",),
                                 settings={**TRANSACTION, "state_file": "state"},
                                 query_wait_timeout="30s",
                                 cluster_settings={**FAST_INTER, "failover": "promote"})
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), 10,
                      ignore=(psycopg.Error,))
    nodes.stop("primary")
    assert wait_until(lambda: landing(port) == (nodes.replica1, False), 20,
                      ignore=(psycopg.Error,)), pgplex.log()
    assert pgplex.stop() == (0, False)
    saved = (pgplex.dir / "state").read_text()
    assert f'fenced = ["127.0.0.1:{nodes.primary}"]' in saved, saved
    assert f'primary = "127.0.0.1:{nodes.replica1}"' in saved, saved
    nodes.start("primary")  # back and writable: no schema made it read-only
    assert not nodes.in_recovery("primary")
    pgplex.start()
    assert pgplex.wait_log(r"is still fenced \(state_file\)", 10), pgplex.log()
    assert wait_until(lambda: node_row(show(pgplex.port, "SHOW NODES"),
                                       nodes.primary)["role"] == "primary", 10)
    assert node_row(show(pgplex.port, "SHOW NODES"), nodes.primary)["fenced"] == "t"
    assert all(landing(port) == (nodes.replica1, False) for _ in range(6))


def test_follow_mode_never_promotes_a_replica(failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION)
    assert wait_until(lambda: landing(pgplex.service_port("primary")) == (nodes.primary, False),
                      10, ignore=(psycopg.Error,))
    nodes.stop("primary")
    time.sleep(4.0)  # 20 checks at FAST_CHECKS' 200ms
    assert nodes.in_recovery("replica1") and nodes.in_recovery("replica2")
    cluster = show(pgplex.port, "SHOW CLUSTERS")[0]
    assert cluster["primary"] == "" and cluster["failover"] == "follow", cluster
    assert "promoting" not in pgplex.log()


def switch_over(nodes, pgplex, target="replica1"):
    code, text = admin(pgplex.port, f"SWITCHOVER c1 TO 127.0.0.1:{nodes.ports[target]}")
    assert code == 0 and "switchover of c1 started" in text, text


def test_switchover_moves_the_primary_and_leaves_the_old_one_fenced_and_read_only(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    install_schema(nodes)
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION)
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), 10,
                      ignore=(psycopg.Error,))
    started = time.monotonic()
    switch_over(nodes, pgplex)
    assert wait_until(lambda: landing(port) == (nodes.replica1, False), 15,
                      ignore=(psycopg.Error,)), pgplex.log()
    print(f"\nswitchover without load: {time.monotonic() - started:.2f} s to the new primary")
    assert read_only(nodes, "primary")
    clusters = show(pgplex.port, "SHOW CLUSTERS")[0]
    assert wait_until(lambda: show(pgplex.port, "SHOW CLUSTERS")[0]["hold_writes"] == "f", 5)
    assert clusters["primary"] == f"127.0.0.1:{nodes.replica1}", clusters
    row = node_row(show(pgplex.port, "SHOW NODES"), nodes.primary)
    assert row["fenced"] == "t", row
    # A second switchover back is refused while the old primary is fenced.
    code, text = admin(pgplex.port, f"SWITCHOVER c1 TO 127.0.0.1:{nodes.primary}")
    assert code != 0 and "fenced" in text, text


def test_switchover_under_pgbench_has_no_client_errors(failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    install_schema(nodes)
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION,
                                 cluster_settings={"switchover_timeout": "5s"})
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), 10,
                      ignore=(psycopg.Error,))
    nodes.admin_psql(nodes.primary, "CREATE TABLE promote_log (port int)", dbname="payam_db",
                     user="payam")
    nodes.wait_replayed()
    result = {}
    bench = threading.Thread(target=lambda: result.update(run=run_pgbench(
        port, ["-n", "-T", "12", "-c", "4", "-j", "2", "-P", "1"])))
    bench.start()
    # Beside pgbench, writers whose commits are timed one by one: the longest gap between two
    # commits is the longest time writes stood still.
    writers = Writers(port)
    writers.start()
    try:
        time.sleep(2.5)
        switch_over(nodes, pgplex)
        # The switchover ends while pgbench still runs: at most switchover_timeout of draining.
        assert wait_until(lambda: "after the switchover began" in pgplex.log(), 9), pgplex.log()
        bench.join(60)
    finally:
        writers.stop()
    times = sorted(t for t, _ in writers.commits)
    stall = max(b - a for a, b in zip(times, times[1:]))
    print(f"\nswitchover under pgbench: longest stall of writes {stall:.2f} s, "
          f"{len(writers.errors)} writer errors, {writers.closed} connections lost"
          f"\n{result['run'].stderr[-1200:]}")
    assert not writers.errors and writers.closed == 0, writers.errors
    assert writers.first_commit_on(nodes.replica1, 0), "no write reached the new primary"
    print("\n".join(line for line in pgplex.log().splitlines() if "switchover" in line
                    or "is primary" in line))
    assert_pgbench_clean(result["run"])
    assert landing(port) == (nodes.replica1, False)
