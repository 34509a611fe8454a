"""pooldiff: a differential, randomized, concurrent tester of transaction pooling isolation.

Every client of a seed holds two connections as the same superuser: one through pgplex in
pool_mode = "transaction" (a pool of 1-3 server connections shared by 8-16 clients), and
its "twin", straight to PostgreSQL. The client sends the same random sequence of steps to
both and, after every action, compares what came back; after every step it also compares
an observation of its own session state on both sides. Whatever a client sees through the
pooler must be what it sees directly: any difference is a failure.

Determinism. A seed fixes the number of clients, the pool size, each client's startup
parameters and each client's whole sequence (random.Random(seed * 1000 + client)), so a
failing seed replays the same sequences; the interleaving of clients on the shared servers
comes from the threads and varies between runs.

Two databases keep the sides apart: the pooled side works in POOL_DB, the twin in TWIN_DB,
both set up identically (setup_sql). Client i touches only its own schemas pd_c<i>_a and
pd_c<i>_b, each with a table named shared_table whose rows carry their schema's name, so
data results are deterministic and a wrong search_path shows. public.shared_table is a
read-only view (INSERT fails the same way on both sides).

The grammar (class Grammar) covers the session state a pooler has to carry between server
connections: SET / SET SESSION / SET LOCAL / RESET / SET ... TO DEFAULT / RESET ALL of the
GUCS below and the special forms (TIME ZONE, XML OPTION, NAMES, SCHEMA, SESSION
CHARACTERISTICS), set_config and DO blocks, SET ROLE / SET SESSION AUTHORIZATION and their
resets, DISCARD, SQL PREPARE / EXECUTE / DEALLOCATE [ALL], protocol-level prepared
statements (Parse / Bind / Describe), transactions that fail or roll back, savepoints,
multi-statement simple Queries, extended-protocol statements, reads and writes, and
temporary tables (created, used and dropped within one step, since they pin their client).
Left out, as pgplex documents them as not movable or as nondeterministic: currval/lastval,
WITH HOLD cursors, advisory locks, LISTEN; also SET ... FROM CURRENT (only valid in CREATE
FUNCTION) and statement_timeout values that could fire.

What is compared (observe):
- every action's results: per result, status, SQLSTATE, command tag and rows (as text);
- current_user, session_user, role, the resolved schema of shared_table, the value of every
  GUC of the grammar, and name=setting of every pg_settings row a session may change
  (context user or superuser). Values, not pg_settings.source: the source legitimately
  differs, since pgplex replays a client's startup parameters as SETs ('session' on the
  server, 'client' on the twin), and a pooler that sees set_config() set a value the server
  already had need not repeat it ('session' on the twin, 'default' behind pgplex) - the
  client sees the same values either way. Settings of loadable modules (names with a dot,
  such as plpgsql.*) are left out: they appear on a backend once any session on it loaded
  the module (a DO block of another client), a cache of the server, not client state.
  Nothing else needs excluding: a fresh client
  with no startup parameters has the same values on both sides (checked when pooldiff was
  written: pgplex sends no application_name or other setting of its own for an alias that
  names none);
- the client's SQL prepared statements: name and parameter types. Not the
  statement text: PostgreSQL records the whole Query string a PREPARE came in, which a
  pooler replaying the PREPARE on another server legitimately changes.
Protocol-level prepared statements are compared by what Bind/Describe of them return.

One documented limit is kept out of the grammar: in a multi-statement Query a RESET of a
startup parameter goes last (pgplex puts the startup value back after the Query).

Session pooling (make_plan's mode "session", POOLDIFF_MODE=session): the same sequences
through pgplex in pool_mode = "session", one server per client, and after a step, at random
(KILL_CHANCE, from its own seeded stream so it replays), the client's server is killed with
pg_terminate_backend once pgplex has read what the step left (SHOW CLIENTS says active). The
client must not notice: pgplex moves it to another server with its session (settings, role,
SQL and protocol-level prepared statements) before its next step. Temporary tables live
within one step, so every kill finds a session pgplex can move.

run_script runs a fixed interleaving of a few clients instead, one action at a time, for
minimal reproductions of what the seeds find (test_pool_differential.REPRODUCTIONS).

Run it with pytest (test_pool_differential.py starts PostgreSQL and pgplex), as
`make fuzz-pool SEEDS=1-200`, or as a script: `pooldiff.py --seed N`, `--seeds A-B`,
`--minutes M` (runs that test file), `pooldiff.py --print N` (prints a seed's sequences).
"""

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import pq

