#!/usr/bin/python3
"""bench/failover.py: HAProxy + Patroni next to pgplex + Patroni, on one real Patroni cluster,
through a planned switchover, a patronictl failover and crashes.

One cluster (tests/integration/patroni_cluster.py, imported, not copied: one etcd 3.4 member
and three Patroni 3.0.2-managed PostgreSQL 15 nodes, here on 127.0.0.41-43 so that it never
meets the test suite's 127.0.0.1-3) is fronted at once by
  - HAProxy configured as Pigsty configures it (reference 002: `option httpchk`,
    `http-check send meth OPTIONS uri /primary` (/read-only for the replica service),
    `default-server inter 3s fastinter 1s downinter 5s rise 3 fall 3 on-marked-down
    shutdown-sessions slowstart 30s maxconn 3000 maxqueue 128 weight 100`, `check port` =
    Patroni's REST port), its servers being the PostgreSQL ports themselves (Pigsty's
    `dest: postgres`; with its default `dest: pgbouncer` a PgBouncer sits between);
  - pgplex with `patroni_port`, a primary and a replica service, transaction pooling and
    its default checks and timeouts (failover_wait_timeout 30 s, switchover hold).

Each scenario runs the same load through HAProxy's primary port and pgplex's primary
service AT THE SAME TIME, so both see the very same event:
  - pgbench, `-c 8 -j 2`, an autocommit INSERT and 10 ms think time, no retries (pgbench
    gives a client up at its first error), `-T` seconds, `-l` logs: the longest time
    without a commit (aborted clients do not come back, so a run whose clients all
    aborted stalls until its end);
  - 8 psycopg clients, each writing every 50 ms and reconnecting (every 100 ms) when its
    connection is broken, as an application would: connections lost, errors by SQLSTATE,
    the longest gap between two successful writes of one client, and writes on a wrong
    node (any node but the leader before the event and Patroni's leader after it; on the
    old leader after the first write on the new one).
The scenarios: `switchover` (patronictl switchover to a replica), `failover` (patronictl
failover --candidate), `postmaster` (kill -9 of the leader's postmaster alone: Patroni,
alive, restarts it in place), `crash` (kill -9 of the leader's Patroni and postmaster: the
leader key expires after ttl 10 s and Patroni promotes a replica).

Run as root (Patroni runs as postgres): `make bench-failover` or
`/usr/bin/python3 bench/failover.py --pgplex build/pgplex`. Ports 17500-17551 by default
(--port-base). Every process it starts is stopped by PID at the end, the cluster's
directory removed. The table is printed and written to bench/results/failover-<date>.txt.
"""

import argparse
import collections
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import psycopg  # noqa: E402

import conftest  # noqa: E402
import patroni_cluster as pc  # noqa: E402
from conftest import PASSWORDS, PG_BIN, clean_env, wait_until  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
USER, DBNAME = "payam", "payam_db"
# Pigsty's per-server options, verbatim (reference 002, `options:` of a service).
PIGSTY_SERVER_OPTIONS = ("inter 3s fastinter 1s downinter 5s rise 3 fall 3 "
                         "on-marked-down shutdown-sessions slowstart 30s maxconn 3000 "
                         "maxqueue 128 weight 100")
WRITE_SQL = ("INSERT INTO writes DEFAULT VALUES "
             "RETURNING node, extract(epoch FROM at)::float8")
CLIENT_INTERVAL_SECONDS = 0.05
RECONNECT_INTERVAL_SECONDS = 0.1
READY_SECONDS = 90          # for HAProxy and pgplex to route to Patroni's leader
HEALTHY_SECONDS = 120       # for the cluster to have a leader and two streaming replicas
OVERALL_SECONDS = 1800      # the whole run; SIGALRM ends it (and cleans up) after that
LOST = ("server closed the connection", "connection to server", "terminating connection",
        "could not receive data", "no connection to the server", "SSL SYSCALL",
        "connection not open", "perhaps the backend died")
