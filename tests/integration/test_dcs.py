"""pgplex appliances that decide through etcd ([dcs], issue 15 items 2 and 3).

A real etcd 3.4 (Debian's etcd-server, started here on 127.0.0.1 as patroni_cluster.py
starts it) and three pgplex appliances with [gossip] and [dcs] over a real PostgreSQL 15
primary + replicas. Appliance 0 reaches etcd through a TCP relay this test owns, which can cut
it off: its connections are dropped and new ones are accepted and left unanswered (a black
hole, as a partition looks), while the other two reach etcd directly. What is checked is what a
user sees:
- the decision (epoch and primary) lands in etcd under the prefix, with each appliance's key
  under its lease, and every appliance routes writes to that primary under that epoch;
- an appliance cut off from etcd stops routing writes within [dcs] ttl (a write through it
  gets SQLSTATE 57P03 and a message naming etcd once failover_wait_timeout runs out), while
  the others go on; once etcd answers again it routes writes again;
- a promotion (failover = "follow") is one new epoch in etcd that every appliance follows;
- with failover = "promote", the appliances promote one replica through etcd when the
  primary dies, under pgbench-like load on every appliance, and no client connection closes;
- with etcd's authentication on, the appliances log in with [dcs] username and
  password_file and write under the prefix their role may write;
- over https with client certificates ([dcs] cacert, cert, key), as Patroni's etcd3 does.
"""

import base64
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import psycopg
import pytest

import patroni_cluster
from conftest import connect, next_free_port, wait_until
from test_tls import certs  # noqa: F401 - the test PKI, a fixture
from test_gossip import (Writers, cluster_row, prepare_table, routes_writes_to, settle_on,
                         start_appliances, write_port)

pytestmark = pytest.mark.usefixtures("hard_timeout")

TTL = 2                        # [dcs] ttl: a cut-off appliance stops within this
FAILOVER_WAIT = "1500ms"       # how long a write waits for a primary before 57P03


def etcd_missing():
    if shutil.which(patroni_cluster.ETCD) or shutil.which("etcd"):
        return ""
    why = patroni_cluster.try_install()
    return "" if shutil.which(patroni_cluster.ETCD) else f"etcd cannot be installed: {why}"


def etcd_member(tmp_path, extra_args=None):
    """Starts one etcd member on 127.0.0.1: (Popen, its http client URL). extra_args(client
    port): more etcd flags."""
    missing = etcd_missing()
    if missing:
        pytest.skip(missing)
    client_port, peer_port = next_free_port(), next_free_port()
    directory = tmp_path / "etcd"
    directory.mkdir()

    def log_tail():
        try:
            return (directory / "etcd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""
    process = patroni_cluster.start_etcd(directory, "127.0.0.1", client_port, peer_port,
                                         log_tail,
                                         extra_args(client_port) if extra_args else ())
    return process, f"http://127.0.0.1:{client_port}"


@pytest.fixture
def etcd(tmp_path):
    """The client URL of one etcd member on 127.0.0.1, stopped (by PID) afterwards."""
    process, url = etcd_member(tmp_path)
    try:
        yield url
    finally:
        patroni_cluster.stop_etcd(process)


class Relay:
    """A TCP relay from 127.0.0.1:port to etcd, on threads of this test. cut() drops its
    connections and leaves new ones unanswered; heal() relays again. Bounded: every thread
    ends at close()."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.sockets = []
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                self.sockets.append(client)
            if self.cut_off.is_set():
                continue  # held open, never answered
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    def pump(self, source, sink):
        source.settimeout(0.2)
        while not self.closing.is_set() and not self.cut_off.is_set():
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def cut(self):
        self.cut_off.set()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets = []

    def heal(self):
        self.cut_off.clear()

    def close(self):
        self.closing.set()
        self.cut()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def relay(etcd):
    r = Relay(int(etcd.rsplit(":", 1)[1]))
    try:
        yield r
    finally:
        r.close()


def etcd_post(url, path, body, token=None):
    request = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Authorization": token} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def etcd_range(url, prefix, token=None):
    """{key: (value, lease)} of every key under prefix, read through etcd's JSON gateway."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    answer = etcd_post(url, "/v3/kv/range",
                       {"key": base64.b64encode(prefix.encode()).decode(),
                        "range_end": base64.b64encode(end.encode()).decode()}, token)
    return {base64.b64decode(kv["key"]).decode(): (json.loads(base64.b64decode(kv["value"])),
                                                   kv.get("lease"))
            for kv in answer.get("kvs", [])}


def start_dcs_appliances(make_cluster_pgplex, nodes, tmp_path, etcd, relay, prefix, **more):
    """Three appliances with [gossip] and [dcs] (more: other [dcs] keys); appliance 0
    reaches etcd through relay, when there is one."""
    def dcs(index):
        url = f"http://127.0.0.1:{relay.port}" if index == 0 and relay else etcd
        return {"dcs": {"etcd": [url], "prefix": prefix, "ttl": TTL, **more}}
    return start_appliances(make_cluster_pgplex, nodes, tmp_path, sections_for=dcs,
                            cluster_settings={"failover_wait_timeout": FAILOVER_WAIT})