POOL_DB = "pd_pool"
TWIN_DB = "pd_twin"
ALIAS = "pd"
SUPERUSER = "pd_su"
SUPERUSER_PASSWORD = "pd-secret"
ROLES = ("pd_r1", "pd_r2", "pd_r3")  # pd_r2 is a member of pd_r1; pd_r3 of nothing
MAX_CLIENTS = 16
STEP_SECONDS_LIMIT = 30  # a single action slower than this is a hang (pool starvation)
KILL_CHANCE = 0.2        # session mode: after a step, the chance its server is killed
KILL_STREAM = 10 ** 6    # session mode: kills are drawn from their own random stream

GUCS = {
    "search_path": None,  # per client: see Grammar.search_paths
    "work_mem": ["'4MB'", "'5MB'", "'64kB'", "'7MB'", "1024"],
    "statement_timeout": ["0", "'20s'", "'123s'", "'1min'"],
    "application_name": ["'pd_app_one'", "'pd_app_two'", "''"],
    "DateStyle": ["'ISO, MDY'", "'SQL, DMY'", "'German'", "'Postgres, YMD'"],
    "TimeZone": ["'UTC'", "'Asia/Tehran'", "'America/New_York'", "'Europe/Paris'"],
    "IntervalStyle": ["postgres", "iso_8601", "sql_standard", "postgres_verbose"],
    "extra_float_digits": ["0", "1", "3", "-5"],
    "default_transaction_isolation": ["'read committed'", "'repeatable read'",
                                      "'serializable'"],
}
OBSERVED_GUCS = sorted(GUCS) + ["xmloption", "client_encoding", "transaction_isolation"]
SQL_NAMES = ("p1", "p2")      # SQL PREPARE names, the same in every client
PROTOCOL_NAMES = ("s1", "s2")  # protocol-level statement names, the same in every client


# ---------------------------------------------------------------------------------------
# Database setup


def role_sql():
    """Run once per cluster in any database: the superuser clients log in as, and the
    roles they switch to."""
    statements = [f"CREATE ROLE {SUPERUSER} SUPERUSER LOGIN PASSWORD '{SUPERUSER_PASSWORD}'"]
    statements += [f"CREATE ROLE {role} NOLOGIN" for role in ROLES]
    statements.append("GRANT pd_r1 TO pd_r2")
    body = "".join(f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                   f"'{s.split()[2]}') THEN {s}; END IF; " for s in statements[:-1])
    body += "IF NOT pg_has_role('pd_r2', 'pd_r1', 'MEMBER') THEN GRANT pd_r1 TO pd_r2; END IF;"
    return f"DO $$BEGIN {body} END$$"


def setup_sql(clients=MAX_CLIENTS):
    """Run in each of POOL_DB and TWIN_DB before a seed: fresh schemas for every client."""
    lines = ["DROP VIEW IF EXISTS public.shared_table",
             "CREATE VIEW public.shared_table AS SELECT 'public'::text AS tag, 0 AS v",
             "GRANT SELECT ON public.shared_table TO pd_r1, pd_r3"]
    for client in range(clients):
        for suffix in ("a", "b"):
            schema = f"pd_c{client}_{suffix}"
            lines += [f"DROP SCHEMA IF EXISTS {schema} CASCADE",
                      f"CREATE SCHEMA {schema}",
                      f"CREATE TABLE {schema}.shared_table "
                      f"(tag text NOT NULL DEFAULT '{schema}', v int NOT NULL)",
                      f"INSERT INTO {schema}.shared_table (v) VALUES ({client}), (100)"]
        lines += [f"GRANT USAGE ON SCHEMA pd_c{client}_a TO pd_r1",
                  f"GRANT ALL ON pd_c{client}_a.shared_table TO pd_r1"]
    return ";\n".join(lines) + ";"


# ---------------------------------------------------------------------------------------
# The plan of a seed


