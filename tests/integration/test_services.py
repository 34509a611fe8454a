"""Services: a listener per [clusters.X.services.NAME] that reaches the nodes its selector
picks, and its backups when none qualifies (Pigsty's services, docs' reference 003).

The well-known names need no selector (spec table; selector / backup / dest):
  primary  primary                                     -                            pool
  replica  replica && !offline && !delayed             primary || (replica && offline)  pool
  default  primary                                     -                            direct
  offline  replica && (offline || offline_query) && !delayed
           backup: replica && !offline && !offline_query && !delayed                direct
  standby  sync                                        primary
  delayed  delayed                                     -

Which node a client reached is read from the node itself (inet_server_port(),
pg_is_in_recovery()). Topology: `replicated` (session; replica2 flagged offline in pgplex's
config) for what only reads, `failover_cluster` (per test) for what stops, promotes, delays
or pauses nodes. pgplex checks every 200ms and flips a node on one check (FAST_CHECKS), so
every wait below is a few seconds at most.
"""

import re
import subprocess
import time

import psycopg
import pytest

from conftest import (HOST, PASSWORDS, cluster_table, connect, landing, landing_ports,
                      login_error, wait_until, where)
from test_limits import Background

pytestmark = pytest.mark.usefixtures("hard_timeout")

TRANSACTION = {"pool_mode": "transaction"}
# fall × inter is 200ms; a service follows a node within this, with room for a slow box.
FOLLOW_SECONDS = 8


def lands_only_on(port, node_port, count=4):
    """The ports count fresh clients of port reached, if all reached node_port; else False."""
    ports = landing_ports(port, count)
    return all(p == node_port for p in ports) and ports


def settle(port, node_port):
    """Waits until fresh clients of port land on node_port (monitors have run)."""
    assert wait_until(lambda: lands_only_on(port, node_port), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), \
        f"clients of {port} land on {landing_ports(port)}, not on {node_port}"


def test_primary_service_lands_on_the_primary(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated)
    port = pgplex.service_port("primary")
    settle(port, replicated.primary)
    for _ in range(4):
        assert landing(port) == (replicated.primary, False)
    with connect(port, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE written_through_primary_service (x int)")
        conn.execute("INSERT INTO written_through_primary_service VALUES (1)")


@pytest.mark.smoke
def test_every_default_service_lands_on_its_node(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated)
    expected = {
        "primary": (replicated.primary, False),
        "replica": (replicated.replica1, True),   # replica2 is offline: a backup only
        "default": (replicated.primary, False),
        "offline": (replicated.replica2, True),
    }
    for service, node in expected.items():
        settle(pgplex.service_port(service), node[0])
        for _ in range(3):
            assert landing(pgplex.service_port(service)) == node, service


def test_replica_service_lands_only_on_the_normal_replica(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated)
    port = pgplex.service_port("replica")
    settle(port, replicated.replica1)
    ports = landing_ports(port, 8)
    assert set(ports) == {replicated.replica1}, \
        f"replica service reached {ports}: not only replica1 (primary {replicated.primary}, " \
        f"offline replica2 {replicated.replica2})"
    # Pooled: one client, many transactions, still only replica1.
    with connect(port, autocommit=True, prepare_threshold=None) as conn:
        assert {where(conn) for _ in range(6)} == {(replicated.replica1, True)}


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_round_robin_spreads_fresh_clients_over_the_replicas(replicated, make_cluster_pgplex,
                                                             mode):
    """Each fresh client with one statement (psql -c, a cron job) takes the next replica; in
    transaction pooling the login's own server does not take a turn (it did, and every
    client's statement landed on the same replica)."""
    pgplex = make_cluster_pgplex(replicated, offline=(), settings={"pool_mode": mode})
    port = pgplex.service_port("replica")
    replicas = {replicated.replica1, replicated.replica2}
    assert wait_until(lambda: set(landing_ports(port, 4)) == replicas, FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), f"clients land on {landing_ports(port)}"
    ports = landing_ports(port, 12)
    for node in replicas:
        assert ports.count(node) >= 4, f"clients of the replica service landed on {ports}"


def test_replica_service_moves_to_its_backups_when_the_replica_stops_and_back_when_it_starts(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("replica",))
    port = pgplex.service_port("replica")
    assert wait_until(lambda: lands_only_on(port, nodes.replica1), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), landing_ports(port)
    nodes.stop("replica1")
    backups = {nodes.primary, nodes.replica2}  # primary || (replica && offline)
    assert wait_until(lambda: set(landing_ports(port, 2)) <= backups, FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), "replica service did not move to its backups"
    assert set(landing_ports(port, 6)) <= backups
    started = time.monotonic()
    nodes.start("replica1")
    assert wait_until(lambda: lands_only_on(port, nodes.replica1), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), \
        f"replica service still on {landing_ports(port)} {time.monotonic() - started:.1f}s " \
        "after replica1 came back"


def test_the_primary_carries_the_replica_service_when_no_replica_is_left(
        failover_cluster, make_cluster_pgplex):
    # Backups are primary || (replica && offline): with the offline replica down too, the
    # primary carries it alone.
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("replica",))
    port = pgplex.service_port("replica")
    nodes.stop("replica1")
    nodes.stop("replica2")
    assert wait_until(lambda: lands_only_on(port, nodes.primary), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), "the primary did not take the replica service"
    assert landing(port) == (nodes.primary, False)