def test_the_decision_lands_in_etcd_and_every_appliance_follows_it(
        failover_cluster, make_cluster_pgplex, tmp_path, etcd, relay):
    nodes = failover_cluster
    prepare_table(nodes)
    prefix = "/pgplex-it"
    started = time.monotonic()
    appliances, addresses = start_dcs_appliances(make_cluster_pgplex, nodes, tmp_path, etcd,
                                                 relay, prefix)
    epochs = settle_on(appliances, nodes.addr("primary"))
    settled = time.monotonic() - started
    stored = etcd_range(etcd, prefix + "/")
    decision, lease = stored[f"{prefix}/clusters/c1"]
    assert decision["primary"] == nodes.addr("primary"), stored
    assert decision["by"] in addresses, stored
    assert epochs == {decision["epoch"]}, (epochs, stored)
    assert lease is None, "the decision must outlive every lease"
    for address in addresses:
        value, lease = stored[f"{prefix}/appliances/{address}"]
        assert value == {"appliance": address} and int(lease) != 0, stored
    for appliance in appliances:
        assert write_port(appliance) == nodes.primary
    print(f"\ndcs: epoch {decision['epoch']} written by {decision['by']}; every appliance "
          f"routed writes {settled:.2f}s after the first started")

    # A promotion by hand (failover = "follow"): one new epoch in etcd, followed by all.
    nodes.pg_ctl("primary", "stop", "-m", "immediate")
    died = time.monotonic()
    nodes.promote("replica1")
    after = settle_on(appliances, nodes.addr("replica1"))
    moved = time.monotonic() - died
    decision, _ = etcd_range(etcd, prefix + "/")[f"{prefix}/clusters/c1"]
    assert decision["primary"] == nodes.addr("replica1")
    assert after == {decision["epoch"]} and decision["epoch"] > min(epochs), (after, decision)
    print(f"dcs: the promoted replica took writes on every appliance {moved:.2f}s after the "
          f"primary was stopped (epoch {decision['epoch']})")


def test_an_appliance_cut_off_from_etcd_stops_routing_writes_and_resumes(
        failover_cluster, make_cluster_pgplex, tmp_path, etcd, relay):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, _ = start_dcs_appliances(make_cluster_pgplex, nodes, tmp_path, etcd, relay,
                                         "/pgplex-cut")
    settle_on(appliances, nodes.addr("primary"))
    alone, others = appliances[0], appliances[1:]
    kept = connect(alone.service_port("primary"), autocommit=True)  # logged in before the cut
    relay.cut()
    cut = time.monotonic()
    assert wait_until(lambda: not routes_writes_to(alone, nodes.addr("primary")), 3 * TTL), \
        f"{cluster_row(alone)}\n{alone.log()[-2000:]}"
    stopped = time.monotonic() - cut
    assert stopped <= TTL + 1, f"still routing writes {stopped:.2f}s after losing etcd"
    # A login and a write through it are refused with a reason a user can act on (the
    # connection that was open stays open); the others go on.
    with pytest.raises(psycopg.OperationalError) as login:
        connect(alone.service_port("primary"), autocommit=True)
    assert "etcd" in str(login.value), str(login.value)
    with kept as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("INSERT INTO gossip_writes (via) VALUES (0)")
        error = raised.value
        assert error.sqlstate == "57P03", (error.sqlstate, str(error))
        assert "etcd" in str(error) + (error.diag.message_detail or ""), str(error)
        print(f"\ndcs: cut off from etcd, writes stopped after {stopped:.2f}s; a write got "
              f"{error.sqlstate}: {error.diag.message_primary} / {error.diag.message_detail}")
        for appliance in others:
            assert routes_writes_to(appliance, nodes.addr("primary")), cluster_row(appliance)
            assert write_port(appliance) == nodes.primary
        relay.heal()
        healed = time.monotonic()
        assert wait_until(lambda: routes_writes_to(alone, nodes.addr("primary")), 5 * TTL), \
            f"{cluster_row(alone)}\n{alone.log()[-2000:]}"
        resumed = time.monotonic() - healed
        # The same connection carries on.
        assert conn.execute("INSERT INTO gossip_writes (via) VALUES (0) RETURNING "
                            "inet_server_port()").fetchone()[0] == nodes.primary
    print(f"dcs: writes resumed {resumed:.2f}s after etcd answered again")