@dataclass(frozen=True)
class Action:
    """One thing a client sends. kind: Q (simple Query, may hold several statements),
    P (extended protocol, unnamed statement), prepare / exec / describe (a named
    protocol-level statement), observe (the state observation, mid-step), kill (session
    mode: not sent; the client's server is killed)."""
    kind: str
    sql: str = ""
    name: str = ""
    params: tuple = ()

    def __str__(self):
        if self.kind == "Q":
            return self.sql
        if self.kind == "P":
            return f"[extended] {self.sql}" + (f"  params={list(self.params)}"
                                               if self.params else "")
        if self.kind == "prepare":
            return f"[Parse {self.name}] {self.sql}"
        if self.kind == "exec":
            return f"[Bind/Execute {self.name}] params={list(self.params)}"
        if self.kind == "describe":
            return f"[Describe {self.name}]"
        if self.kind == "kill":
            return "[its server is killed]"
        return "[observe]"


@dataclass
class Plan:
    seed: int
    clients: int
    pool_size: int
    startup: list      # per client: dict of psycopg connection keywords
    sequences: list    # per client: list of steps, each a list of Actions
    mode: str = "transaction"
    kills: list = field(default_factory=list)  # session mode, per client: see make_plan
    kills_done: int = 0  # session mode: how many servers run_plan killed


def make_plan(seed, omit=(), mode="transaction"):
    """The plan of a seed. Steps with an action whose text contains one of omit (case
    insensitive) are left out, the rest stay as they were: to look past a known bug.

    mode "session": pgplex pools sessions, one server per client, and after each step the
    client's server is killed with chance KILL_CHANCE (its kills: the step numbers after
    which). The sequences are those of the transaction mode's plan of the same seed."""
    rng = random.Random(seed)
    clients = rng.randint(8, MAX_CLIENTS)
    pool_size = rng.randint(1, 3)
    steps = rng.randint(25, 45)
    startup, sequences, kills = [], [], []
    for client in range(clients):
        grammar = Grammar(random.Random(seed * 1000 + client), client)
        startup.append(grammar.startup())
        sequence = [grammar.step() for _ in range(steps)]
        sequences.append([step for step in sequence if not mentions(step, omit)])
        chance = random.Random(seed * 1000 + client + KILL_STREAM)
        kills.append({step for step in range(len(sequences[-1]))
                      if chance.random() < KILL_CHANCE} if mode == "session" else set())
    if mode == "session":
        pool_size = clients
    return Plan(seed, clients, pool_size, startup, sequences, mode, kills)


def mentions(step, words):
    return any(word.lower() in str(action).lower() for action in step for word in words)


def omitted_from_environment():
    """POOLDIFF_OMIT="a,b": the omit of make_plan."""
    return tuple(word for word in os.environ.get("POOLDIFF_OMIT", "").split(",") if word)


# ---------------------------------------------------------------------------------------
# The grammar


STARTUP_GUCS = ("application_name", "work_mem", "search_path", "statement_timeout")


def resets_a_startup_parameter(statement):
    """Whether the statement may reset a GUC Grammar.startup() gives a startup value."""
    words = statement.lower().split()
    if words[:2] == ["reset", "all"]:
        return True
    resets = (words[:1] == ["reset"]
              or (words[:1] == ["set"] and words[-2:] == ["to", "default"]))
    return resets and any(guc in words for guc in STARTUP_GUCS)