def test_default_service_gives_each_client_its_own_backend_on_the_primary(
        replicated, make_cluster_pgplex):
    # dest = "direct": a server connection per client, no pool, even in transaction pooling.
    pgplex = make_cluster_pgplex(replicated, settings=TRANSACTION)
    port = pgplex.service_port("default")
    settle(port, replicated.primary)
    clients = [connect(port, autocommit=True, prepare_threshold=None,
                       application_name=f"direct-client-{i}") for i in range(3)]
    try:
        pids = []
        for conn in clients:
            assert where(conn) == (replicated.primary, False)
            own = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(4)}
            assert len(own) == 1, f"a direct client moved between backends: {own}"
            pids.append(own.pop())
        assert len(set(pids)) == 3, f"direct clients share backends: {pids}"
        assert set(pids) <= replicated.backends("primary", "usename = 'payam'")
        clients[0].close()
        # No pool keeps it: the backend goes with its client.
        assert wait_until(lambda: pids[0] not in replicated.backends("primary"), 5), \
            "the backend of a closed direct client is still there (pooled?)"
        assert pids[1] in replicated.backends("primary")
    finally:
        for conn in clients:
            conn.close()


def test_offline_service_lands_on_the_offline_replica(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated)
    port = pgplex.service_port("offline")
    settle(port, replicated.replica2)
    assert set(landing_ports(port, 6)) == {replicated.replica2}


def test_offline_service_falls_back_to_the_normal_replica_and_never_reaches_the_primary(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    # Every login to the primary is logged with its user and application_name.
    nodes.set("primary", "log_connections", "on")
    pgplex = make_cluster_pgplex(nodes, services=("offline",), query_wait_timeout="2s")
    port = pgplex.service_port("offline")
    probe = {"dbname": "appdb", "user": "app", "application_name": "offline-service-probe"}
    # The monitor's own login shows the primary does log logins (the check below means it).
    assert wait_until(lambda: "connection authorized: user=postgres" in nodes.log("primary"),
                      5), "log_connections is not in effect on the primary"
    assert wait_until(lambda: lands_only_on(port, nodes.replica2), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,))

    nodes.stop("replica2")
    assert wait_until(lambda: lands_only_on(port, nodes.replica1), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), "offline service did not fall back to replica1"

    nodes.stop("replica1")
    time.sleep(1)  # well past fall × inter: pgplex knows only the primary is left
    seen_on_primary = set()
    for _ in range(2):
        attempt = Background(lambda: landing(port, **probe))
        while not attempt.join(0.1) and time.monotonic() - attempt.started_at < 12:
            seen_on_primary |= nodes.backends("primary", "usename = 'app'")
        if attempt.done():
            assert attempt.error is not None, \
                f"the offline service served a client with no replica left: {attempt.result}"
    seen_on_primary |= nodes.backends("primary", "usename = 'app'")
    assert not seen_on_primary, "a client of the offline service reached the primary"
    logins = [line for line in nodes.log("primary").splitlines()
              if "connection authorized" in line and "user=app" in line]
    assert not logins, f"the primary logged offline service logins: {logins}"


