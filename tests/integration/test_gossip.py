"""Three pgplex appliances that decide together by gossip ([gossip], issue 12 item 9).

Three pgplex processes over one real primary + two replicas, gossiping over UDP on
127.0.0.1, 127.0.0.2 and 127.0.0.3 under one shared key. What is checked is what a user sees:
- all three route writes to the same primary, under the same epoch;
- when the primary dies and a replica is promoted (by hand: failover = "follow"), all three
  move writes to it, under one new epoch, and no client connection is closed;
- an appliance cut off from the other two (they are SIGSTOPped) stops routing writes within
  its lease (they wait) while reads go on, and carries on once they are back; the two that
  still form a majority carry on while the third is stopped;
- datagrams that are not from an appliance with the key are dropped and counted;
- a CancelRequest sent to another appliance than the client's reaches the client's query.
Every pgplex stopped by a test is continued in a finally block before the fixture stops it.
"""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import (CANCEL_REQUEST_CODE, RawClient, ServerError, connect, message,
                      next_free_port, wait_until)
from test_admin_clusters import show

pytestmark = pytest.mark.usefixtures("hard_timeout")

ADMIN = {"admin_users": ["payam"], "pool_mode": "transaction"}
SERVICES = {"primary": {}, "replica": {}}
APPLIANCES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SETTLE_SECONDS = 15


def start_appliances(make_cluster_pgplex, nodes, tmp_path, cluster_settings=None, options=None,
                     sections_for=None, **gossip):
    """Three pgplex appliances over nodes, each listing the other two as peers. options:
    make_cluster_pgplex's, over this file's (SERVICES, ADMIN, ...); sections_for(index):
    more sections for appliance index ([dcs] in test_dcs.py)."""
    key = tmp_path / "gossip.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    addresses = [f"{host}:{next_free_port()}" for host in APPLIANCES]
    appliances = []
    for index, address in enumerate(addresses):
        table = {"listen": address, "peers": [a for a in addresses if a != address],
                 "key_file": str(key), **gossip}
        sections = {"gossip": table, **(sections_for(index) if sections_for else {})}
        chosen = {"services": SERVICES, "offline": (), "settings": ADMIN,
                  "query_wait_timeout": "30s", "cluster_settings": cluster_settings,
                  **(options or {})}
        appliances.append(make_cluster_pgplex(nodes, sections=sections, **chosen))
    return appliances, addresses


def cluster_row(appliance):
    rows = show(appliance.port, "SHOW CLUSTERS")
    assert len(rows) == 1, rows
    return rows[0]


def members(appliance):
    return {row["member"]: row for row in show(appliance.port, "SHOW MEMBERS")}


def routes_writes_to(appliance, node_addr):
    row = cluster_row(appliance)
    return row["writes"] == "routed" and row["primary"] == node_addr and row


def settle_on(appliances, node_addr):
    """Waits until every appliance routes writes to node_addr; returns their epochs."""
    for appliance in appliances:
        assert wait_until(lambda: routes_writes_to(appliance, node_addr), SETTLE_SECONDS,
                          ignore=(AssertionError,)), \
            f"pgplex {appliance.port} routes writes as {cluster_row(appliance)}, not to " \
            f"{node_addr}:\n{appliance.log()[-3000:]}"
    return {int(cluster_row(appliance)["epoch"]) for appliance in appliances}


def write_port(appliance, timeout=10):
    """The port of the node a write through appliance's primary service committed on."""
    with connect(appliance.service_port("primary"), autocommit=True,
                 options=f"-c statement_timeout={timeout * 1000}") as conn:
        return conn.execute("INSERT INTO gossip_writes (via) VALUES (%s) "
                            "RETURNING inet_server_port()", (appliance.port,)).fetchone()[0]


class Writers:
    """Two clients per appliance writing through its primary service on kept connections,
    in a bounded loop, counting committed writes per node, errors by SQLSTATE, and
    connections that closed."""

    def __init__(self, appliances, seconds=40):
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.committed = {}      # node port → count
        self.first_commit = {}   # node port → monotonic time of its first commit
        self.errors = {}         # SQLSTATE → count
        self.closed = 0
        self.threads = [threading.Thread(target=self.run, args=(a,), daemon=True)
                        for a in appliances for _ in range(2)]
        for thread in self.threads:
            thread.start()

    def run(self, appliance):
        conn = connect(appliance.service_port("primary"), autocommit=True)
        for _ in range(100000):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                break
            try:
                port = conn.execute("INSERT INTO gossip_writes (via) VALUES (%s) RETURNING "
                                    "inet_server_port()", (appliance.port,)).fetchone()[0]
                with self.lock:
                    self.committed[port] = self.committed.get(port, 0) + 1
                    self.first_commit.setdefault(port, time.monotonic())
            except psycopg.Error as error:
                with self.lock:
                    code = getattr(error, "sqlstate", None) or "none"
                    self.errors[code] = self.errors.get(code, 0) + 1
                if conn.closed:
                    with self.lock:
                        self.closed += 1
                    return
                time.sleep(0.05)
            time.sleep(0.01)
        conn.close()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def prepare_table(nodes):
    nodes.admin_psql(nodes.primary, "CREATE TABLE IF NOT EXISTS gossip_writes "
                     "(id bigserial PRIMARY KEY, via int, at timestamptz DEFAULT now())",
                     dbname="payam_db")
    nodes.admin_psql(nodes.primary, "GRANT ALL ON gossip_writes, gossip_writes_id_seq "
                     "TO payam", dbname="payam_db")
    nodes.wait_replayed()