class Grammar:
    """Random steps of one client. Every method returns a step: a list of Actions."""

    def __init__(self, rng, client):
        self.rng = rng
        self.client = client
        a, b = f"pd_c{client}_a", f"pd_c{client}_b"
        self.schemas = (a, b)
        self.search_paths = [f"'{a}'", f"{b}, public", "public", f"{b}, {a}",
                             f"'$user', {a}", "pg_catalog", f"\"{a}\", \"{b}\""]

    def pick(self, items):
        return self.rng.choice(items)

    def chance(self, p):
        return self.rng.random() < p

    # startup parameters -----------------------------------------------------------------

    def startup(self):
        """psycopg keywords: some clients start with options and an application_name."""
        params = {}
        if self.chance(0.3):
            params["application_name"] = f"pd_start_{self.client}"
        options = []
        if self.chance(0.3):
            options.append(f"-c work_mem={self.pick(['6MB', '3MB'])}")
        if self.chance(0.2):
            options.append(f"-c search_path={self.schemas[1]}")
        if self.chance(0.15):
            options.append("-c statement_timeout=99s")
        if options:
            params["options"] = " ".join(options)
        return params

    # values -----------------------------------------------------------------------------

    def value(self, guc):
        if guc == "search_path":
            return self.pick(self.search_paths)
        return self.pick(GUCS[guc])

    def guc(self):
        return self.pick(sorted(GUCS))

    def plain_value(self, guc):
        """A value for set_config: no SQL quoting."""
        value = self.value(guc).replace("'", "")
        return value if guc == "search_path" else value.replace('"', "")

    def set_statement(self, scope=""):
        """One SET-like statement; scope is '', 'SESSION ' or 'LOCAL '."""
        guc = self.guc()
        form = self.rng.randrange(10)
        if form == 0:
            return f"SET {scope}{guc} TO DEFAULT"
        if form == 1 and not scope:
            return f"RESET {guc}"
        if form == 2:
            return self.special_set(scope)
        if form == 3:
            return f"SET {scope}{guc} TO {self.value(guc)}"
        return f"SET {scope}{guc} = {self.value(guc)}"

    def special_set(self, scope=""):
        zone = self.pick(["'UTC'", "LOCAL", "DEFAULT", "-3", "'Asia/Tokyo'",
                          "INTERVAL '+02:00' HOUR TO MINUTE"])
        level = self.pick(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
        return self.pick([
            f"SET {scope}TIME ZONE {zone}",
            f"SET {scope}XML OPTION {self.pick(['DOCUMENT', 'CONTENT'])}",
            f"SET {scope}NAMES '{self.pick(['UTF8', 'LATIN1'])}'",
            f"SET {scope}SCHEMA '{self.pick(self.schemas)}'",
            f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}",
        ])

    def set_config_call(self, is_local):
        guc = self.guc()
        return f"set_config('{guc}', '{self.plain_value(guc)}', {str(is_local).lower()})"

    def role_statement(self):
        return self.pick([
            f"SET ROLE {self.pick(ROLES)}", "RESET ROLE", "SET ROLE NONE",
            f"SET SESSION ROLE {self.pick(ROLES)}",
            f"SET SESSION AUTHORIZATION {self.pick(ROLES)}",
            "RESET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION DEFAULT",
        ])

    def data_statement(self):
        return self.pick([
            f"INSERT INTO shared_table (v) VALUES ({self.rng.randrange(1000)})",
            "SELECT tag, count(*), sum(v) FROM shared_table GROUP BY tag ORDER BY tag",
            "UPDATE shared_table SET v = v + 1 WHERE v < 500",
            "DELETE FROM shared_table WHERE v > 900",
            "SELECT '2021-03-04 05:06:07+00'::timestamptz, interval '1 day 2 hours 3 s', "
            "0.1::float8, '2021-03-04'::date",
            "SELECT current_setting('search_path'), current_user",
            f"SHOW {self.guc()}",
        ])

    # steps ------------------------------------------------------------------------------

    def step(self):
        kinds = [
            (12, self.step_set), (8, self.step_transaction), (6, self.step_multi_statement),
            (4, self.step_set_config), (3, self.step_do_block), (5, self.step_role),
            (3, self.step_reset), (5, self.step_sql_prepared), (5, self.step_protocol),
            (8, self.step_data), (2, self.step_temp_table), (3, self.step_savepoint),
            (3, self.step_extended_set),
        ]
        make = self.rng.choices([k for _, k in kinds], [w for w, _ in kinds])[0]
        return make()

    def q(self, sql):
        return Action("Q", sql)

    def step_set(self):
        return [self.q(self.set_statement(self.pick(["", "", "SESSION "])))]

    def step_extended_set(self):
        """A SET through the extended protocol, as JDBC sends them."""
        return [Action("P", self.set_statement(self.pick(["", "SESSION "])))]

    def step_transaction(self):
        actions = [self.q(self.pick(["BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL "
                                     "REPEATABLE READ"]))]
        for _ in range(self.rng.randint(1, 3)):
            actions.append(self.q(self.pick([
                self.set_statement("LOCAL "), self.set_statement(),
                f"SELECT {self.set_config_call(self.chance(0.5))}",
                self.data_statement(), "SET LOCAL ROLE pd_r1"])))
        if self.chance(0.4):
            actions.append(Action("observe"))
        if self.chance(0.3):
            actions.append(self.q("SELECT 1/0"))
        actions.append(self.q(self.pick(["COMMIT", "ROLLBACK", "END", "COMMIT"])))
        return actions

    def step_savepoint(self):
        return [self.q("BEGIN"), self.q(self.set_statement()), self.q("SAVEPOINT sp"),
                self.q(self.set_statement()),
                self.q(self.pick(["ROLLBACK TO SAVEPOINT sp", "RELEASE sp", "SELECT 1/0"])),
                self.q(self.pick(["COMMIT", "ROLLBACK"]))]

    def step_multi_statement(self):
        parts = [self.pick([
            self.set_statement(), self.set_statement(), "SELECT 1", "SELECT 1/0",
            "BEGIN", "COMMIT", f"SELECT {self.set_config_call(False)}",
            f"PREPARE {self.pick(SQL_NAMES)} AS SELECT 7", "DEALLOCATE ALL",
            self.role_statement(), self.data_statement(),
        ]) for _ in range(self.rng.randint(2, 4))]
        # A documented limit (pgplex.toml(5), ISOLATION): pgplex gives a reset startup
        # parameter its startup value back after the Query that reset it, so a statement
        # later in the same Query still sees the server's default. Such resets go last.
        parts.sort(key=resets_a_startup_parameter)  # stable: the rest keep their order
        return [self.q("; ".join(parts))]

    def step_set_config(self):
        call = self.set_config_call(self.chance(0.2))
        return [self.pick([self.q(f"SELECT {call}"), Action("P", f"SELECT {call}")])]

    def step_do_block(self):
        guc = self.guc()
        return [self.q(f"DO $$BEGIN PERFORM set_config('{guc}', "
                       f"'{self.plain_value(guc)}', false); END$$")]

    def step_role(self):
        return [self.q(self.role_statement())]

    def step_reset(self):
        return [self.q(self.pick(["RESET ALL", "DISCARD ALL", "DISCARD PLANS",
                                  "DISCARD TEMP", "BEGIN; DISCARD ALL; COMMIT"]))]

    def step_sql_prepared(self):
        name = self.pick(SQL_NAMES)
        return [self.q(self.pick([
            f"PREPARE {name} AS SELECT current_setting('search_path'), count(*) "
            "FROM shared_table",
            f"PREPARE {name} (int) AS SELECT $1 * 3",
            f"EXECUTE {name}", f"EXECUTE {name}(14)", f"DEALLOCATE {name}",
            f"DEALLOCATE PREPARE {name}", "DEALLOCATE ALL",
        ]))]

    def step_protocol(self):
        name = self.pick(PROTOCOL_NAMES)
        return [self.pick([
            Action("prepare", self.pick(["SELECT $1::int * 2",
                                         "SELECT current_setting('work_mem') || $1::text"]),
                   name=name),
            Action("exec", name=name, params=(str(self.rng.randrange(100)),)),
            Action("describe", name=name),
            self.q(f"DEALLOCATE {name}"),
        ])]

    def step_data(self):
        statement = self.data_statement()
        if self.chance(0.3) and not statement.startswith("SHOW"):
            return [Action("P", statement)]
        return [self.q(statement)]

    def step_temp_table(self):
        return [self.q("CREATE TEMP TABLE scratch (x int)"),
                self.q("INSERT INTO scratch VALUES (1), (2)"),
                self.q(self.data_statement()),
                self.q("SELECT sum(x) FROM scratch"),
                self.q("DROP TABLE scratch")]


