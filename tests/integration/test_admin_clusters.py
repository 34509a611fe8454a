"""The management database's cluster views: SHOW CLUSTERS, SHOW NODES, SHOW SERVICES
(database "pgplex", or "pgbouncer", for [pgplex] admin_users only).

Read with psql --csv, so the checks go by column name and stay loose about layout: a node
is named "host:port" (or by host and port columns); health is a boolean-ish column
(healthy / health / up / status / state: t, true, up, ...); a column with "lag" in its name
exists; SHOW SERVICES names, per service, the nodes that carry it now (a carriers column, or one
row per carrier) and whether they are its backups (carried_by = members | backup | none, or
a boolean column with "backup" in its name).
"""

import csv
import io
import re
import subprocess
import time

import pytest

from conftest import (PASSWORDS, PG_BIN, RawClient, ServerError, clean_env, connect, conninfo,
                      wait_until)

pytestmark = pytest.mark.usefixtures("hard_timeout")

ADMIN = {"admin_users": ["payam"]}
TRUE = {"t", "true", "yes", "y", "on", "1", "up", "healthy"}
FALSE = {"f", "false", "no", "n", "off", "0", "down", "unhealthy"}
SETTLE_SECONDS = 8


def show(port, command, user="payam", dbname="pgplex"):
    """Rows of an admin command as dicts (psql --csv: simple query protocol)."""
    result = subprocess.run(
        [str(PG_BIN / "psql"), "-X", "--csv", "-v", "ON_ERROR_STOP=1",
         conninfo(port, dbname, user), "-c", command],
        capture_output=True, text=True, timeout=30,
        env=clean_env(PGPASSWORD=PASSWORDS[user], PGCONNECT_TIMEOUT=10))
    assert result.returncode == 0, f"{command} failed: {result.stderr}"
    return list(csv.DictReader(io.StringIO(result.stdout)))


def text(row):
    return " ".join(str(value) for value in row.values())


def node_row(rows, port):
    """The row naming node 127.0.0.1:port, or None."""
    for row in rows:
        values = [str(v) for v in row.values()]
        if any(v == f"127.0.0.1:{port}" or v.endswith(f":{port}") for v in values):
            return row
        if row.get("host") == "127.0.0.1" and row.get("port") == str(port):
            return row
    return None


def flag(row, *names):
    """A boolean-ish column's value: True, False, or None when no such column reads as one."""
    for name in names:
        for column, value in row.items():
            if column is not None and column.lower() == name:
                value = str(value).strip().lower()
                if value in TRUE:
                    return True
                if value in FALSE:
                    return False
    return None


def healthy(row):
    return flag(row, "healthy", "health", "up", "status", "state")


def role(row):
    return str(row.get("role", "")).lower()


def all_healthy(port, nodes):
    rows = show(port, "SHOW NODES")
    found = [node_row(rows, nodes.ports[name]) for name in nodes.names]
    return all(row is not None and healthy(row) for row in found) and rows


def service_rows(rows, service, cluster="c1"):
    picked = []
    for row in rows:
        name = row.get("service", row.get("name"))
        if name != service and name != f"{cluster}.{service}":
            continue
        if "cluster" in row and row["cluster"] not in (cluster, ""):
            continue
        picked.append(row)
    return picked


CARRIER_COLUMNS = ("carriers", "carrier", "nodes", "node")
NOT_CARRIERS = ("listen", "host", "port", "selector", "backup")


