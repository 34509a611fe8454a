"""Per-statement routing on the main listener: an alias with `cluster = "c1"` (or a
database name `db@cluster`) in transaction pooling sends each transaction to the primary or
a replica, decided when it starts, in this order of precedence:

1. a `--!pgplex route=... node=... max_lag=...` comment at the head of the statement;
2. the session's intent (`options=-c pgplex.intent=...`, `SET pgplex.intent`, answered by
   pgplex; `BEGIN READ ONLY` counts as read intent);
3. [[rules]] (and [[rewrites]], applied before sending);
4. the statement's class (write → primary, read → replica);
5. the alias's default_route (statements the parser cannot class).

Which node ran a statement is read inside the statement itself: reads select the `port`
setting from pg_settings (a plain read of a view, whatever the classifier thinks of
functions), writes return it. Topology: `replicated`, replica2 flagged offline, so a routed
read lands on replica1; read_your_writes keeps a writer's reads on the primary until the
replicas have replayed its commit, so tests that check a later read wait for that.
"""

import time
import uuid

import psycopg
import pytest
from psycopg import errors

from conftest import RawClient, ServerError, cluster_table, connect, wait_until

pytestmark = pytest.mark.usefixtures("hard_timeout")

ALIAS = {"cluster": "c1", "dbname": "payam_db", "pool_mode": "transaction"}
PORT = "(SELECT setting::int FROM pg_settings WHERE name = 'port')"
READ = f"SELECT {PORT}"
WRITE = f"INSERT INTO route_log SELECT {PORT}, %s RETURNING port"
PRIMARY_HINT = "--!pgplex route=primary\n"
REPLICA_HINT = "--!pgplex route=replica\n"
SETTLE_SECONDS = 8

RULES = [
    {"pattern": r"(?i)\bfrom\s+t_rule_primary\b", "route": "primary"},
    {"pattern": r"(?i)\bfrom\s+t_rule_replica\b", "route": "replica"},
    {"pattern": r"(?i)\bfrom\s+t_app_rule\b", "route": "primary",
     "application_name": "reporter"},
]


@pytest.fixture(scope="module")
def routing_tables(replicated):
    replicated.admin_psql(replicated.primary, """
        DROP TABLE IF EXISTS route_log, t_rule_primary, t_rule_replica, t_app_rule,
            t_rule_node, old_table, new_table, ryw;
        CREATE TABLE route_log (port int, note text);
        CREATE TABLE t_rule_primary (x int); INSERT INTO t_rule_primary VALUES (1);
        CREATE TABLE t_rule_replica (x int); INSERT INTO t_rule_replica VALUES (1);
        CREATE TABLE t_app_rule (x int); INSERT INTO t_app_rule VALUES (1);
        CREATE TABLE t_rule_node (x int); INSERT INTO t_rule_node VALUES (1);
        CREATE TABLE old_table (v text); INSERT INTO old_table VALUES ('old');
        CREATE TABLE new_table (v text); INSERT INTO new_table VALUES ('new');
        GRANT SELECT ON old_table, new_table TO dataplatform_ro;
        CREATE TABLE ryw (id text, note text);
        CREATE OR REPLACE FUNCTION report_port() RETURNS int LANGUAGE sql STABLE
            AS 'SELECT inet_server_port()';
        CREATE OR REPLACE FUNCTION other_port() RETURNS int LANGUAGE sql STABLE
            AS 'SELECT inet_server_port()';
    """, dbname="payam_db", user="payam")
    replicated.wait_replayed()
    return replicated


def settle(pgplex, node_port, dbname="rdb"):
    """Waits until plain reads of a fresh client land on node_port: until the monitors have
    seen every node, the replica route is carried by its backups (the primary)."""
    def lands():
        with rdb(pgplex, dbname=dbname, connect_timeout=5) as conn:
            return port_of(conn) == node_port
    # A refused login is an answer, not a wait: it fails the test at once.
    assert wait_until(lands, SETTLE_SECONDS), f"reads through {dbname} never reached {node_port}"


# Nothing here stops a node: a check that is slow on a loaded machine must not take replica1
# out of rotation (with the tests' fall = 1 it did, and reads went to the offline backup).
PATIENT_CHECKS = {"fall": 3, "check_timeout": "3s"}


@pytest.fixture
def start_routing(routing_tables, make_cluster_pgplex):
    """start_routing(alias=..., aliases=..., **options): pgplex with alias rdb over c1, once
    its reads reach replica1."""
    def start(alias=None, aliases=None, **options):
        options["cluster_settings"] = {**PATIENT_CHECKS, **options.get("cluster_settings", {})}
        pgplex = make_cluster_pgplex(routing_tables,
                                     aliases={"rdb": {**ALIAS, **(alias or {})},
                                              **(aliases or {})},
                                     **options)
        settle(pgplex, routing_tables.replica1)
        return pgplex
    return start