def test_three_appliances_agree_on_the_primary_and_see_each_other(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    epochs = settle_on(appliances, nodes.addr("primary"))
    assert len(epochs) == 1 and min(epochs) >= 1, epochs
    for appliance, address in zip(appliances, addresses):
        seen = members(appliance)
        assert set(seen) == set(addresses), seen
        assert all(row["state"] == "alive" for row in seen.values()), seen
        assert seen[address]["self"] == "t" and seen[address]["quorum"] == "t", seen
        assert write_port(appliance) == nodes.primary


def test_all_appliances_follow_a_promotion_and_keep_every_client(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, _ = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    (before,) = settle_on(appliances, nodes.addr("primary"))
    writers = Writers(appliances)
    try:
        time.sleep(2)
        died = time.monotonic()
        nodes.pg_ctl("primary", "stop", "-m", "immediate")
        nodes.promote("replica1")
        epochs = settle_on(appliances, nodes.addr("replica1"))
        time.sleep(2)
    finally:
        writers.finish()
    assert len(epochs) == 1 and min(epochs) > before, (before, epochs)
    assert writers.closed == 0, f"{writers.closed} client connections closed: {writers.errors}"
    assert writers.committed.get(nodes.replica1, 0) > 0, writers.committed
    outage = writers.first_commit[nodes.replica1] - died
    # Errors a client may see: its statement in flight when the primary died (08006), or a
    # write refused by the promoted node before it finished promotion. Never a closed
    # connection.
    assert set(writers.errors) <= {"08006", "25006", "57P01", "57P03"}, writers.errors
    print(f"\ngossip follow: epoch {before} -> {min(epochs)}; committed {writers.committed}; "
          f"errors {writers.errors}; first commit on the new primary {outage:.2f}s after "
          f"the old one died")
    for appliance in appliances:
        assert write_port(appliance) == nodes.replica1


def test_the_appliances_promote_one_replica_together_and_keep_every_client(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, _ = start_appliances(make_cluster_pgplex, nodes, tmp_path,
                                     cluster_settings={"failover": "promote"})
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
        time.sleep(2)
    finally:
        writers.finish()
    other = "replica2" if promoted == "replica1" else "replica1"
    assert nodes.in_recovery(other), "two replicas were promoted"
    assert len(epochs) == 1 and min(epochs) > before, (before, epochs)
    assert writers.closed == 0, f"{writers.closed} client connections closed: {writers.errors}"
    assert set(writers.errors) <= {"08006", "25006", "57P01", "57P03"}, writers.errors
    outage = writers.first_commit[nodes.ports[promoted]] - died
    print(f"\ngossip promote: {promoted} promoted, epoch {before} -> {min(epochs)}; "
          f"committed {writers.committed}; errors {writers.errors}; first commit on it "
          f"{outage:.2f}s after the primary died")
    for appliance in appliances:
        assert write_port(appliance) == nodes.ports[promoted]


def stop_processes(appliances):
    for appliance in appliances:
        appliance.signal(signal.SIGSTOP)


def continue_processes(appliances):
    for appliance in appliances:
        appliance.signal(signal.SIGCONT)


def test_an_appliance_cut_off_from_the_majority_stops_routing_writes(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    settle_on(appliances, nodes.addr("primary"))
    alone, others = appliances[0], appliances[1:]
    stop_processes(others)
    try:
        assert wait_until(lambda: cluster_row(alone)["writes"].startswith("held"), 10), \
            cluster_row(alone)
        assert wait_until(lambda: members(alone)[addresses[0]]["quorum"] == "f", 10), \
            members(alone)
        # A write waits; a read through the replica service goes on meanwhile.
        result = {}
        writer = threading.Thread(target=lambda: result.update(port=write_port(alone, 30)))
        started = time.monotonic()
        writer.start()
        with connect(alone.service_port("replica"), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        writer.join(2)
        assert writer.is_alive(), f"a write went through without a majority: {result}"
    finally:
        continue_processes(others)
    writer.join(25)
    assert result.get("port") == nodes.primary, result
    print(f"\nfail closed: the held write went on {time.monotonic() - started:.2f}s later")
    assert members(alone)[addresses[0]]["quorum"] == "t"


def test_without_minority_reads_a_cut_off_appliance_holds_reads_too(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path,
                                             minority_reads=False)
    settle_on(appliances, nodes.addr("primary"))
    alone, others = appliances[0], appliances[1:]
    stop_processes(others)
    try:
        assert wait_until(lambda: members(alone)[addresses[0]]["quorum"] == "f", 10), \
            members(alone)
        result = {}

        def read():
            with connect(alone.service_port("replica"), autocommit=True) as conn:
                result["recovery"] = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(2)
        assert reader.is_alive(), f"a read went through without a majority: {result}"
    finally:
        continue_processes(others)
    reader.join(25)
    assert result.get("recovery") is True, result


def test_two_of_three_carry_on_while_the_third_is_stopped(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    prepare_table(nodes)
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    settle_on(appliances, nodes.addr("primary"))
    stop_processes(appliances[2:])
    try:
        time.sleep(3)  # well past the lease and the probes that find it gone
        for appliance in appliances[:2]:
            assert routes_writes_to(appliance, nodes.addr("primary")), cluster_row(appliance)
            assert write_port(appliance, 5) == nodes.primary
        assert wait_until(lambda: members(appliances[0])[addresses[2]]["state"] != "alive", 10)
    finally:
        continue_processes(appliances[2:])
    assert wait_until(lambda: members(appliances[0])[addresses[2]]["state"] == "alive", 15)
    settle_on(appliances, nodes.addr("primary"))


def test_datagrams_without_the_key_are_dropped_and_counted(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    settle_on(appliances, nodes.addr("primary"))
    host, port = addresses[0].rsplit(":", 1)
    before = int(members(appliances[0])[addresses[0]]["forged"])
    # From an address that is not an appliance, then from a peer's address with a bad MAC.
    for source in ("127.0.0.9", APPLIANCES[1]):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            for size in (0, 1, 64, 1500):
                sock.sendto(os.urandom(size), (host, int(port)))
    assert wait_until(
        lambda: int(members(appliances[0])[addresses[0]]["forged"]) - before >= 8, 5), \
        members(appliances[0])
    settle_on(appliances, nodes.addr("primary"))


def test_a_cancel_sent_to_another_appliance_reaches_the_query(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    appliances, _ = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    settle_on(appliances, nodes.addr("primary"))
    pids = set()
    for owner, other in ((appliances[0], appliances[1]), (appliances[2], appliances[0])):
        with RawClient(owner.service_port("primary")) as client:
            client.login("payam", "payam_db")
            pid, key = client.backend_key
            pids.add(pid)
            client.send(message(b"Q", b"SELECT pg_sleep(30)\0"))
            time.sleep(0.5)
            started = time.monotonic()
            with RawClient(other.service_port("replica")) as canceller:
                canceller.send(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key))
                assert canceller.is_closed()
            with pytest.raises(ServerError) as raised:
                client.results()
            assert raised.value.sqlstate == "57014"
            assert time.monotonic() - started < 5
            assert client.query("SELECT 'still here'") == [["still here"]]
    # The pids name their appliances: no two appliances hand out the same one.
    assert len({pid >> 26 for pid in pids}) == 2, pids
    # A wrong key cancels nothing, wherever it is sent.
    with RawClient(appliances[0].service_port("primary")) as client:
        client.login("payam", "payam_db")
        pid, key = client.backend_key
        client.send(message(b"Q", b"SELECT 'finished' FROM pg_sleep(1.5)\0"))
        time.sleep(0.3)
        with RawClient(appliances[1].port) as canceller:
            canceller.send(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key ^ 0x5a5a5a5a))
            assert canceller.is_closed()
        assert client.results() == [["finished"]]


def test_a_reload_that_changes_gossip_is_refused_whole(
        failover_cluster, make_cluster_pgplex, tmp_path):
    nodes = failover_cluster
    appliances, addresses = start_appliances(make_cluster_pgplex, nodes, tmp_path)
    settle_on(appliances, nodes.addr("primary"))
    changed = appliances[0]
    changed.sections["gossip"]["peers"] = addresses[1:2]
    changed.reload()
    assert changed.wait_log(r"reload refused, keeping the running configuration: .*\[gossip\] "
                            r"listen, peers and key_file change only at a restart")
    assert set(members(changed)) == set(addresses)
    settle_on(appliances, nodes.addr("primary"))