# ---------------------------------------------------------------------------------------
# Running actions on one side


SETTINGS_SEPARATOR = "\x1f"  # between name=setting pairs: no setting value holds it
OBSERVE_SQL = (
    "SELECT current_user, session_user, current_setting('role'), "
    "(SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    " WHERE c.oid = to_regclass('shared_table')), "
    + ", ".join(f"current_setting('{guc}')" for guc in OBSERVED_GUCS) + ", "
    "(SELECT string_agg(name || '=' || setting, E'\\x1f' ORDER BY name) FROM pg_settings "
    " WHERE context IN ('user', 'superuser') AND name NOT LIKE '%.%'), "
    "(SELECT string_agg(name || parameter_types::text, ' ' "
    " ORDER BY name) FROM pg_prepared_statements WHERE from_sql)")
OBSERVE = Action("observe")
CLEANUP = Action("Q", "ROLLBACK -- cleanup: the step left a transaction open")
OBSERVE_COLUMNS = (["current_user", "session_user", "role", "shared_table in"]
                   + OBSERVED_GUCS + ["settings", "SQL prepared statements"])


def describe_result(result):
    """A PGresult as a comparable tuple: status, SQLSTATE, tag, rows (text)."""
    status = pq.ExecStatus(result.status).name
    if result.status == pq.ExecStatus.FATAL_ERROR:
        sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
        return (status, sqlstate.decode() if sqlstate else None)
    rows = tuple(tuple(None if value is None else value.decode()
                       for value in (result.get_value(r, c) for c in range(result.nfields)))
                 for r in range(result.ntuples))
    return (status, (result.command_status or b"").decode(), result.nfields, rows)


