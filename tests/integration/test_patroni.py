"""pgplex in front of a real Patroni cluster: Debian's patroni 3.0.2 with one etcd 3.4
member, three Patroni-managed PostgreSQL 15 nodes on 127.0.0.1-3 (patroni_cluster.py).
pgplex's cluster has patroni_port set, so its monitor asks GET /primary, /replica and /sync
of each node's REST API, and follows what Patroni decides:

  - writes go to Patroni's leader and reads to its replicas (SHOW NODES: source patroni);
  - a planned `patronictl switchover` under pgbench load through the primary service: no
    client connection is lost, the longest stall and the errors are measured and printed,
    writes afterwards go to the new leader;
  - `patronictl failover` to a named candidate under pgbench load and a client writing
    every 50 ms: no client connection lost, every write on the old leader and then on the
    candidate, never on the other node nor the old leader again; the outage is printed;
  - Patroni's tags: nofailover changes no routing; a noloadbalance member (503 on /replica,
    /read-only and /sync, so HAProxy's Pigsty checks give it no service) gets no reads from
    the replica service, yet stays a healthy replica in SHOW NODES;
  - synchronous_mode: the standby service follows the node Patroni answers 200 on /sync
    for, and falls back to the primary without one;
  - maintenance mode (patronictl pause) and the leader's PostgreSQL stopped: Patroni drops
    the leader key and promotes nobody; neither does pgplex: writes wait, fail with 57P03
    after failover_wait_timeout, and after patronictl resume run on the node Patroni made
    primary;
  - a crashed leader (Patroni and its postmaster SIGKILLed: the leader key expires after
    ttl and Patroni promotes a replica): idle clients keep their connections, a write
    issued during the outage waits in pgplex (failover_wait_timeout) and runs on the node
    Patroni chose, and so do every later write.

One Patroni cluster serves the module, in file order; each test leaves it healthy, with its
tags and DCS settings as it found them, except the last, which crashes a node. If the
packages are missing the module tries `apt-get install patroni etcd-server etcd-client`
(as root) and skips, saying what is missing, if that fails.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import types

import psycopg
import pytest

from conftest import (FAST_CHECKS, PASSWORDS, PgplexFactory, connect, next_free_port,
                      pgbench_command, pgbench_env, wait_until)
from test_admin_clusters import show
from test_limits import Background

import patroni_cluster as pc

_missing = pc.missing_packages()
if _missing:
    _missing = pc.try_install()
if _missing:
    pytest.skip(f"Patroni tests need Debian's patroni, etcd-server and PostgreSQL 15 "
                f"(apt-get install patroni etcd-server etcd-client failed or was not "
                f"possible); missing: {_missing}", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("hard_timeout")

FOLLOW_SECONDS = 10
# Long enough for a crashed leader's key to expire (ttl) and a replica to be promoted.
FAILOVER_WAIT = "30s"
BENCH_CLIENTS = 4
BENCH_SECONDS = 15
IDLE_CLIENTS = 4


@pytest.fixture(scope="module")
def patroni():
    directory = pc.make_directory()
    cluster = pc.PatroniCluster(directory)
    try:
        cluster.start()
        cluster.setup_databases()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pgplex(patroni, tmp_path, request):
    """pgplex with the Patroni nodes as [clusters.c1] (patroni_port set), a primary, a
    replica and a standby service, transaction pooling, failover_wait_timeout long enough
    for a failover (or the test's indirect parameter)."""
    factory = PgplexFactory(tmp_path, request)
    table = {"nodes": [node.addr for node in patroni.nodes],
             "monitor_user": "postgres", "monitor_password": pc.SUPERUSER_PASSWORD,
             "monitor_dbname": "postgres", **FAST_CHECKS,
             "patroni_port": patroni.rest_port,
             "services": {"primary": {"port": next_free_port()},
                          "replica": {"port": next_free_port()},
                          "standby": {"port": next_free_port()}}}
    # PgplexFactory wants a "cluster" for its default aliases: payam_db on node 1's port
    # (the services route it to their node); payam_dw's role does not exist here.
    anchor = types.SimpleNamespace(port=patroni.pg_port, scram_secrets={})
    try:
        yield factory.start(anchor, fallback=False, databases={"payam_dw": None},
                            users={u: PASSWORDS[u] for u in ("payam", "app")},
                            settings={"pool_mode": "transaction", "admin_users": ["payam"],
                                      "failover_wait_timeout": getattr(request, "param",
                                                                       FAILOVER_WAIT)},
                            clusters={"c1": table}, query_wait_timeout="30s")
    finally:
        factory.finish()


def nodes_seen(pgplex):
    """node → its SHOW NODES row."""
    return {row["node"]: row for row in show(pgplex.port, "SHOW NODES")}


def pgplex_primary(pgplex):
    """The node pgplex routes writes to (SHOW CLUSTERS' primary), or None."""
    return show(pgplex.port, "SHOW CLUSTERS")[0]["primary"] or None


def follows(pgplex, patroni, leader):
    """True once pgplex sees leader as its only primary, every other living node as a
    replica, all from Patroni."""
    rows = nodes_seen(pgplex)
    return (rows[leader.addr]["role"] == "primary" and rows[leader.addr]["health"] == "up"
            and all(row["source"] == "patroni" for row in rows.values())
            and pgplex_primary(pgplex) == leader.addr)


def write(conn):
    """One autocommit insert; the address of the node that ran it."""
    return conn.execute("INSERT INTO writes DEFAULT VALUES RETURNING node").fetchone()[0]


def read_node(port):
    with connect(port, autocommit=True) as conn:
        return tuple(conn.execute(
            "SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone())


def open_idle_clients(port, count):
    clients = [connect(port, autocommit=True, application_name=f"idle-{i}")
               for i in range(count)]
    for conn in clients:
        write(conn)
    return clients


def test_writes_go_to_patronis_leader_and_reads_to_its_replicas(patroni, pgplex):
    leader = patroni.leader()
    assert leader is not None, patroni.patronictl("list").stdout
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    rows = nodes_seen(pgplex)
    assert set(rows) == {node.addr for node in patroni.nodes}, rows
    for node in patroni.nodes:
        row = rows[node.addr]
        assert row["source"] == "patroni", row
        assert row["health"] == "up", row
        assert row["role"] == ("primary" if node is leader else "replica"), row
    with connect(pgplex.service_port("primary"), autocommit=True) as conn:
        assert {write(conn) for _ in range(5)} == {leader.host}
    replicas = {node.host for node in patroni.nodes if node is not leader}
    landed = [read_node(pgplex.service_port("replica")) for _ in range(8)]
    assert {host for host, _ in landed} <= replicas, landed
    assert all(in_recovery for _, in_recovery in landed), landed


def transaction_log_stall(directory):
    """(longest gap between two successive transaction completions of the whole run, the
    longest single transaction), in seconds, from pgbench's -l logs."""
    ends, longest = [], 0.0
    for path in directory.glob("pgbench_log*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            # client_id transaction_no time script_no time_epoch time_us
            if len(fields) < 6 or fields[2] == "failed":
                continue
            ends.append(int(fields[4]) + int(fields[5]) / 1e6)
            longest = max(longest, int(fields[2]) / 1e6)
    ends.sort()
    gap = max((b - a for a, b in zip(ends, ends[1:])), default=0.0)
    return gap, longest


LOST = ("server closed the connection", "connection to server", "terminating connection",
        "could not receive data", "no connection to the server")


def test_a_planned_switchover_under_pgbench_loses_no_client_connection(
        patroni, pgplex, tmp_path):
    leader = patroni.leader()
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    candidate = next(node for node in patroni.nodes if node is not leader)
    port = pgplex.service_port("primary")
    idle = open_idle_clients(port, IDLE_CLIENTS)
    script = tmp_path / "insert.sql"
    script.write_text("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                      "VALUES (1, 1, 1, 1, clock_timestamp());\n\\sleep 20 ms\n")
    logs = tmp_path / "bench"
    logs.mkdir()
    command = pgbench_command(port, ["-n", "-c", str(BENCH_CLIENTS), "-j", "2", "-T",
                                     str(BENCH_SECONDS), "-P", "1", "-l", "-f", str(script)])
    bench = Background(lambda: subprocess.run(command, capture_output=True, text=True,
                                              timeout=BENCH_SECONDS + 60, env=pgbench_env(),
                                              cwd=logs))
    try:
        time.sleep(4)
        started = time.monotonic()
        switched = patroni.patronictl("switchover", "--leader", leader.name, "--candidate",
                                      candidate.name, "--force")
        switch_seconds = time.monotonic() - started
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert wait_until(lambda: patroni.leader() is candidate, 30, step=0.2), \
            patroni.patronictl("list").stdout
        patroni_done = time.time()
        assert wait_until(lambda: pgplex_primary(pgplex) == candidate.addr, FOLLOW_SECONDS), \
            show(pgplex.port, "SHOW NODES")
        assert bench.join(BENCH_SECONDS + 60), "pgbench did not finish"
        assert bench.error is None, bench.error
        result = bench.result
        output = result.stdout + result.stderr
        gap, longest = transaction_log_stall(logs)
        aborted = [line for line in output.splitlines() if "aborted in command" in line]
        in_flight = [line for line in aborted if "server connection failed" in line]
        read_only = [line for line in aborted if "read-only transaction" in line]
        processed = re.search(r"actually processed: (\d+)", output)
        print(f"\nSWITCHOVER patronictl took {switch_seconds:.2f}s; pgbench exit "
              f"{result.returncode}, processed {processed and processed.group(1)}, "
              f"clients aborted: {len(aborted)} of {BENCH_CLIENTS} ({len(in_flight)} with "
              f"a statement in flight on the old leader, {len(read_only)} sent to the new "
              f"leader before it left recovery); longest stall between two commits "
              f"{gap:.3f}s, longest transaction {longest:.3f}s")
        print("PGBENCH", output)
        # No client lost its connection to pgplex: whatever pgbench reports, it is never a
        # closed connection. A statement in flight on the old primary as Patroni stopped it
        # (fast shutdown) can fail; pgbench gives that client up, and nothing else fails.
        assert not any(text in output for text in LOST), output
        # pgbench gives up on a client at its first error. The one error pgplex can produce
        # here: 08006 for a statement in flight on the old leader when Patroni stopped it
        # (whether it ran is unknown, so pgplex cannot run it again). Never 25006 (read-only
        # transaction): a write is released to the new leader only once pgplex's own check
        # finds it out of recovery, though Patroni's GET /primary answers 200 before.
        assert not read_only, output
        assert sorted(in_flight) == sorted(aborted), output
        assert "failed transactions: 0 " in output, output
        # Writes go on, on the new leader, through the same pgplex connections.
        after = candidate.sql("SELECT count(*) FROM pgbench_history WHERE mtime > "
                              f"to_timestamp({patroni_done})", dbname="appdb")
        if len(aborted) < BENCH_CLIENTS:
            assert int(after) > 0, output
        for conn in idle:
            assert write(conn) == candidate.host
            assert not conn.closed
    finally:
        for conn in idle:
            conn.close()
    # And the old leader rejoined as a replica (pg_rewind or not).
    assert patroni.wait_healthy(60) is candidate
    rejoined = nodes_seen(pgplex)[leader.addr]
    print(f"SWITCHOVER old leader in SHOW NODES once rejoined: role {rejoined['role']}, "
          f"health {rejoined['health']}, fenced {rejoined['fenced']}")


def test_a_switchover_back_to_a_former_leader_is_followed(patroni, pgplex):
    # Under Patroni pgplex fences no former primary (Patroni rewinds and rejoins it): it
    # follows Patroni back to it, where it once fenced it until UNFENCE.
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    back = next(node for node in patroni.nodes if node is not leader)
    switched = patroni.patronictl("switchover", "--leader", leader.name, "--candidate",
                                  back.name, "--force")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert wait_until(lambda: patroni.leader() is back, 30, step=0.2)
    # Within pgplex's own life: back was a replica when it started, then primary; now
    # leader is fenced. Switch once more, to the fenced one.
    assert patroni.wait_healthy(60) is back
    switched = patroni.patronictl("switchover", "--leader", back.name, "--candidate",
                                  leader.name, "--force")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert wait_until(lambda: patroni.leader() is leader, 30, step=0.2)
    try:
        assert wait_until(lambda: pgplex_primary(pgplex) == leader.addr, FOLLOW_SECONDS), \
            show(pgplex.port, "SHOW NODES")
    finally:
        assert patroni.wait_healthy(60) is leader


class WriteProbe:
    """One client of the primary service writing every 50 ms (bounded in count and time):
    each write returns the node that ran it, its port and pg_is_in_recovery(), so a test sees
    where every write landed, in order. Errors are kept with when they happened."""

    INTERVAL, COUNT_MAX, SECONDS_MAX = 0.05, 1200, 60

    def __init__(self, port):
        self.conn = connect(port, autocommit=True, application_name="write-probe")
        self.writes = []  # (monotonic, host, port, in_recovery)
        self.errors = []  # (monotonic, message)
        self.stopping = False
        self.background = Background(self.run)

    def run(self):
        deadline = time.monotonic() + self.SECONDS_MAX
        for _ in range(self.COUNT_MAX):
            if self.stopping or time.monotonic() > deadline:
                break
            try:
                row = self.conn.execute(
                    "INSERT INTO writes DEFAULT VALUES RETURNING node, inet_server_port(), "
                    "pg_is_in_recovery()").fetchone()
                self.writes.append((time.monotonic(), *row))
            except psycopg.Error as error:
                self.errors.append((time.monotonic(), str(error).strip()))
                if self.conn.closed:
                    break
            time.sleep(self.INTERVAL)

    def stop(self):
        self.stopping = True
        assert self.background.join(30), "the write probe did not stop"
        self.conn.close()

    def longest_gap(self, since):
        """The longest time between two successful writes from `since` on, in seconds."""
        times = [since] + [at for at, *_ in self.writes if at >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def bench_writes(port, tmp_path, clients=BENCH_CLIENTS, seconds=BENCH_SECONDS):
    """pgbench through port in the background: autocommit inserts with 20 ms think time,
    one -l log per client in tmp_path/bench. Returns (Background, log directory)."""
    script = tmp_path / "insert.sql"
    script.write_text("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                      "VALUES (1, 1, 1, 1, clock_timestamp());\n\\sleep 20 ms\n")
    logs = tmp_path / "bench"
    logs.mkdir()
    command = pgbench_command(port, ["-n", "-c", str(clients), "-j", "2", "-T", str(seconds),
                                     "-P", "1", "-l", "-f", str(script)])
    bench = Background(lambda: subprocess.run(command, capture_output=True, text=True,
                                              timeout=seconds + 60, env=pgbench_env(),
                                              cwd=logs))
    return bench, logs


def test_a_patronictl_failover_to_a_named_candidate_is_followed_and_loses_no_connection(
        patroni, pgplex, tmp_path):
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    candidate, bystander = [node for node in patroni.nodes if node is not leader]
    port = pgplex.service_port("primary")
    idle = open_idle_clients(port, IDLE_CLIENTS)
    probe = WriteProbe(port)
    bench, logs = bench_writes(port, tmp_path)
    try:
        time.sleep(3)
        began = time.monotonic()
        moved = patroni.patronictl("failover", "--candidate", candidate.name, "--force")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert wait_until(lambda: patroni.leader() is candidate, 30, step=0.2), \
            patroni.patronictl("list").stdout
        assert wait_until(lambda: pgplex_primary(pgplex) == candidate.addr, FOLLOW_SECONDS), \
            show(pgplex.port, "SHOW NODES")
        assert bench.join(BENCH_SECONDS + 60), "pgbench did not finish"
        assert bench.error is None, bench.error
        time.sleep(0.5)
    finally:
        probe.stop()
    output = bench.result.stdout + bench.result.stderr
    gap, longest = transaction_log_stall(logs)
    aborted = [line for line in output.splitlines() if "aborted in command" in line]
    read_only = [line for line in aborted if "read-only transaction" in line]
    in_flight = [line for line in aborted if "server connection failed" in line]
    after = [(host, server_port, recovery) for at, host, server_port, recovery in probe.writes
             if at >= began]
    print(f"\nFAILOVER patronictl failover {leader.name} -> {candidate.name}: pgbench "
          f"clients aborted {len(aborted)} of {BENCH_CLIENTS} ({len(in_flight)} with a "
          f"statement in flight on the old leader as Patroni stopped it), longest stall "
          f"between two commits {gap:.3f}s, longest transaction {longest:.3f}s; write probe: "
          f"{len(probe.writes)} writes, longest gap after the failover began "
          f"{probe.longest_gap(began):.3f}s, errors {probe.errors}")
    print("PGBENCH", output)
    try:
        # No client lost its connection to pgplex, and no write went to a replica.
        assert not any(text in output for text in LOST), output
        assert not read_only, output
        # The known gap, as in the switchover: a statement in flight on the old leader when
        # Patroni stops it fails with 08006 (pgbench then gives that client up); no other.
        assert sorted(in_flight) == sorted(aborted), output
        assert "failed transactions: 0 " in output, output
        assert not probe.conn.closed or probe.stopping
        assert not any(any(text in message for text in LOST) for _, message in probe.errors)
        # Every write ran on a node out of recovery: the old leader until the failover
        # moved it, then the candidate Patroni was told to take, and never the bystander
        # nor the old leader again.
        assert all(not recovery for _, _, recovery in after), after
        hosts = [host for host, _, _ in after]
        assert set(hosts) <= {leader.host, candidate.host}, hosts
        assert candidate.host in hosts, hosts
        first = hosts.index(candidate.host)
        assert leader.host not in hosts[first:], hosts
        assert {server_port for _, server_port, _ in after} == {patroni.pg_port}
        for conn in idle:
            assert write(conn) == candidate.host
            assert not conn.closed
    finally:
        for conn in idle:
            conn.close()
    assert patroni.wait_healthy(60) is candidate


def replica_hosts(port, reads=12):
    """Where `reads` fresh connections to port ran SELECT: (host, in_recovery) pairs."""
    return [read_node(port) for _ in range(reads)]


def test_patroni_tags_noloadbalance_keeps_reads_off_a_member_and_nofailover_does_not(
        patroni, pgplex):
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    tagged, other = [node for node in patroni.nodes if node is not leader]
    replica_port = pgplex.service_port("replica")
    try:
        # nofailover alone changes nothing for reads: Patroni's /replica (and /read-only,
        # Pigsty's replica check) still answer 200 on it.
        tagged.set_tags(nofailover=True)
        assert wait_until(lambda: tagged.member_tags().get("nofailover") is True, 15)
        assert tagged.status("/replica") == 200
        time.sleep(1)
        landed = replica_hosts(replica_port)
        assert {host for host, _ in landed} == {tagged.host, other.host}, landed
        # Patroni refuses it as a failover candidate; pgplex keeps the leader.
        refused = patroni.patronictl("failover", "--candidate", tagged.name, "--force")
        assert refused.returncode != 0 or patroni.leader() is leader, refused.stdout
        assert patroni.leader() is leader
        assert pgplex_primary(pgplex) == leader.addr
        # noloadbalance: /replica and /read-only answer 503 on it, so HAProxy's replica
        # service would not send it reads; nor does pgplex's. It stays a healthy replica.
        tagged.set_tags(noloadbalance=True)
        assert wait_until(lambda: tagged.status("/replica") == 503, 15)
        assert tagged.status("/read-only") == 503
        assert wait_until(lambda: not any(host == tagged.host
                                          for host, _ in replica_hosts(replica_port, 4)),
                          FOLLOW_SECONDS), show(pgplex.port, "SHOW NODES")
        landed = replica_hosts(replica_port)
        assert {host for host, _ in landed} == {other.host}, landed
        assert all(in_recovery for _, in_recovery in landed), landed
        row = nodes_seen(pgplex)[tagged.addr]
        print(f"\nTAGS noloadbalance member in SHOW NODES: {row}")
        # Up, a replica, and out of load balancing: not down, as HAProxy would show it.
        assert (row["health"], row["role"], row["noloadbalance"]) == ("up", "replica", "t"), row
        with connect(pgplex.service_port("primary"), autocommit=True) as conn:
            assert write(conn) == leader.host
    finally:
        tagged.set_tags(nofailover=False, noloadbalance=False)
    assert wait_until(lambda: tagged.status("/replica") == 200, 15)
    assert wait_until(lambda: tagged.host in {host for host, _ in replica_hosts(replica_port)},
                      FOLLOW_SECONDS), show(pgplex.port, "SHOW NODES")
    assert nodes_seen(pgplex)[tagged.addr]["noloadbalance"] == "f"


def sync_standbys(patroni):
    return [node for node in patroni.nodes if node.status("/sync") == 200]


def test_the_standby_service_follows_patronis_sync_standby(patroni, pgplex):
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    standby_port = pgplex.service_port("standby")
    # Without synchronous_mode no node answers 200 on /sync: the standby service falls
    # back to the primary, as Pigsty's (backup: the primary).
    assert sync_standbys(patroni) == []
    assert {read_node(standby_port) for _ in range(4)} == {(leader.host, False)}
    try:
        edited = patroni.patronictl("edit-config", "--set", "synchronous_mode=true", "--force")
        assert edited.returncode == 0, edited.stdout + edited.stderr
        assert wait_until(lambda: len(sync_standbys(patroni)) == 1, 30, step=0.5), \
            patroni.patronictl("list").stdout
        sync = sync_standbys(patroni)[0]
        assert sync is not leader
        assert wait_until(lambda: read_node(standby_port) == (sync.host, True), FOLLOW_SECONDS), \
            show(pgplex.port, "SHOW NODES")
        landed = {read_node(standby_port) for _ in range(8)}
        assert landed == {(sync.host, True)}, landed
        assert leader.sql("SELECT application_name FROM pg_stat_replication "
                          "WHERE sync_state = 'sync'") == sync.name
        # Patroni moves the sync standby (nosync on the current one): the service follows.
        sync.set_tags(nosync=True)
        other = next(node for node in patroni.nodes if node not in (leader, sync))
        assert wait_until(lambda: sync_standbys(patroni) == [other], 30, step=0.5), \
            patroni.patronictl("list").stdout
        assert wait_until(lambda: read_node(standby_port) == (other.host, True),
                          FOLLOW_SECONDS), show(pgplex.port, "SHOW NODES")
        assert {read_node(standby_port) for _ in range(8)} == {(other.host, True)}
    finally:
        for node in patroni.nodes:
            if node.tags.get("nosync"):
                node.set_tags(nosync=False)
        edited = patroni.patronictl("edit-config", "--set", "synchronous_mode=false", "--force")
        assert edited.returncode == 0, edited.stdout + edited.stderr
    assert wait_until(lambda: sync_standbys(patroni) == [], 30, step=0.5)
    assert wait_until(lambda: read_node(standby_port) == (leader.host, False), FOLLOW_SECONDS)


# Long enough for Patroni to pick a leader once resumed (a few loop_waits), short enough
# that a write held while paused runs out in the test.
PAUSE_FAILOVER_WAIT_SECONDS = 10


@pytest.mark.parametrize("pgplex", [f"{PAUSE_FAILOVER_WAIT_SECONDS}s"], indirect=True)
def test_in_maintenance_mode_a_stopped_leader_is_not_replaced_and_writes_wait_for_it(
        patroni, pgplex):
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    replicas = [node for node in patroni.nodes if node is not leader]
    idle = open_idle_clients(pgplex.service_port("primary"), 1)[0]
    reader = connect(pgplex.service_port("replica"), autocommit=True)
    held = probe = None
    paused = patroni.patronictl("pause", "--wait")
    try:
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert write(idle) == leader.host  # paused, Patroni still leads: writes go on
        probe = WriteProbe(pgplex.service_port("primary"))
        assert wait_until(lambda: len(probe.writes) >= 3, 10), probe.errors
        stopped = leader.pg_ctl_stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        stopped_at = time.monotonic()
        # Paused, Patroni drops the leader key of a leader whose PostgreSQL is not running
        # and promotes nobody: no node answers 200 on /primary, as HAProxy's checks would
        # see it, and pgplex has no primary to send writes to.
        assert wait_until(lambda: leader.status("/health") == 503, 10)
        assert wait_until(lambda: all(node.status("/primary") != 200
                                      for node in patroni.nodes), 10)
        assert wait_until(lambda: pgplex_primary(pgplex) is None, FOLLOW_SECONDS), \
            show(pgplex.port, "SHOW NODES")
        # A write waits failover_wait_timeout for a primary, then fails with a clear error
        # (57P03), its connection kept. Nobody promotes meanwhile: not Patroni (paused), not
        # pgplex. Reads go on.
        held = Background(lambda: write(idle))
        assert held.join(PAUSE_FAILOVER_WAIT_SECONDS + 10), "the held write never ended"
        assert isinstance(held.error, psycopg.Error), (held.result, held.error)
        assert held.error.sqlstate == "57P03", held.error
        assert "no primary" in str(held.error), held.error
        assert held.elapsed() >= PAUSE_FAILOVER_WAIT_SECONDS - 1, held.elapsed()
        assert not idle.closed
        assert pgplex_primary(pgplex) is None
        assert all(node.status("/primary") != 200 for node in patroni.nodes)
        for node in replicas:
            assert node.sql("SELECT pg_is_in_recovery()") == "t"
        assert reader.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        # This one waits across the resume.
        held = Background(lambda: write(idle))
        time.sleep(0.5)
    finally:
        resumed_at = time.monotonic()
        resumed = patroni.patronictl("resume", "--wait")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    try:
        # Patroni manages again: it promotes a node (or starts PostgreSQL on the old
        # leader), and the held write runs there, on the node Patroni made primary.
        assert held.join(PAUSE_FAILOVER_WAIT_SECONDS + 10), "the held write never ended"
        new_leader = patroni.leader()
        print(f"\nPAUSE leader {leader.name} stopped while paused; after resume Patroni's "
              f"leader is {new_leader and new_leader.name}; the write held across the "
              f"resume ran {held.finished_at - resumed_at:.2f}s after patronictl resume began: "
              f"{held.result or held.error}")
        assert held.error is None, held.error
        assert new_leader is not None and held.result == new_leader.host
        assert write(idle) == new_leader.host
        assert not idle.closed
        assert wait_until(lambda: probe.writes[-1][1] == new_leader.host, 10), probe.errors
    finally:
        if probe is not None:
            probe.stop()
        idle.close()
        reader.close()
    # Every write ran on the old leader before it stopped, or on the new one after resume;
    # those issued meanwhile waited in pgplex, and failed only by failover_wait_timeout. The
    # known gap: a statement in flight as pg_ctl stopped the old leader fails with 08006.
    after = [host for at, host, _, _ in probe.writes if at >= stopped_at]
    in_flight = [message for _, message in probe.errors
                 if "server connection failed during the statement" in message]
    print(f"PAUSE write probe: {len(probe.writes)} writes, longest gap "
          f"{probe.longest_gap(stopped_at):.2f}s, errors: {len(in_flight)} in flight as the "
          f"leader stopped, {len(probe.errors) - len(in_flight)} by failover_wait_timeout")
    assert set(after) == {new_leader.host}, after
    assert len(in_flight) <= 1, probe.errors
    assert all("no primary" in message for _, message in probe.errors
               if message not in in_flight), probe.errors
    assert patroni.wait_healthy(60) is new_leader


KILLED_POSTMASTER_PROBES = 8


def test_a_leader_whose_postmaster_is_killed_gets_no_write_while_patroni_restarts_it_read_only(
        patroni, pgplex):
    # kill -9 of the leader's postmaster alone: Patroni, alive and holding the leader key,
    # restarts PostgreSQL read-only ("starting as readonly because i had the session lock")
    # and promotes it a moment later, answering 200 on /primary all along. Writes waiting in
    # pgplex meanwhile must not be sent to it while it is read-only (25006); they wait and
    # run once it is promoted. Found by bench/failover.py.
    leader = patroni.wait_healthy(60)
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    probes = [WriteProbe(pgplex.service_port("primary"))
              for _ in range(KILLED_POSTMASTER_PROBES)]
    try:
        assert wait_until(lambda: all(len(probe.writes) >= 3 for probe in probes), 10), \
            [probe.errors for probe in probes]
        postmaster = leader.postmaster_pid()
        killed = time.monotonic()
        os.kill(postmaster, signal.SIGKILL)
        assert wait_until(lambda: leader.postmaster_pid() not in (None, postmaster)
                          and patroni.leader() is leader, 40, step=0.2), \
            patroni.patronictl("list").stdout
        assert wait_until(lambda: all(probe.writes[-1][0] > killed + 0.5 for probe in probes),
                          40), [probe.errors for probe in probes]
        time.sleep(0.5)
    finally:
        for probe in probes:
            probe.stop()
    errors = [message for probe in probes for _, message in probe.errors]
    gaps = [probe.longest_gap(killed) for probe in probes]
    print(f"\nPOSTMASTER killed on {leader.name}; Patroni restarted and promoted it; "
          f"{KILLED_POSTMASTER_PROBES} write probes: longest gap {max(gaps):.2f}s, errors "
          f"{errors}")
    # The known gap only: a write in flight on the leader as its postmaster died (08006).
    assert not [message for message in errors if "read-only transaction" in message], errors
    assert all("server connection failed during the statement" in message
               for message in errors), errors
    assert len(errors) <= KILLED_POSTMASTER_PROBES, errors
    for probe in probes:
        assert {host for at, host, _, _ in probe.writes if at > killed} == {leader.host}
    assert patroni.wait_healthy(60) is leader


def test_a_crashed_leader_is_replaced_by_patroni_and_pgplex_follows_without_losing_clients(
        patroni, pgplex):
    leader = patroni.leader()
    assert leader is not None
    assert wait_until(lambda: follows(pgplex, patroni, leader), FOLLOW_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    port = pgplex.service_port("primary")
    idle = open_idle_clients(port, IDLE_CLIENTS)
    reader = connect(pgplex.service_port("replica"), autocommit=True)
    survivors = [node for node in patroni.nodes if node is not leader]
    try:
        crashed = time.monotonic()
        leader.kill()
        assert wait_until(lambda: pgplex_primary(pgplex) is None, FOLLOW_SECONDS), \
            "pgplex never saw the primary go"
        # A write now has no primary to go to: it waits in pgplex for the one Patroni picks.
        held = Background(lambda: write(idle[0]))
        # Reads go on meanwhile.
        assert reader.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        new_leader = wait_until(lambda: patroni.leader(alive=survivors), pc.TTL + 30,
                                step=0.2)
        assert new_leader, patroni.patronictl("list").stdout
        promoted = time.monotonic()
        assert held.join(40), "the held write never ran"
        # Not 25006: GET /primary answers 200 for the new leader before PostgreSQL has left
        # recovery, and pgplex waits for its own check to find it promoted.
        assert held.error is None, held.error
        outage = held.finished_at - crashed
        print(f"\nCRASH leader {leader.name} killed; Patroni promoted {new_leader.name} "
              f"after {promoted - crashed:.2f}s; the held write ran after {outage:.2f}s "
              f"on {held.result}")
        assert held.result == new_leader.host
        assert wait_until(lambda: pgplex_primary(pgplex) == new_leader.addr, FOLLOW_SECONDS)
        lost = 0
        for conn in idle:
            try:
                assert write(conn) == new_leader.host
            except psycopg.OperationalError:
                lost += 1
            lost += conn.closed
        print(f"CRASH idle clients: {IDLE_CLIENTS}, connections lost: {lost}")
        assert lost == 0
        # Never on another node: the other survivor is a replica and holds no new write
        # that the new leader lacks.
        other = next(node for node in survivors if node is not new_leader)
        assert other.sql("SELECT pg_is_in_recovery()") == "t" or \
            other.psql("SELECT 1").returncode != 0
        assert reader.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in idle:
            conn.close()
        reader.close()