def rdb(pgplex, dbname="rdb", user="payam", **kwargs):
    """A transaction-pooling client: autocommit, no named prepared statements."""
    kwargs.setdefault("prepare_threshold", None)
    return connect(pgplex.port, dbname=dbname, user=user, autocommit=True, **kwargs)


def port_of(conn, sql=READ, params=None, **kwargs):
    return conn.execute(sql, params, **kwargs).fetchone()[0]


def write(conn, note="routed write", **kwargs):
    return conn.execute(WRITE, (note,), **kwargs).fetchone()[0]


def reads_settle_on(conn, node_port, sql=READ):
    """Waits until conn's plain reads land on node_port (after a write: read your writes)."""
    return wait_until(lambda: port_of(conn, sql) == node_port, SETTLE_SECONDS)


@pytest.mark.smoke
def test_a_write_goes_to_the_primary_and_a_read_to_a_replica(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        assert [port_of(conn) for _ in range(4)] == [nodes.replica1] * 4
        assert write(conn) == nodes.primary
        assert reads_settle_on(conn, nodes.replica1), \
            "reads stayed off the replica after it replayed the write"
        assert write(conn, "second") == nodes.primary


def test_a_hint_beats_the_intent(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex, options="-c pgplex.intent=read-only") as conn:
        assert port_of(conn) == nodes.replica1
        assert port_of(conn, PRIMARY_HINT + READ) == nodes.primary
    with rdb(pgplex, options="-c pgplex.intent=read-write") as conn:
        assert port_of(conn) == nodes.primary
        assert port_of(conn, REPLICA_HINT + READ) == nodes.replica1


def test_the_intent_beats_rules(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing(rules=RULES)
    with rdb(pgplex) as conn:
        # The rules alone.
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_primary") == nodes.primary
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_replica") == nodes.replica1
        conn.execute("SET pgplex.intent = 'read-only'")
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_primary") == nodes.replica1
        conn.execute("SET pgplex.intent = 'read-write'")
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_replica") == nodes.primary


def test_rules_beat_the_class_and_respect_their_conditions(routing_tables, start_routing):
    nodes = routing_tables
    rules = RULES + [{"pattern": r"(?i)\bfrom\s+t_rule_node\b",
                      "node": nodes.addr("replica2")}]
    pgplex = start_routing(rules=rules)
    with rdb(pgplex) as conn:
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_primary") == nodes.primary
        assert port_of(conn, f"SELECT {PORT} FROM t_rule_node") == nodes.replica2
        # application_name is not "reporter": the rule does not apply, the class does.
        assert port_of(conn, f"SELECT {PORT} FROM t_app_rule") == nodes.replica1
    with rdb(pgplex, application_name="reporter") as conn:
        assert port_of(conn, f"SELECT {PORT} FROM t_app_rule") == nodes.primary


def test_the_class_beats_the_default_route(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing(alias={"default_route": "primary"},
                           aliases={"rdb_replica": {**ALIAS, "default_route": "replica"}})
    with rdb(pgplex) as conn:
        assert port_of(conn) == nodes.replica1
    with rdb(pgplex, dbname="rdb_replica") as conn:
        assert write(conn) == nodes.primary


@pytest.mark.parametrize("default_route", ["primary", "replica"])
def test_the_default_route_takes_what_the_parser_cannot_class(
        routing_tables, start_routing, default_route):
    nodes = routing_tables
    pgplex = start_routing(alias={"default_route": default_route})
    marker = f"unparsable_{uuid.uuid4().hex[:12]}"
    with rdb(pgplex) as conn:
        with pytest.raises(errors.SyntaxError):
            conn.execute(f"SELEKT '{marker}'")
        assert port_of(conn) == nodes.replica1  # the session goes on
    # The node that ran it logged the failed statement (log_min_error_statement = error).
    expected = "primary" if default_route == "primary" else "replica1"
    assert wait_until(lambda: marker in nodes.log(expected), 5), \
        f"{expected} never saw the unparsable statement"
    others = [name for name in nodes.names if name != expected and marker in nodes.log(name)]
    assert not others, f"the unparsable statement also reached {others}"


@pytest.mark.parametrize("begin", ["BEGIN READ ONLY", "START TRANSACTION READ ONLY"])
def test_a_read_only_transaction_goes_to_one_replica_and_stays(
        routing_tables, start_routing, begin):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        conn.execute(begin)
        ports = [port_of(conn), port_of(conn, f"SELECT {PORT} FROM t_rule_primary")]
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        conn.execute("COMMIT")
    assert ports == [nodes.replica1, nodes.replica1]


def test_a_write_transaction_stays_on_the_primary(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        conn.execute("BEGIN")
        ports = [port_of(conn), write(conn, "in a transaction"),
                 port_of(conn, f"UPDATE route_log SET note = 'updated' "
                               f"WHERE note = 'in a transaction' RETURNING {PORT}"),
                 port_of(conn)]
        conn.execute("COMMIT")
    assert ports == [nodes.primary] * 4


def test_set_pgplex_intent_is_answered_by_pgplex_and_steers_the_session(
        routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        # other_port() is not declared read-only: classed a write, it goes to the primary.
        assert port_of(conn, "SELECT other_port()") == nodes.primary
        conn.execute("SET pgplex.intent = 'read-only'")
        assert port_of(conn, "SELECT other_port()") == nodes.replica1
        conn.execute("SET pgplex.intent = 'read-write'")
        assert port_of(conn) == nodes.primary
        conn.execute("RESET pgplex.intent")
        assert port_of(conn) == nodes.replica1
        conn.execute("SET pgplex.intent TO read_only")
        # No server ever saw the setting.
        for hint in (PRIMARY_HINT, REPLICA_HINT):
            value = conn.execute(hint + "SELECT current_setting('pgplex.intent', true)")
            assert value.fetchone()[0] in (None, ""), hint


def test_the_startup_option_sets_the_intent(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex, options="-c pgplex.intent=read-write") as conn:
        assert port_of(conn) == nodes.primary
        value = conn.execute("SELECT current_setting('pgplex.intent', true)").fetchone()[0]
        assert value in (None, ""), "pgplex.intent reached the server"
    with rdb(pgplex, options="-c pgplex.intent=read-only") as conn:
        assert port_of(conn, "SELECT other_port()") == nodes.replica1


def test_declared_read_only_functions_are_reads(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing(settings={"read_only_functions": ["report_port"]})
    with rdb(pgplex) as conn:
        assert port_of(conn, "SELECT report_port()") == nodes.replica1
        assert port_of(conn, "SELECT other_port()") == nodes.primary


def test_a_node_hint_picks_that_node(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        for name in ("replica2", "primary", "replica1"):
            hint = f"--!pgplex node={nodes.addr(name)}\n"
            assert port_of(conn, hint + READ) == nodes.ports[name], name


def test_a_bad_hint_is_refused_with_22023_and_the_session_goes_on(routing_tables,
                                                                   start_routing):
    pgplex = start_routing()
    with rdb(pgplex) as conn:
        for hint in ("--!pgplex route=nowhere\n", "--!pgplex max_lag=soon\n"):
            with pytest.raises(psycopg.Error) as raised:
                conn.execute(hint + READ)
            assert raised.value.sqlstate == "22023", (hint, raised.value)
        assert port_of(conn) == routing_tables.replica1


def test_a_max_lag_hint_skips_a_replica_that_is_behind(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    hinted = "--!pgplex route=replica max_lag=100ms\n" + READ
    with rdb(pgplex) as conn:
        # The monitor's lag in time is "since the last replayed transaction" while a replica
        # has received more than it replayed, so a check that lands mid-replay can read high
        # for a moment: wait for a quiet one.
        assert wait_until(lambda: port_of(conn, hinted) == nodes.replica1, SETTLE_SECONDS)
        nodes.pause_replay("replica1")
        try:
            nodes.admin_psql(nodes.primary, "INSERT INTO route_log VALUES (0, 'lag')",
                             dbname="payam_db", user="payam")
            time.sleep(0.5)
            assert wait_until(lambda: port_of(conn, hinted) != nodes.replica1,
                              SETTLE_SECONDS), "max_lag=100ms still read from a paused replica"
            assert port_of(conn, hinted) in (nodes.primary, nodes.replica2)
            # Without the hint there is no lag limit: replica1 still serves reads.
            assert port_of(conn) == nodes.replica1
        finally:
            nodes.resume_replay("replica1")


def test_rewrites_change_the_statement_for_the_users_they_name(routing_tables, start_routing):
    pgplex = start_routing(rewrites=[{"pattern": r"\bFROM\s+old_table\b",
                                      "replacement": "FROM new_table", "user": "payam"}])
    with rdb(pgplex) as conn:
        assert conn.execute("SELECT v FROM old_table").fetchone() == ("new",)
        assert conn.execute(PRIMARY_HINT + "SELECT v FROM old_table").fetchone() == ("new",)
    with rdb(pgplex, user="dataplatform_ro") as conn:
        assert conn.execute("SELECT v FROM old_table").fetchone() == ("old",)


def paused(nodes):
    """Pauses replay on both replicas; returns the function that resumes them."""
    for name in ("replica1", "replica2"):
        nodes.pause_replay(name)

    def resume():
        for name in ("replica1", "replica2"):
            nodes.resume_replay(name)
    return resume


def count_and_port(conn, key):
    return tuple(conn.execute(f"SELECT count(*), {PORT} FROM ryw WHERE id = %s",
                              (key,)).fetchone())


def test_a_writer_reads_its_own_writes_while_the_replicas_lag(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    key = uuid.uuid4().hex
    with rdb(pgplex) as writer, rdb(pgplex) as reader:
        assert count_and_port(reader, key) == (0, nodes.replica1)
        resume = paused(nodes)
        try:
            writer.execute("INSERT INTO ryw VALUES (%s, 'mine')", (key,))
            assert count_and_port(writer, key) == (1, nodes.primary)
            assert count_and_port(reader, key) == (0, nodes.replica1)
        finally:
            resume()
        nodes.wait_replayed()
        assert wait_until(lambda: count_and_port(writer, key) == (1, nodes.replica1),
                          SETTLE_SECONDS), \
            f"the writer's reads stay at {count_and_port(writer, key)} after replay"


def test_without_read_your_writes_a_writer_reads_the_lagging_replica(
        routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing(alias={"read_your_writes": False})
    key = uuid.uuid4().hex
    with rdb(pgplex) as writer:
        resume = paused(nodes)
        try:
            writer.execute("INSERT INTO ryw VALUES (%s, 'mine')", (key,))
            assert count_and_port(writer, key) == (0, nodes.replica1)
        finally:
            resume()


def test_db_at_cluster_reaches_each_cluster_through_one_listener(
        routing_tables, failover_cluster, make_cluster_pgplex):
    one, two = routing_tables, failover_cluster
    pgplex = make_cluster_pgplex(one, clusters={"c2": cluster_table(two, services=("primary",))},
                                 settings={"pool_mode": "transaction"})
    for dbname, nodes in (("payam_db@c1", one), ("payam_db@c2", two)):
        settle(pgplex, nodes.replica1, dbname)
        with rdb(pgplex, dbname=dbname) as conn:
            assert port_of(conn, PRIMARY_HINT + READ) == nodes.primary, dbname
            assert port_of(conn) == nodes.replica1, dbname
            assert conn.execute("SELECT current_database()").fetchone() == ("payam_db",)
    with RawClient(pgplex.port) as client:
        with pytest.raises(ServerError) as raised:
            client.login("payam", "payam_db@nosuch")
    assert raised.value.sqlstate == "3D000", raised.value.fields
    assert "nosuch" in raised.value.fields.get("M", ""), raised.value.fields


def test_the_extended_protocol_is_routed_like_the_simple_one(routing_tables, start_routing):
    nodes = routing_tables
    pgplex = start_routing()
    with rdb(pgplex, prepare_threshold=0) as conn:
        sql = "SELECT setting::int FROM pg_settings WHERE name = %s"
        assert [port_of(conn, sql, ("port",), prepare=True) for _ in range(3)] == \
            [nodes.replica1] * 3
        assert [write(conn, f"prepared {i}", prepare=True) for i in range(2)] == \
            [nodes.primary] * 2
        assert reads_settle_on(conn, nodes.replica1, READ)
        assert port_of(conn, sql, ("port",), prepare=True) == nodes.replica1



def test_scram_pass_through_reaches_every_node(routing_tables, make_cluster_pgplex):
    """An auth file holding only SCRAM secrets: a routed client's proof lends its keys to the
    pools of every node it is routed to, as an alias's client does to its one pool (they
    were once kept for the alias's pool only, and routed clients could not log in)."""
    nodes = routing_tables
    pgplex = make_cluster_pgplex(nodes, aliases={"rdb": ALIAS}, secrets="scram")

    def lands_on_replica():
        try:
            with rdb(pgplex, connect_timeout=5) as conn:
                return port_of(conn) == nodes.replica1
        except psycopg.OperationalError:
            return False
    assert wait_until(lands_on_replica, SETTLE_SECONDS), pgplex.log()[-2000:]
    with rdb(pgplex) as conn:
        assert write(conn, "scram pass-through") == nodes.primary