def error_message(result):
    message = result.error_message
    return message.decode(errors="replace").strip() if message else ""


class Side:
    """One connection (pooled or twin) of a client, driven through libpq directly."""

    def __init__(self, label, conninfo):
        self.label = label
        self.conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
        self.pgconn = self.conn.pgconn
        self.messages = []  # error messages of the last action, for reports

    def close(self):
        self.conn.close()

    def cancel(self):
        try:
            self.conn.cancel()
        except psycopg.Error:
            pass

    def idle(self):
        return self.pgconn.transaction_status == pq.TransactionStatus.IDLE

    def run(self, action):
        """The action's results (describe_result tuples), then the transaction status."""
        self.messages = []
        if self.pgconn.status != pq.ConnStatus.OK:
            return (("CONNECTION LOST", self.pgconn.error_message.decode(errors="replace")),)
        try:
            self.send(action)
            results = self.collect(action.kind == "describe")
        except psycopg.OperationalError as error:
            return (("CONNECTION LOST", str(error)),)
        return results + (pq.TransactionStatus(self.pgconn.transaction_status).name,)

    def send(self, action):
        pgconn, name = self.pgconn, action.name.encode()
        params = [p.encode() for p in action.params]
        if action.kind in ("Q", "observe"):
            pgconn.send_query((OBSERVE_SQL if action.kind == "observe" else action.sql).encode())
        elif action.kind == "P":
            pgconn.send_query_params(action.sql.encode(), params)
        elif action.kind == "prepare":
            pgconn.send_prepare(name, action.sql.encode())
        elif action.kind == "exec":
            pgconn.send_query_prepared(name, params)
        elif action.kind == "describe":
            pgconn.send_describe_prepared(name)
        else:
            raise ValueError(action.kind)

    def collect(self, describing):
        results = []
        while (result := self.pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                self.messages.append(error_message(result))
            outcome = describe_result(result)
            if describing and result.status == pq.ExecStatus.COMMAND_OK:
                outcome += (result.nparams, tuple(result.param_type(i)
                                                  for i in range(result.nparams)))
            results.append(outcome)
        if self.pgconn.status != pq.ConnStatus.OK:
            results.append(("CONNECTION LOST",
                            self.pgconn.error_message.decode(errors="replace").strip()))
        return tuple(results)


# ---------------------------------------------------------------------------------------
# Clients and their failures


@dataclass
class Failure:
    seed: int
    client: int
    step: int
    what: str
    executed: list     # (step index, Action) of everything the client sent, in order
    pooled: object
    twin: object
    messages: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    def report(self):
        lines = [f"pooldiff: seed {self.seed} client {self.client} step {self.step}: "
                 f"{self.what}" if self.seed is not None else
                 f"pooldiff script: client {self.client} action {self.step}: {self.what}",
                 "  what this client sent (an observation follows every step; "
                 ">> marks the action that differed):"]
        for number, (step, action) in enumerate(self.executed):
            last = number == len(self.executed) - 1
            lines.append(f"  {'>>' if last else '  '} {step:3} {action}")
        lines += format_outcomes(self.what, self.pooled, self.twin)
        for label, messages in self.messages.items():
            if messages:
                lines.append(f"  {label} errors: {messages}")
        if self.seed is not None:
            lines.append(f"  replay: make fuzz-pool SEEDS={self.seed}   or   /usr/bin/python3 "
                         f"tests/integration/pooldiff.py --seed {self.seed}")
            lines.append("  (the client's sequence replays exactly; the interleaving of "
                         "clients on the servers may differ)")
        return "\n".join(lines)


def format_outcomes(what, pooled, twin):
    if what.startswith("observation") and observation_rows(pooled) and observation_rows(twin):
        lines = ["  observation differs (column: pgplex | direct; the other columns agree):"]
        for name, mine, theirs in zip(OBSERVE_COLUMNS, observation_rows(pooled),
                                      observation_rows(twin)):
            if name == "settings" and mine and theirs:
                lines += settings_difference(mine, theirs)
            elif mine != theirs:
                lines.append(f"    {name}: {mine!r} | {theirs!r}")
        if pooled[1:] != twin[1:]:
            lines.append(f"    transaction status: {pooled[1:]} | {twin[1:]}")
        return lines
    return [f"  pgplex: {pooled!r}", f"  direct: {twin!r}"]


def settings_difference(pooled, twin):
    """Lines for the settings whose values differ, from two SETTINGS_SEPARATOR lists."""
    mine, theirs = (dict(pair.split("=", 1) for pair in text.split(SETTINGS_SEPARATOR))
                    for text in (pooled, twin))
    return [f"    pg_settings {name}: {mine.get(name)!r} | {theirs.get(name)!r}"
            for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]


def observation_rows(outcome):
    """The observation's one row, or None when it failed."""
    if outcome and outcome[0][0] == "TUPLES_OK" and outcome[0][3]:
        return outcome[0][3][0]
    return None


@dataclass
class Endpoints:
    """Where a seed's clients connect: pgplex's port, PostgreSQL's port, on host; console:
    pgplex's admin console (session mode: to see a killed server gone)."""
    host: str
    pgplex_port: int
    direct_port: int
    console: str = ""

    def conninfo(self, pooled, extra):
        port, dbname = (self.pgplex_port, ALIAS) if pooled else (self.direct_port, TWIN_DB)
        parts = {"host": self.host, "port": port, "dbname": dbname, "user": SUPERUSER,
                 "password": SUPERUSER_PASSWORD, "connect_timeout": 10, **extra}
        return psycopg.conninfo.make_conninfo(**parts)


class Client:
    """One client thread: its two sides, its sequence, and the first failure it met."""

    def __init__(self, plan, index, endpoints, deadline, stop):
        self.plan = plan
        self.index = index
        self.endpoints = endpoints
        self.deadline = deadline
        self.stop = stop
        self.sequence = plan.sequences[index]
        self.sides = []
        self.executed = []
        self.failure = None
        self.steps_done = 0
        self.kills_done = 0

    def fail(self, step, what, pooled, twin):
        messages = {side.label: side.messages for side in self.sides}
        self.failure = Failure(self.plan.seed, self.index, step, what, list(self.executed),
                               pooled, twin, messages)

    def connect(self):
        startup = self.plan.startup[self.index]
        for label, pooled in (("pgplex", True), ("direct", False)):
            self.sides.append(Side(label, self.endpoints.conninfo(pooled, startup)))

    def run(self):
        try:
            self.connect()
            self.run_steps()
        except Exception as error:  # a crash of the tester itself is a failure too
            self.fail(self.steps_done, f"exception {type(error).__name__}: {error}",
                      None, None)
        finally:
            for side in self.sides:
                side.close()

    def same(self, step, action, what="result differs"):
        """Sends action to both sides; False (and a failure) if they answer differently."""
        if action.kind != "observe":
            self.executed.append((step, action))
        pooled, twin = (side.run(action) for side in self.sides)
        if pooled != twin:
            if action.kind == "observe":
                self.executed.append((step, action))
                what = "observation differs"
            self.fail(step, what, pooled, twin)
            return False
        return True

    def run_steps(self):
        for index, step in enumerate(self.sequence):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                return
            if not all(self.same(index, action) for action in step):
                return
            # A step may leave a transaction open (a BEGIN in a multi-statement Query that
            # failed before its COMMIT): roll it back, so servers are not held for long.
            if not self.sides[1].idle() and not self.same(index, CLEANUP):
                return
            if not self.same(index, OBSERVE):
                return
            self.steps_done = index + 1
            if self.plan.kills and index in self.plan.kills[self.index]:
                self.executed.append((index, Action("kill")))
                self.kill_server()
                self.kills_done += 1

    def kill_server(self):
        """Session mode: ends the pooled side's server with pg_terminate_backend once pgplex
        is done with what it reads after a step, and waits until pgplex has seen it go. The
        next step must find the session as it was (pgplex moves it to another server)."""
        with psycopg.connect(self.endpoints.console, autocommit=True) as console:
            port = local_port(self.sides[0].pgconn)
            row = wait_for(lambda: console_row(console, "SHOW CLIENTS", "port", port,
                                               lambda r: r["pgplex_state"] == "active"))
            pid = int(row["remote_pid"])
            with psycopg.connect(self.endpoints.conninfo(False, {}), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_for(lambda: console_row(console, "SHOW SERVERS", "remote_pid", pid) is None)


def local_port(pgconn):
    """The client side's port of a libpq connection (what SHOW CLIENTS calls port)."""
    import socket
    with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
        return sock.getsockname()[1]


def console_row(console, command, column, value, accept=lambda row: True):
    """The row of an admin SHOW whose column is value (as text), if accept takes it."""
    result = console.pgconn.exec_(command.encode())
    names = [result.fname(c).decode() for c in range(result.nfields)]
    for r in range(result.ntuples):
        row = {name: (result.get_value(r, c) or b"").decode() for c, name in enumerate(names)}
        if row.get(column) == str(value):
            return row if accept(row) else None
    return None


def wait_for(probe, seconds=10):
    """Polls probe until it returns something true, and returns that."""
    deadline = time.monotonic() + seconds
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"pooldiff: still waiting after {seconds} s")
        time.sleep(0.01)
    return found


def run_plan(plan, endpoints, seconds=60):
    """Runs every client of plan in its own thread; returns (failures, steps done)."""
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    clients = [Client(plan, i, endpoints, deadline, stop) for i in range(plan.clients)]
    threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    watchdog(clients, threads, deadline + STEP_SECONDS_LIMIT)
    failures = sorted((client.failure for client in clients if client.failure),
                      key=lambda failure: failure.at)
    plan.kills_done = sum(client.kills_done for client in clients)
    return failures, sum(client.steps_done for client in clients)


def watchdog(clients, threads, give_up_at):
    """Waits for the threads; past give_up_at, cancels every query still running (a hang:
    each such client then reports the cancellation as its failure)."""
    for thread in threads:
        thread.join(max(0.0, give_up_at - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        for client in clients:
            for side in client.sides:
                side.cancel()
        for thread in threads:
            thread.join(10)
        for client, thread in zip(clients, threads):
            if thread.is_alive() and client.failure is None:
                client.fail(client.steps_done, "hang: still blocked after cancel",
                            None, None)


def run_script(script, endpoints, startup=None):
    """Runs script, a list of (client number, Action or simple Query text; Action("kill")
    kills the client's server, in session pooling), in that order
    in this thread: one fixed interleaving, for minimal reproductions. Each action and then
    its client's observation are compared, and at the end every client's observation.
    Returns the first Failure, or None."""
    count = max(client for client, _ in script) + 1
    startup = startup or {}
    plan = Plan(None, count, 0, [startup.get(i, {}) for i in range(count)],
                [[] for _ in range(count)])
    clients = [Client(plan, i, endpoints, float("inf"), threading.Event())
               for i in range(count)]
    try:
        for client in clients:
            client.connect()
        for number, (index, action) in enumerate(script):
            action = Action("Q", action) if isinstance(action, str) else action
            client = clients[index]
            if action.kind == "kill":
                client.kill_server()
                continue
            if not (client.same(number, action) and client.same(number, OBSERVE)):
                return client.failure
        for client in clients:  # at the end, every client once more, on whatever server
            if not client.same(len(script), OBSERVE):
                return client.failure
        return None
    finally:
        for client in clients:
            for side in client.sides:
                side.close()


def parse_seeds(text):
    """"7", "1-20" or "1,5,9-12" → list of ints."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def print_plan(seed):
    plan = make_plan(seed, omitted_from_environment())
    print(f"seed {seed}: {plan.clients} clients, pool_size {plan.pool_size}")
    for client, sequence in enumerate(plan.sequences):
        print(f"client {client} startup {plan.startup[client]}")
        for index, step in enumerate(sequence):
            for number, action in enumerate(step):
                print(f"  {index:3}.{number} {action}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", help="one seed")
    parser.add_argument("--seeds", help="seeds: A-B or a,b,c")
    parser.add_argument("--minutes", type=float, help="run seeds from the first until then")
    parser.add_argument("--print", type=int, metavar="SEED", help="print a seed's plan")
    parser.add_argument("--omit", help="leave out steps mentioning these words (a,b,...)")
    args = parser.parse_args()
    if args.omit:
        os.environ["POOLDIFF_OMIT"] = args.omit
    if args.print is not None:
        print_plan(args.print)
        return 0
    env = dict(os.environ, POOLDIFF_SEEDS=args.seed or args.seeds or "1-20")
    if args.minutes:
        env["POOLDIFF_MINUTES"] = str(args.minutes)
    here = Path(__file__).resolve().parent
    env.setdefault("PGPLEX_BIN", str(here.parents[1] / "build" / "pgplex"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
               str(here / "test_pool_differential.py")]
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