def test_standby_service_lands_on_the_sync_standby_and_falls_back_to_the_primary(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    nodes.set("primary", "synchronous_standby_names", "replica2")
    assert wait_until(lambda: nodes.streaming().get("replica2") == "sync", 10), \
        nodes.streaming()
    pgplex = make_cluster_pgplex(nodes, services=("standby",), offline=())
    port = pgplex.service_port("standby")
    assert wait_until(lambda: lands_only_on(port, nodes.replica2), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), \
        f"standby service on {landing_ports(port)}, not the sync standby {nodes.replica2}"
    nodes.stop("replica2")
    assert wait_until(lambda: lands_only_on(port, nodes.primary), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), "standby service did not fall back to primary"


def test_delayed_service_lands_on_the_delayed_replica_which_leaves_the_replica_service(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    nodes.set("replica2", "recovery_min_apply_delay", "1h")
    pgplex = make_cluster_pgplex(nodes, services=("delayed", "replica"), offline=())
    delayed, replica = pgplex.service_port("delayed"), pgplex.service_port("replica")
    assert wait_until(lambda: lands_only_on(delayed, nodes.replica2), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), \
        f"delayed service on {landing_ports(delayed)}, not the delayed {nodes.replica2}"
    settle(replica, nodes.replica1)
    assert set(landing_ports(replica, 6)) == {nodes.replica1}


def test_custom_service_follows_its_own_selector_and_backup(replicated, make_cluster_pgplex):
    services = {"reporting": {"selector": "replica && offline", "backup": "primary",
                              "dest": "direct"},
                "writers": {"selector": "primary", "dest": "pool"}}
    pgplex = make_cluster_pgplex(replicated, services=services)
    settle(pgplex.service_port("reporting"), replicated.replica2)
    settle(pgplex.service_port("writers"), replicated.primary)


def test_promoted_replica_takes_the_primary_service_without_a_reload_and_clients_stay(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    nodes.admin_psql(nodes.primary, "CREATE TABLE failover_log (port int, note text)",
                     dbname="payam_db", user="payam")
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION)
    port = pgplex.service_port("primary")
    clients = [connect(port, autocommit=True, prepare_threshold=None) for _ in range(2)]
    insert = ("INSERT INTO failover_log VALUES (inet_server_port(), %s) "
              "RETURNING port")
    try:
        for i, conn in enumerate(clients):
            assert conn.execute(insert, (f"before {i}",)).fetchone() == (nodes.primary,)
        nodes.wait_replayed(["replica1"])

        nodes.stop("primary")
        nodes.promote("replica1")
        assert wait_until(lambda: landing(port) == (nodes.replica1, False), FOLLOW_SECONDS,
                          ignore=(psycopg.Error,)), "primary service did not follow promotion"

        # Clients idle through the failover simply get the new primary.
        for i, conn in enumerate(clients):
            assert where(conn) == (nodes.replica1, False)
            assert conn.execute(insert, (f"after {i}",)).fetchone() == (nodes.replica1,)
            count = conn.execute("SELECT count(*) FROM failover_log").fetchone()[0]
            assert count == 3 + i, "rows written before the failover are missing"
    finally:
        for conn in clients:
            conn.close()
    assert not re.search(r"SIGHUP|reload:|reloading", pgplex.log()), pgplex.log()


def test_a_lagging_replica_leaves_the_replica_service_until_replay_resumes(
        replicated, make_cluster_pgplex):
    nodes = replicated
    nodes.admin_psql(nodes.primary, "CREATE TABLE IF NOT EXISTS lag_probe (x int)",
                     dbname="payam_db", user="payam")
    nodes.wait_replayed()
    pgplex = make_cluster_pgplex(nodes, services={"replica": {"max_lag": "0B"}})
    port = pgplex.service_port("replica")
    assert wait_until(lambda: lands_only_on(port, nodes.replica1), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), landing_ports(port)
    nodes.pause_replay("replica1")
    try:
        nodes.admin_psql(nodes.primary, "INSERT INTO lag_probe VALUES (1)",
                         dbname="payam_db", user="payam")
        backups = {nodes.primary, nodes.replica2}
        assert wait_until(lambda: set(landing_ports(port, 2)) <= backups, FOLLOW_SECONDS,
                          ignore=(psycopg.Error,)), \
            "a replica with replay paused behind the primary kept the replica service"
        assert set(landing_ports(port, 6)) <= backups
    finally:
        nodes.resume_replay("replica1")
    nodes.wait_replayed(["replica1"])
    assert wait_until(lambda: lands_only_on(port, nodes.replica1), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,)), "replica1 did not come back after replay"


def test_two_clusters_with_default_services_on_one_port_are_refused(
        replicated, make_cluster_pgplex):
    # Neither cluster configures services: both get the Pigsty defaults (5433, 5434, 5436,
    # 5438) on the same host, which is a config error naming both clusters. pgplex must not
    # start (nor bind those ports, which another test run may hold).
    other = cluster_table(replicated, services=())
    pgplex = make_cluster_pgplex(replicated, name="pg-alpha", services=(),
                                 clusters={"pg-beta": other}, start=False)
    pgplex.write()
    for command in ([pgplex.binary, "--check", str(pgplex.config_path)],
                    [pgplex.binary, str(pgplex.config_path)]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                    cwd=pgplex.dir)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command[1:]} kept running with two services on one port")
        assert result.returncode != 0, result.stderr
        assert "pg-alpha" in result.stderr and "pg-beta" in result.stderr, result.stderr
        assert re.search(r"\b543[3468]\b", result.stderr), result.stderr