def test_the_appliances_promote_one_replica_through_etcd_and_keep_every_client(
        failover_cluster, make_cluster_pgplex, tmp_path, etcd):
    nodes = failover_cluster
    prepare_table(nodes)
    prefix = "/pgplex-promote"
    appliances, _ = start_appliances(
        make_cluster_pgplex, nodes, tmp_path,
        cluster_settings={"failover": "promote", "failover_wait_timeout": "20s"},
        sections_for=lambda index: {"dcs": {"etcd": [etcd], "prefix": prefix, "ttl": TTL}})
    (before,) = settle_on(appliances, nodes.addr("primary"))
    writers = Writers(appliances)
    try:
        time.sleep(2)
        died = time.monotonic()
        nodes.pg_ctl("primary", "stop", "-m", "immediate")
        assert wait_until(lambda: not nodes.in_recovery("replica1")
                          or not nodes.in_recovery("replica2"), 20,
                          ignore=(AssertionError, subprocess.SubprocessError)), \
            "no replica was promoted"
        promoted = "replica1" if not nodes.in_recovery("replica1") else "replica2"
        epochs = settle_on(appliances, nodes.addr(promoted))
        time.sleep(1)
    finally:
        writers.finish()
    other = "replica2" if promoted == "replica1" else "replica1"
    assert nodes.in_recovery(other), "two replicas were promoted"
    decision, _ = etcd_range(etcd, prefix + "/")[f"{prefix}/clusters/c1"]
    assert decision["primary"] == nodes.addr(promoted) and epochs == {decision["epoch"]}
    assert decision["epoch"] > before, (before, decision)
    assert writers.closed == 0, f"{writers.closed} client connections closed: {writers.errors}"
    assert set(writers.errors) <= {"08006", "25006", "57P01", "57P03"}, writers.errors
    outage = writers.first_commit[nodes.ports[promoted]] - died
    print(f"\ndcs promote: {promoted} promoted, epoch {before} -> {decision['epoch']}; "
          f"committed {writers.committed}; errors {writers.errors}; first commit on it "
          f"{outage:.2f}s after the primary died (ttl {TTL}s)")


def etcdctl(url, *args, user=None):
    command = [shutil.which("etcdctl"), f"--endpoints={url}", *args]
    if user:
        command.insert(2, f"--user={user}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=20,
                          env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, (command, done.stdout, done.stderr)


def test_appliances_log_in_to_etcd_with_a_username_and_password_file(
        failover_cluster, make_cluster_pgplex, tmp_path, etcd):
    if not shutil.which("etcdctl"):
        pytest.skip("etcdctl (Debian's etcd-client) is not installed")
    nodes = failover_cluster
    prefix = "/pgplex-auth"
    etcdctl(etcd, "user", "add", "root:root-secret")
    etcdctl(etcd, "user", "add", "pgplex:pgplex-secret")
    etcdctl(etcd, "role", "add", "pgplex")
    etcdctl(etcd, "role", "grant-permission", "pgplex", "--prefix=true", "readwrite",
            prefix + "/")
    etcdctl(etcd, "user", "grant-role", "pgplex", "pgplex")
    etcdctl(etcd, "auth", "enable")
    password = tmp_path / "etcd.pass"
    password.write_text("pgplex-secret\n")
    password.chmod(0o600)
    appliances, addresses = start_dcs_appliances(
        make_cluster_pgplex, nodes, tmp_path, etcd, None, prefix, username="pgplex",
        password_file=str(password))
    epochs = settle_on(appliances, nodes.addr("primary"))
    token = etcd_post(etcd, "/v3/auth/authenticate",
                      {"name": "root", "password": "root-secret"})["token"]
    stored = etcd_range(etcd, prefix + "/", token)
    decision, _ = stored[f"{prefix}/clusters/c1"]
    assert decision["primary"] == nodes.addr("primary") and epochs == {decision["epoch"]}
    assert all(f"{prefix}/appliances/{a}" in stored for a in addresses), stored


def test_appliances_reach_etcd_over_https_with_a_client_certificate(
        failover_cluster, make_cluster_pgplex, tmp_path, certs):  # noqa: F811
    nodes = failover_cluster
    https_port = next_free_port()
    # Plain http on the member's client port for the health check and for reading here; the
    # appliances use https, verifying etcd with the test CA and showing a client certificate.
    process, plain = etcd_member(tmp_path, lambda client_port: (
        "--listen-client-urls",
        f"http://127.0.0.1:{client_port},https://127.0.0.1:{https_port}",
        "--cert-file", certs["server.crt"], "--key-file", certs["server.key"],
        "--trusted-ca-file", certs["ca.crt"], "--client-cert-auth"))
    try:
        prefix = "/pgplex-tls"
        appliances, _ = start_dcs_appliances(
            make_cluster_pgplex, nodes, tmp_path, f"https://127.0.0.1:{https_port}", None,
            prefix, cacert=certs["ca.crt"], cert=certs["client.crt"], key=certs["client.key"])
        epochs = settle_on(appliances, nodes.addr("primary"))
        decision, _ = etcd_range(plain, prefix + "/")[f"{prefix}/clusters/c1"]
        assert decision["primary"] == nodes.addr("primary") and epochs == {decision["epoch"]}
    finally:
        patroni_cluster.stop_etcd(process)