def carriers(rows):
    """Ports of the nodes rows name as carriers: from a carriers (or nodes) column if there
    is one, else from every column but the service's own address and selectors."""
    ports = set()
    for row in rows:
        columns = [c for c in row if c is not None and c.lower() in CARRIER_COLUMNS] or \
            [c for c in row if c is not None and c.lower() not in NOT_CARRIERS]
        for column in columns:
            ports |= {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", str(row[column]))}
    return ports


def as_backup(rows):
    """Whether rows say their carriers are the service's backups: carried_by = "backup", or
    a boolean column with "backup" in its name (not the backup selector's text)."""
    answers = []
    for row in rows:
        for column, value in row.items():
            if column is None:
                continue
            value = str(value).strip().lower()
            if column.lower() == "carried_by":
                answers.append(value == "backup")
            elif "backup" in column.lower() and value in TRUE | FALSE:
                answers.append(value in TRUE)
    assert answers, f"nothing says whether these carriers are backups: {rows}"
    return all(answers)


@pytest.mark.smoke
def test_show_nodes_lists_each_node_with_role_health_and_lag(replicated, make_cluster_pgplex):
    nodes = replicated
    pgplex = make_cluster_pgplex(nodes, settings=ADMIN)
    rows = wait_until(lambda: all_healthy(pgplex.port, nodes), SETTLE_SECONDS)
    assert rows, f"not every node healthy: {show(pgplex.port, 'SHOW NODES')}"
    assert role(node_row(rows, nodes.primary)) == "primary", rows
    assert role(node_row(rows, nodes.replica1)) == "replica", rows
    assert role(node_row(rows, nodes.replica2)) == "replica", rows
    assert any("lag" in column.lower() for column in rows[0]), list(rows[0])
    # The offline flag comes from the config and shows.
    offline = node_row(rows, nodes.replica2)
    assert flag(offline, "offline") is True or role(offline) == "offline", offline


def test_show_services_lists_which_nodes_carry_each_service(replicated, make_cluster_pgplex):
    nodes = replicated
    pgplex = make_cluster_pgplex(nodes, settings=ADMIN)
    assert wait_until(lambda: all_healthy(pgplex.port, nodes), SETTLE_SECONDS)
    expected = {"primary": nodes.primary, "replica": nodes.replica1,
                "default": nodes.primary, "offline": nodes.replica2}

    def as_expected():
        rows = show(pgplex.port, "SHOW SERVICES")
        return all(carriers(service_rows(rows, service)) == {node}
                   for service, node in expected.items()) and rows

    rows = wait_until(as_expected, SETTLE_SECONDS)
    assert rows, show(pgplex.port, "SHOW SERVICES")
    for service in expected:
        picked = service_rows(rows, service)
        assert str(pgplex.service_port(service)) in " ".join(map(text, picked)), picked
        assert not as_backup(picked), f"{service} carried by backups: {picked}"


def test_show_clusters_names_the_primary(replicated, make_cluster_pgplex):
    nodes = replicated
    pgplex = make_cluster_pgplex(nodes, settings=ADMIN)

    def named():
        rows = [row for row in show(pgplex.port, "SHOW CLUSTERS")
                if "c1" in (row.get("cluster"), row.get("name"))]
        return rows and nodes.addr("primary") in text(rows[0]) and rows

    rows = wait_until(named, SETTLE_SECONDS)
    assert rows, show(pgplex.port, "SHOW CLUSTERS")


def test_the_management_database_answers_as_pgbouncer_too(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated, settings=ADMIN)
    rows = show(pgplex.port, "SHOW NODES", dbname="pgbouncer")
    assert node_row(rows, replicated.primary) is not None, rows
    assert show(pgplex.port, "SHOW VERSION"), "SHOW VERSION returned nothing"


def test_a_user_not_in_admin_users_is_refused(replicated, make_cluster_pgplex):
    pgplex = make_cluster_pgplex(replicated, settings=ADMIN)
    with RawClient(pgplex.port) as client:
        try:
            client.login("app", "pgplex")
            client.query("SHOW NODES")
        except ServerError as error:
            assert error.sqlstate in ("28000", "42501"), error.fields
        else:
            pytest.fail("a non-admin user ran SHOW NODES")


def test_show_nodes_and_services_follow_a_stopped_replica(failover_cluster,
                                                          make_cluster_pgplex):
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, settings=ADMIN)
    assert wait_until(lambda: all_healthy(pgplex.port, nodes), SETTLE_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    nodes.stop("replica1")

    def down():
        rows = show(pgplex.port, "SHOW NODES")
        row = node_row(rows, nodes.replica1)
        return row is not None and healthy(row) is False and rows

    rows = wait_until(down, SETTLE_SECONDS)
    assert rows, f"replica1 is stopped but not down: {show(pgplex.port, 'SHOW NODES')}"
    assert healthy(node_row(rows, nodes.primary)) is True, rows

    def on_backups():
        picked = service_rows(show(pgplex.port, "SHOW SERVICES"), "replica")
        found = carriers(picked)
        return found and found <= {nodes.primary, nodes.replica2} and picked

    picked = wait_until(on_backups, SETTLE_SECONDS)
    assert picked, show(pgplex.port, "SHOW SERVICES")
    assert as_backup(picked), picked


def test_a_connection_lost_on_the_data_path_gets_its_node_checked_at_once(
        failover_cluster, make_cluster_pgplex):
    """inter = 30s: a node stopped between checks would be seen down only at the next one.
    A worker whose server connection to it ends reports it, and the monitor checks it at
    once (then fastinter while it falls): the node is down in seconds."""
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(
        nodes, settings=ADMIN, offline=(),
        cluster_settings={"inter": "30s", "fastinter": "100ms", "downinter": "1s",
                          "rise": 1, "fall": 2})
    assert wait_until(lambda: all_healthy(pgplex.port, nodes), SETTLE_SECONDS), \
        show(pgplex.port, "SHOW NODES")
    replica_port = pgplex.service_port("replica")
    held = []

    def on_replica1():
        conn = connect(replica_port, autocommit=True, connect_timeout=5)
        held.append(conn)  # a session on the node, its server connection held open
        return conn.execute("SELECT inet_server_port()").fetchone()[0] == nodes.replica1
    # The replica service spreads over both replicas: some client lands on replica1.
    assert wait_until(on_replica1, SETTLE_SECONDS)
    nodes.stop("replica1")
    stopped = time.monotonic()

    def down():
        row = node_row(show(pgplex.port, "SHOW NODES"), nodes.replica1)
        return row is not None and healthy(row) is False

    assert wait_until(down, 10), show(pgplex.port, "SHOW NODES")
    assert time.monotonic() - stopped < 10
    assert pgplex.wait_log(r"a connection to it failed on the data path; checking it now")
    for conn in held:
        conn.close()


def test_node_metrics_of_the_pgplex_schema_show_in_show_nodes(failover_cluster,
                                                              make_cluster_pgplex):
    """Without the pgplex schema SHOW NODES has no load; once `pgplex --print-schema` is
    installed in monitor_dbname (and replicated), every node reports its host's load average
    and CPUs, read by the monitor's own check."""
    import os
    from conftest import pgplex_binary
    nodes = failover_cluster
    pgplex = make_cluster_pgplex(nodes, settings=ADMIN)
    assert wait_until(lambda: all_healthy(pgplex.port, nodes), SETTLE_SECONDS)
    rows = show(pgplex.port, "SHOW NODES")
    assert all(row["load1"] == "" and row["cpus"] == "" for row in rows), rows
    schema = subprocess.run([pgplex_binary(), "--print-schema"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
    nodes.admin_psql(nodes.primary, schema, dbname="postgres")
    nodes.wait_replayed()

    def reported():
        rows = show(pgplex.port, "SHOW NODES")
        return all(row["cpus"] == str(os.cpu_count()) and float(row["load1"]) >= 0
                   for row in rows if row["health"] == "up") and rows
    rows = wait_until(reported, SETTLE_SECONDS)
    assert rows, show(pgplex.port, "SHOW NODES")
    assert all(row["health"] == "up" for row in rows), rows