TARGETS = ("haproxy", "pgplex")
SCENARIOS = ("switchover", "failover", "postmaster", "crash")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- processes -------------------------------------------------------------------------


class HAProxy:
    """One haproxy -db (foreground) process with Pigsty's primary and replica services."""

    def __init__(self, directory, cluster, primary_port, replica_port, leader):
        self.dir = Path(directory)
        self.config_path = self.dir / "haproxy.cfg"
        self.log_path = self.dir / "haproxy.log"
        self.socket_path = self.dir / "haproxy.sock"
        self.cluster = cluster
        self.primary_port, self.replica_port = primary_port, replica_port
        self.leader = leader  # the primary when rendered: the replica service's backup
        self.process = None

    def render(self):
        def servers(backup_for_leader):
            lines = []
            for node in self.cluster.nodes:
                backup = " backup" if backup_for_leader and node is self.leader else ""
                lines.append(f"    server {node.name} {node.addr} check port "
                             f"{self.cluster.rest_port} weight 100{backup}")
            return lines

        def service(name, port, check, backup_for_leader):
            return [f"listen pg-{name}", f"    bind 127.0.0.1:{port}", "    mode tcp",
                    "    maxconn 5000", "    balance roundrobin", "    option httpchk",
                    "    option http-keep-alive",
                    f"    http-check send meth OPTIONS uri {check}",
                    "    http-check expect status 200",
                    f"    default-server {PIGSTY_SERVER_OPTIONS}",
                    *servers(backup_for_leader), ""]

        return "\n".join([
            "global", "    maxconn 5000", "    log stderr format iso local0 info",
            f"    stats socket {self.socket_path} mode 600 level admin", "",
            # Long client and server timeouts: an idle PostgreSQL session is not cut.
            "defaults", "    mode tcp", "    log global", "    option dontlognull",
            "    retries 3", "    timeout connect 3s", "    timeout queue 3s",
            "    timeout client 24h", "    timeout server 24h", "    timeout check 3s", "",
            *service("primary", self.primary_port, "/primary", False),
            *service("replica", self.replica_port, "/read-only", True)])

    def start(self):
        self.config_path.write_text(self.render())
        checked = subprocess.run([HAPROXY, "-c", "-f", str(self.config_path)],
                                 capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy -c failed:\n{checked.stdout}{checked.stderr}")
        log_file = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)],
                                            stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=log_file, start_new_session=True)
        finally:
            log_file.close()
        if not conftest.wait_for_tcp(self.primary_port, 10, self.process):
            raise RuntimeError(f"haproxy did not listen:\n{self.log()}")

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def servers_up(self, proxy):
        """Names of the servers of listen `proxy` that HAProxy has UP (show stat)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.socket_path))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return set()
        lines = data.decode(errors="replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            return set()
        header = lines[0][2:].split(",")
        up = set()
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == proxy and row.get("svname") not in ("FRONTEND", "BACKEND") \
                    and row.get("status", "").startswith("UP"):
                up.add(row["svname"])
        return up


def start_pgplex(binary, directory, cluster, admin_port, primary_port, replica_port):
    """pgplex on admin_port with the cluster (patroni_port) as [clusters.c1], its primary
    and replica services, transaction pooling, default checks and failover_wait_timeout."""
    settings = {
        "listen": [f"127.0.0.1:{admin_port}"], "workers": 2, "max_client_conn": 200,
        "pool_mode": "transaction", "default_pool_size": 20,
        "auth_type": "scram-sha-256", "auth_file": "userlist.txt",
        "server_reset_query": "DISCARD ALL", "admin_users": [USER],
    }
    databases = {DBNAME: {"host": cluster.nodes[0].host, "port": cluster.pg_port,
                          "user": USER, "password": PASSWORDS[USER],
                          "client_encoding": "UTF8", "datestyle": "ISO"}}
    pgplex = conftest.Pgplex(binary, directory, None, admin_port, settings, databases,
                             {USER: PASSWORDS[USER]})
    pgplex.clusters = {"c1": {
        "nodes": [node.addr for node in cluster.nodes], "monitor_user": "postgres",
        "monitor_password": pc.SUPERUSER_PASSWORD, "monitor_dbname": "postgres",
        "patroni_port": cluster.rest_port,
        "services": {"primary": {"port": primary_port}, "replica": {"port": replica_port}}}}
    pgplex.start()
    return pgplex


# ---- load ------------------------------------------------------------------------------


def error_key(error):
    """The SQLSTATE of an error, or `08006*` when libpq found the connection gone and no
    SQLSTATE came with it, or `connect` for a refused login attempt without one."""
    return error.sqlstate or "08006*"


class Writer(threading.Thread):
    """One psycopg client writing every 50 ms until its deadline, reconnecting when its
    connection breaks. Its writes are (monotonic, node, server epoch)."""

    def __init__(self, port, deadline, name):
        super().__init__(daemon=True, name=name)
        self.port, self.deadline = port, deadline
        self.writes = []
        self.errors = collections.Counter()
        self.connect_errors = collections.Counter()
        self.lost = 0
        self.started_at = None

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.port, dbname=DBNAME, user=USER,
                               password=PASSWORDS[USER], autocommit=True, connect_timeout=3,
                               application_name=self.name)

    def run(self):
        self.started_at = time.monotonic()
        conn = None
        while time.monotonic() < self.deadline:
            if conn is None:
                try:
                    conn = self.connect()
                except psycopg.Error as error:
                    self.connect_errors[error.sqlstate or "refused"] += 1
                    time.sleep(RECONNECT_INTERVAL_SECONDS)
                    continue
            try:
                node, epoch = conn.execute(WRITE_SQL).fetchone()
                self.writes.append((time.monotonic(), node, epoch))
            except psycopg.Error as error:
                self.errors[error_key(error)] += 1
                if conn.broken or conn.closed:
                    self.lost += 1
                    conn.close()
                    conn = None
                    continue
            time.sleep(CLIENT_INTERVAL_SECONDS)
        if conn is not None:
            conn.close()

    def longest_gap(self, end):
        times = [self.started_at] + [at for at, _, _ in self.writes] + [end]
        return max(b - a for a, b in zip(times, times[1:]))


class Load:
    """pgbench and the psycopg clients against one port, for `seconds`."""

    def __init__(self, target, port, directory, seconds, clients):
        self.target, self.port, self.seconds, self.clients = target, port, seconds, clients
        self.dir = Path(directory) / target
        self.dir.mkdir(parents=True)
        self.bench = None
        self.writers = []

    def start(self):
        script = self.dir / "insert.sql"
        script.write_text("INSERT INTO writes DEFAULT VALUES;\n\\sleep 10 ms\n")
        command = [str(PG_BIN / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                   USER, "-n", "-c", str(self.clients), "-j", "2", "-T", str(self.seconds),
                   "-P", "5", "-l", "-f", str(script), DBNAME]
        self.out = open(self.dir / "pgbench.out", "wb")
        self.started_wall = time.time()
        self.bench = subprocess.Popen(command, cwd=self.dir, stdin=subprocess.DEVNULL,
                                      stdout=self.out, stderr=subprocess.STDOUT,
                                      env=clean_env(PGPASSWORD=PASSWORDS[USER],
                                                    PGCONNECT_TIMEOUT=10))
        self.deadline = time.monotonic() + self.seconds
        self.writers = [Writer(self.port, self.deadline, f"{self.target}-writer-{i}")
                        for i in range(self.clients)]
        for writer in self.writers:
            writer.start()

    def stop(self):
        """Waits for pgbench and the writers (bounded); kills a pgbench that overruns."""
        try:
            self.bench.wait(max(1, self.deadline - time.monotonic()) + 45)
        except subprocess.TimeoutExpired:
            self.bench.kill()
            self.bench.wait(10)
        self.out.close()
        for writer in self.writers:
            writer.join(max(1, self.deadline - time.monotonic()) + 45)
        self.ended_monotonic = self.deadline

    def bench_output(self):
        return (self.dir / "pgbench.out").read_text(errors="replace")

    def bench_stall(self):
        """The longest time without a pgbench commit, from the start to the end of -T."""
        ends = []
        for path in self.dir.glob("pgbench_log*"):
            for line in path.read_text().splitlines():
                fields = line.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(fields) < 6 or fields[2] in ("failed", "skipped"):
                    continue
                ends.append(int(fields[4]) + int(fields[5]) / 1e6)
        times = [self.started_wall] + sorted(ends) + [self.started_wall + self.seconds]
        return max(b - a for a, b in zip(times, times[1:]))

    def result(self, old_host, new_host):
        output = self.bench_output()
        aborted = [line for line in output.splitlines() if "aborted in command" in line]
        bench_lost = [line for line in aborted if any(text in line for text in LOST)]
        processed = re.search(r"actually processed: (\d+)", output)
        failed = re.search(r"number of failed transactions: (\d+)", output)
        errors = collections.Counter()
        connect_errors = collections.Counter()
        for writer in self.writers:
            errors.update(writer.errors)
            connect_errors.update(writer.connect_errors)
        writes = sorted((epoch, node) for w in self.writers for _, node, epoch in w.writes)
        first_new = next((epoch for epoch, node in writes if node == new_host), None)
        wrong = [(epoch, node) for epoch, node in writes
                 if node not in (old_host, new_host)
                 or (node == old_host != new_host and first_new is not None
                     and epoch > first_new)]
        return {
            "lost": sum(w.lost for w in self.writers), "errors": errors,
            "connect_errors": connect_errors,
            "stall": max(w.longest_gap(self.ended_monotonic) for w in self.writers),
            "outage": merged_gap(self.writers, self.ended_monotonic),
            "writes": len(writes), "wrong": len(wrong),
            "nodes": collections.Counter(node for _, node in writes),
            "bench_aborted": len(aborted), "bench_lost": len(bench_lost),
            "bench_failed": int(failed.group(1)) if failed else None,
            "bench_processed": int(processed.group(1)) if processed else 0,
            "bench_stall": self.bench_stall(), "bench_exit": self.bench.returncode,
            "bench_aborts": aborted,
        }


def merged_gap(writers, end):
    """The longest time in which no writer wrote (the service's outage)."""
    start = min(w.started_at for w in writers)
    times = [start] + sorted(at for w in writers for at, _, _ in w.writes) + [end]
    return max(b - a for a, b in zip(times, times[1:]))


# ---- the bench -------------------------------------------------------------------------


def listen_free(address, port):
    """Nothing listens on address:port (a port in TIME_WAIT is free: pgplex and HAProxy
    bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class Bench:
    def __init__(self, args):
        self.args = args
        self.directory = None
        self.cluster = self.haproxy = self.pgplex = None
        self.loads = []  # every Load started: a pgbench still running is killed at cleanup

    def ports(self):
        base = self.args.port_base
        # The cluster takes 4 ports from base up (patroni_cluster skips ports still in
        # TIME_WAIT from a previous run); pgplex and HAProxy listen from base + 40.
        return {"pgplex": base + 40, "pgplex_primary": base + 41, "pgplex_replica": base + 42,
                "haproxy_primary": base + 50, "haproxy_replica": base + 51}

    def setup(self):
        ports = self.ports()
        for port in ports.values():
            if not listen_free("127.0.0.1", port):
                raise RuntimeError(f"port {port} is taken")
        self.directory = pc.make_directory()
        # patroni_cluster takes its ports from conftest's ledger: start it at our base.
        conftest._next_cluster_port[0] = self.args.port_base
        self.cluster = pc.PatroniCluster(self.directory)
        for node in self.cluster.nodes:
            node.host = f"127.0.0.{self.args.address_base + node.index}"
        c = self.cluster
        taken = [port for port in (c.pg_port, c.rest_port, c.etcd_port, c.etcd_peer_port)
                 if not self.args.port_base <= port < self.args.port_base + 40]
        if taken:
            raise RuntimeError(f"no 4 free ports in {self.args.port_base}-"
                               f"{self.args.port_base + 39}")
        for node in c.nodes:
            for port in (c.pg_port, c.rest_port):
                if not pc.address_free(node.host, port):
                    raise RuntimeError(f"{node.host}:{port} is taken")
        log(f"starting etcd and Patroni on {', '.join(n.host for n in c.nodes)} "
            f"(PostgreSQL :{c.pg_port}, REST :{c.rest_port}, etcd :{c.etcd_port}) in "
            f"{self.directory}")
        c.start()
        c.setup_databases()
        leader = c.leader()
        self.haproxy = HAProxy(self.directory, c, ports["haproxy_primary"],
                               ports["haproxy_replica"], leader)
        self.haproxy.start()
        pgplex_dir = Path(self.directory) / "pgplex"
        pgplex_dir.mkdir()
        self.pgplex = start_pgplex(self.args.pgplex, pgplex_dir, c, ports["pgplex"],
                                   ports["pgplex_primary"], ports["pgplex_replica"])
        log(f"HAProxy primary :{ports['haproxy_primary']}, replica :{ports['haproxy_replica']}"
            f"; pgplex primary :{ports['pgplex_primary']}, replica "
            f":{ports['pgplex_replica']}; leader {leader.name}")

    def cleanup(self):
        for load in self.loads:
            if load.bench is not None and load.bench.poll() is None:
                load.bench.kill()
                load.bench.wait(10)
        if self.pgplex is not None:
            try:
                self.pgplex.stop()
            except Exception as error:  # noqa: BLE001 - keep cleaning up
                log(f"stopping pgplex: {error}")
        if self.haproxy is not None:
            self.haproxy.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self.directory is not None:
            if self.args.keep:
                log(f"kept {self.directory}")
            else:
                shutil.rmtree(self.directory, ignore_errors=True)

    def lands_on(self, port):
        try:
            with psycopg.connect(host="127.0.0.1", port=port, dbname=DBNAME, user=USER,
                                 password=PASSWORDS[USER], autocommit=True,
                                 connect_timeout=3) as conn:
                return conn.execute(WRITE_SQL).fetchone()[0]
        except psycopg.Error:
            return None

    def ready(self, leader):
        """HAProxy has only the leader UP in pg-primary, and writes through both land on
        it."""
        ports = self.ports()
        return (self.haproxy.servers_up("pg-primary") == {leader.name}
                and self.lands_on(ports["haproxy_primary"]) == leader.host
                and self.lands_on(ports["pgplex_primary"]) == leader.host)

    def scenario(self, name, index=0):
        c = self.cluster
        leader = c.wait_healthy(HEALTHY_SECONDS)
        if not wait_until(lambda: self.ready(leader), READY_SECONDS, step=1):
            raise RuntimeError(f"HAProxy or pgplex never routed to {leader.name}: HAProxy "
                               f"UP {self.haproxy.servers_up('pg-primary')}")
        others = [node for node in c.nodes if node is not leader]
        candidate = others[0]
        ports = self.ports()
        loads = {"haproxy": Load("haproxy", ports["haproxy_primary"],
                                 Path(self.directory) / "runs" / f"{index}-{name}", self.args.seconds,
                                 self.args.clients),
                 "pgplex": Load("pgplex", ports["pgplex_primary"],
                                Path(self.directory) / "runs" / f"{index}-{name}", self.args.seconds,
                                self.args.clients)}
        self.loads += loads.values()
        haproxy_log_from = len(self.haproxy.log())
        event_wall = None
        log(f"{name}: leader {leader.name}; load through both for {self.args.seconds}s, "
            f"the event at {self.args.event_at}s")
        for load in loads.values():
            load.start()
        time.sleep(self.args.event_at)
        event_began, event_wall = time.monotonic(), time.time()
        if name == "switchover":
            done = c.patronictl("switchover", "--leader", leader.name, "--candidate",
                                candidate.name, "--force")
        elif name == "failover":
            done = c.patronictl("failover", "--candidate", candidate.name, "--force")
        elif name == "postmaster":
            postmaster = leader.postmaster_pid()
            os.kill(postmaster, signal.SIGKILL)
            done = None
        else:
            leader.kill()
            done = None
        if done is not None and done.returncode != 0:
            log(f"{name}: patronictl failed: {done.stdout}{done.stderr}")
        if name == "postmaster":
            # Patroni, alive, restarts it in place (its /primary answers 200 all along): the
            # leader is back once a new postmaster runs.
            wait_until(lambda: leader.postmaster_pid() not in (None, postmaster), 30, step=0.1)
        alive = [n for n in c.nodes if name != "crash" or n is not leader]
        new_leader = wait_until(lambda: c.leader(alive=alive), pc.TTL + 40, step=0.2)
        patroni_seconds = time.monotonic() - event_began
        for load in loads.values():
            load.stop()
        new_host = new_leader.host if new_leader else None
        results = {target: load.result(leader.host, new_host)
                   for target, load in loads.items()}
        shut = haproxy_events(self.haproxy.log()[haproxy_log_from:], event_wall)
        results["haproxy"]["events"] = shut
        log(f"{name}: Patroni's leader {new_leader and new_leader.name} after "
            f"{patroni_seconds:.1f}s; HAProxy DOWN events: {shut}")
        for target in TARGETS:
            log(f"  {target}: {describe(results[target])}")
            for line in results[target]["bench_aborts"][:3]:
                log(f"    pgbench: {line.strip()[:200]}")
        return {"scenario": name, "old": leader.name, "new": new_leader and new_leader.name,
                "patroni_seconds": patroni_seconds, **results}


def haproxy_events(text, since_wall):
    """pg-primary's servers marked DOWN (with the sessions on-marked-down shutdown-sessions
    closed then) and UP, in order: [(DOWN|UP, server, seconds after since_wall, sessions)].
    HAProxy writes each event twice (a [WARNING] and a log line): the log line, which has a
    timestamp, is the one read. Events before the event (the previous scenario's) are left
    out."""
    events = []
    # Only check results ("reason: ..."): not the end of a slowstart ("is UP." alone).
    for m in re.finditer(r"^(\S+) Server pg-primary/(\S+) is (DOWN|UP), reason:(.*)$", text,
                         re.M):
        try:
            at = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        except ValueError:
            continue
        sessions = re.search(r"(\d+) sessions active", m.group(4))
        if at >= since_wall:
            events.append((m.group(3), m.group(2), at - since_wall,
                           int(sessions.group(1)) if sessions else 0))
    return events


def describe(r):
    return (f"py: lost {r['lost']}, errors {dict(r['errors'])}, connect errors "
            f"{dict(r['connect_errors'])}, worst client gap {r['stall']:.2f}s, outage "
            f"{r['outage']:.2f}s, writes {r['writes']} {dict(r['nodes'])}, wrong {r['wrong']}; "
            f"pgbench: processed {r['bench_processed']}, aborted {r['bench_aborted']} "
            f"({r['bench_lost']} connection lost), failed {r['bench_failed']}, stall "
            f"{r['bench_stall']:.2f}s, exit {r['bench_exit']}")


def table(rows, args):
    head = (f"{'scenario':<11} {'proxy':<8} {'conns lost':>10} {'errors':<28} "
            f"{'stall s':>7} {'outage s':>8} {'wrong':>5}   {'pgbench aborted':>15} "
            f"{'stall s':>7}  HAProxy pg-primary events after the event")
    lines = [head, "-" * len(head)]
    for row in rows:
        for target in TARGETS:
            r = row[target]
            errors = ",".join(f"{k}:{v}" for k, v in sorted(r["errors"].items())) or "0"
            if r["connect_errors"]:
                errors += " +conn " + ",".join(
                    f"{k}:{v}" for k, v in sorted(r["connect_errors"].items()))
            shut = ""
            if target == "haproxy":
                shut = " ".join(f"{kind} {server} +{at:.1f}s" + (f" ({n} shut)" if kind == "DOWN"
                                                                 else "")
                                for kind, server, at, n in r["events"]) or "-"
            lines.append(
                f"{row['scenario']:<11} {target:<8} {r['lost']:>4} + {r['bench_lost']:<3}  "
                f"{errors:<28} {r['stall']:>7.2f} {r['outage']:>8.2f} {r['wrong']:>5}   "
                f"{r['bench_aborted']:>7} of {args.clients:<5} {r['bench_stall']:>7.2f}  {shut}")
        lines.append(f"{'':<11} Patroni: {row['old']} -> {row['new']}, leader seen after "
                     f"{row['patroni_seconds']:.1f}s")
    notes = [
        "",
        f"Load through both at once, {args.seconds}s, the event at {args.event_at}s: "
        f"{args.clients} psycopg clients writing every 50 ms (reconnecting every 100 ms "
        f"when broken) and pgbench -c {args.clients} -j 2 (INSERT, 10 ms think time, no "
        "retries).",
        "conns lost: psycopg connections broken + pgbench clients aborted on a lost "
        "connection. errors: psycopg errors by SQLSTATE (08006* = connection gone, no "
        "SQLSTATE); +conn: failed reconnection attempts.",
        "stall: the worst psycopg client's longest gap between two of its writes; outage: "
        "longest time no psycopg client wrote; wrong: writes on a node other than the "
        "leader of the moment (python clients).",
        "pgbench stall: longest time without a commit up to the end of -T (aborted clients "
        "never come back). HAProxy events: pg-primary servers marked DOWN (with the sessions "
        "on-marked-down shutdown-sessions closed then) and UP, seconds after the event.",
    ]
    return "\n".join(lines + notes) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pgplex", default=str(REPO / "build" / "pgplex"))
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--event-at", type=float, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port-base", type=int, default=17500)
    parser.add_argument("--address-base", type=int, default=40)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default="")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")
    if os.geteuid() != 0:
        sys.exit("bench/failover.py: run as root (Patroni and PostgreSQL run as postgres)")
    if not os.access(args.pgplex, os.X_OK):
        sys.exit(f"bench/failover.py: no pgplex binary at {args.pgplex}")
    missing = pc.missing_packages()
    if missing:
        missing = pc.try_install()
    if not os.access(HAPROXY, os.X_OK):
        subprocess.run(["apt-get", "install", "-y", "haproxy"], timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True)
    if missing or not os.access(HAPROXY, os.X_OK):
        sys.exit(f"bench/failover.py: missing {missing or HAPROXY}")

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}: cleaning up")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(OVERALL_SECONDS)
    bench = Bench(args)
    rows = []
    try:
        bench.setup()
        for index, name in enumerate(scenarios):
            rows.append(bench.scenario(name, index))
    finally:
        signal.alarm(0)
        bench.cleanup()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    text = (f"bench/failover.py, {stamp}, pgplex {args.pgplex}, HAProxy "
            f"{subprocess.run([HAPROXY, '-v'], capture_output=True, text=True).stdout.split()[2]}"
            f", Patroni 3.0.2, PostgreSQL 15, load average {os.getloadavg()[0]:.1f}\n\n"
            + table(rows, args))
    print("\n" + text)
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"failover-{stamp}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"written to {out}")


if __name__ == "__main__":
    main()