def test_parameter_status_in_hot_standby_tells_a_replica_service_from_a_primary_one(
        replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated, services=("primary", "replica"))
    settle(pgplex.service_port("replica"), replicated.replica1)
    settle(pgplex.service_port("primary"), replicated.primary)
    with connect(pgplex.service_port("replica")) as conn:
        assert conn.info.parameter_status("in_hot_standby") == "on"
        assert where(conn)[1] is True
    with connect(pgplex.service_port("primary")) as conn:
        assert conn.info.parameter_status("in_hot_standby") == "off"
        assert where(conn)[1] is False


@pytest.mark.parametrize("attrs", ["read-write", "read-only"])
def test_libpq_target_session_attrs_picks_the_matching_service(
        replicated, make_cluster_pgplex, attrs):
    pgplex = make_cluster_pgplex(replicated, services=("primary", "replica"))
    primary, replica = pgplex.service_port("primary"), pgplex.service_port("replica")
    # The wrong service first, so libpq has to pass over it.
    ports = [replica, primary] if attrs == "read-write" else [primary, replica]
    wanted = ports[1]
    settle(primary, replicated.primary)
    settle(replica, replicated.replica1)
    conninfo = (f"host={HOST},{HOST} port={ports[0]},{ports[1]} dbname=payam_db user=payam "
                f"password={PASSWORDS['payam']} target_session_attrs={attrs} "
                "connect_timeout=10")
    with psycopg.connect(conninfo) as conn:
        assert conn.info.port == wanted
        expected_node = replicated.primary if attrs == "read-write" else replicated.replica1
        assert where(conn)[0] == expected_node


def test_a_client_logging_in_while_the_primary_is_down_waits_for_the_promoted_one(
        failover_cluster, make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, services=("primary",), settings=TRANSACTION,
                                 query_wait_timeout="20s")
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,))
    nodes.stop("primary")
    # No node carries the primary service now: the login waits (it is not refused)...
    waiting = Background(lambda: landing(port))
    time.sleep(1.0)
    assert not waiting.done(), f"the login did not wait: {waiting.result or waiting.error}"
    # ... until the promoted replica takes the service.
    nodes.promote("replica1")
    assert waiting.join(FOLLOW_SECONDS + 5), "the waiting login never finished"
    assert waiting.error is None, waiting.error
    assert waiting.result == (nodes.replica1, False)


def test_maxqueue_refuses_a_client_beyond_the_queue_of_a_node_with_53300(
        replicated, make_cluster_pgplex):
    nodes = replicated
    pgplex = make_cluster_pgplex(nodes, services={"primary": {"maxqueue": 1}},
                                 settings=TRANSACTION, default_pool_size=1)
    port = pgplex.service_port("primary")
    assert wait_until(lambda: landing(port) == (nodes.primary, False), FOLLOW_SECONDS,
                      ignore=(psycopg.Error,))
    holder = connect(port, autocommit=True)
    queued = None
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # holds the pool's only server until COMMIT
        queued = Background(lambda: connect(port, autocommit=True).execute(
            "SELECT inet_server_port()").fetchone())
        time.sleep(0.5)  # the queued login is in line now
        assert not queued.done(), queued.error
        # A login that would queue behind it is one too many: the raw client sees SQLSTATE.
        error = login_error(port, "payam", "payam_db", PASSWORDS["payam"])
        assert error is not None and error.fields.get("C") == "53300", error
        assert "too many clients waiting for node" in error.fields.get("M", ""), error
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert queued.join(10) and queued.error is None, queued.error
    assert queued.result == (nodes.primary,)


def test_a_client_no_node_can_take_gets_57p03_at_query_wait_timeout(replicated,
                                                                     make_cluster_pgplex):
    """The wait for a node (SHOW CLIENTS' "node") ends like every wait pgplex owns: a
    service whose selector matches no node and that has no backup makes its client wait
    query_wait_timeout, then refuses it with 57P03 cannot_connect_now."""
    services = {"nowhere": {"selector": "offline && primary", "dest": "pool"}}
    pgplex = make_cluster_pgplex(replicated, services=services, query_wait_timeout="2s")
    started = time.monotonic()
    error = login_error(pgplex.service_port("nowhere"), "payam", "payam_db",
                        PASSWORDS["payam"])
    assert error is not None and error.sqlstate == "57P03", error
    assert 1.5 <= time.monotonic() - started <= 8
