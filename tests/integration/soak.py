"""soak: many clients over a small transaction pool, for long; nothing may stall, leak or be lost.

Load. About twenty client threads share one pool of POOL_SIZE server connections (alias
pooldiff.ALIAS, user pooldiff.SUPERUSER, pool_mode = "transaction"), so most of them queue
for a server most of the time:
- pooldiff clients (POOLDIFF_CLIENTS) run the differential tester's grammar: each sends its
  random session-state steps through pgplex and to a direct twin and compares everything
  (pooldiff.Client, unchanged). Any difference is a failure: the chaos around them must
  never leak into a client's session (a setting, a role, a prepared statement, a
  cancellation meant for someone else).
- chaos clients (CHAOS_CLIENTS) pick, step after step, one of the ChaosClient steps: short
  transactions that count in their own row of soak.counters and take advisory transaction
  locks (one key shared by all, so a transaction pgplex forgot to roll back stalls
  everyone); transactions, queries and COPYs left by a client that closes its socket
  mid-way (the counter shows whether anything of them committed, the row lock whether the
  server was given back in a transaction); temporary tables and session advisory locks
  (both pin the client to its server) left the same way; pg_sleep(5) cancelled from
  another thread (57014, then the connection works and still has its own settings); values
  of 1-16 MB written and read back byte for byte; COPY FROM STDIN of thousands of rows and
  COPY TO STDOUT back; reconnects.
- a race client (RaceClient) runs queries of a few milliseconds while a thread of its own
  fires cancels at random moments, many of them just as a query ends and its server goes to
  another client. The race client may see 57014, and nothing else; no other client may
  ever see it.
- listen clients (ListenClient) LISTEN through pgplex (which answers LISTEN itself and
  keeps one listener connection per pool) and NOTIFY from a second connection, in
  autocommit, inside transactions, and rolled back: every committed notification must
  arrive within NOTIFY_SECONDS, in order, once, and a rolled-back one never.

Served within its timeout. Each client times each step (a pooldiff action, a chaos step, a
connect). A watchdog (the main thread) fails the run when a client spends more than
STEP_LIMIT_SECONDS in one step, naming the step and showing pgplex's SHOW WORKERS and the
server's pg_stat_activity at that moment; pgplex's query_wait_timeout (shorter, in
test_soak) makes a client that never gets a server fail with an error instead. Every error
a client does not expect is a failure.

Quiet points. The run alternates busy periods (random lengths, up to 60 s, shorter in short
runs) and quiet points: every client finishes its step and disconnects, then within
QUIET_SECONDS pgplex's SHOW WORKERS must be back at its idle baseline (test_admin_state: no
client busy, no server lent, no pin, no buffer or byte held) and the server must hold no
transaction, advisory lock or temporary table of the pool's database, and at most
pool_size + 1 (the listener) connections of it. Then pgplex's RSS is sampled: it must stay
flat after the first period, the warm-up (see rss_problem).

Determinism. A seed fixes the period lengths (random.Random(seed)) and each client's whole
random sequence (random.Random(seed * 1000 + client)); the interleaving of clients comes
from the threads. A failure prints the seed and a replay command.

Run it with pytest (test_soak.py starts PostgreSQL and pgplex), as `make soak
DURATION=3600 [SEED=S]`, or as a script: `soak.py --seconds 600 --seed 7` (runs that test).
"""

import argparse
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import errors, pq

import pooldiff
from conftest import HOST, RawClient, message
from test_admin_clusters import show
from test_admin_state import at_baseline
from test_listen import listening_client, wait_notifies

POOL_SIZE = 3
POOLDIFF_CLIENTS = 8      # pooldiff's clients 0..7 (their schemas pd_c0_* ..)
CHAOS_CLIENTS = 8
LISTEN_CLIENTS = 2
STEP_LIMIT_SECONDS = 30   # one step longer than this is a stall
QUIET_SECONDS = 10        # from the last client's disconnect to the idle baseline
NOTIFY_SECONDS = 10       # from a NOTIFY's commit to its delivery
PERIOD_SECONDS_MAX = 60
SLEEP_SECONDS = 5         # the pg_sleep a cancel interrupts
LARGE_VALUE_MAX = 16 << 20
SHARED_LOCK = 1           # the advisory lock key every chaos transaction may take
LINE_MAX = 1000           # characters of a report line
DEFAULT_WORK_MEM = "4MB"  # PostgreSQL's (pgcluster.sh leaves it); chaos clients never SET it


def replay_hint(seconds, seed):
    return (f"replay: make soak DURATION={int(seconds)} SEED={seed}   or   /usr/bin/python3 "
            f"tests/integration/soak.py --seconds {int(seconds)} --seed {seed}\n"
            "(each client's sequence replays exactly; the interleaving of clients may differ)")


# ---------------------------------------------------------------------------------------
# Where the soak connects, and its tables


@dataclass
class Target:
    """pgplex (its port and pid) in front of the server (direct_port), pool as pooldiff
    sets it up: alias ALIAS of POOL_DB, SUPERUSER clients. pgplex_port also answers SHOW
    STATE (admin_users)."""
    pgplex_port: int
    direct_port: int
    pgplex_pid: int
    pool_size: int = POOL_SIZE

    @property
    def endpoints(self):
        return pooldiff.Endpoints(HOST, self.pgplex_port, self.direct_port)

    def pooled(self, **extra):
        """A transaction-pooled psycopg connection, autocommit."""
        return psycopg.connect(self.endpoints.conninfo(True, extra), autocommit=True)

    def direct(self, dbname=pooldiff.POOL_DB):
        """A connection straight to the server, bypassing pgplex (setup and checks)."""
        return psycopg.connect(host=HOST, port=self.direct_port, dbname=dbname,
                               user=pooldiff.SUPERUSER, password=pooldiff.SUPERUSER_PASSWORD,
                               autocommit=True, connect_timeout=10)

    def raw(self):
        """A logged-in RawClient through pgplex: for clients that vanish mid-way."""
        client = RawClient(self.pgplex_port, timeout=STEP_LIMIT_SECONDS)
        try:
            client.login(pooldiff.SUPERUSER, pooldiff.ALIAS, pooldiff.SUPERUSER_PASSWORD)
        except BaseException:
            client.close()
            raise
        return client


# Run in POOL_DB before a soak: the chaos clients' tables.
CHAOS_SQL = ("DROP SCHEMA IF EXISTS soak CASCADE; CREATE SCHEMA soak;"
             "CREATE TABLE soak.counters (client int PRIMARY KEY, n bigint NOT NULL);"
             "CREATE TABLE soak.blobs (client int PRIMARY KEY, data bytea);"
             "CREATE TABLE soak.copy_rows (client int, n int, note text);"
             "CREATE INDEX ON soak.copy_rows (client)")


def prepare_databases(target, chaos_indexes):
    """Fresh schemas: pooldiff's in both of its databases, the soak's in POOL_DB (the
    roles and databases themselves exist: test_pool_differential.pooldiff_databases)."""
    for dbname in (pooldiff.POOL_DB, pooldiff.TWIN_DB):
        with target.direct(dbname) as conn:
            conn.execute(pooldiff.setup_sql(POOLDIFF_CLIENTS))
    with target.direct() as conn:
        conn.execute(CHAOS_SQL)
        conn.execute("INSERT INTO soak.counters SELECT unnest(%s::int[]), 0", (chaos_indexes,))


# ---------------------------------------------------------------------------------------
# Clients


class Clock:
    """What a client is doing now and since when (for the watchdog), and how many steps of
    each kind it ran and the slowest of each."""

    def __init__(self):
        self.current = None   # (what, started) while a step runs
        self.failed_in = None  # what the innermost step that raised was doing
        self.counts = Counter()
        self.slowest = Counter()

    @contextlib.contextmanager
    def step(self, kind, what=None):
        """Times a step. A step within a step (a connect) is current while it runs, then
        the outer one again."""
        outer = self.current
        started = time.monotonic()
        self.current = (what or kind, started)
        try:
            yield
        except BaseException:
            self.failed_in = self.failed_in or self.current[0]
            raise
        finally:
            self.current = outer
            self.counts[kind] += 1
            self.slowest[kind] = max(self.slowest[kind], time.monotonic() - started)


class Unexpected(Exception):
    """A client saw something it must not: a wrong answer or an error it did not ask for."""


class SoakClient:
    """One client thread's state across the run. run_period runs steps until stop is set,
    then closes its connections; the first exception ends its run as its failure."""

    kind = "client"

    def __init__(self, index, seed, target):
        self.index = index
        self.seed = seed
        self.rng = random.Random(seed * 1000 + index)
        self.target = target
        self.clock = Clock()
        self.events = Counter()   # things worth counting besides steps (cancels, ...)
        self.failure = None

    def name(self):
        return f"{self.kind} client {self.index}"

    def run_period(self, period, stop):
        try:
            while not stop.is_set() and self.failure is None:
                self.step(period)
        except Exception as error:  # any exception is the failure this run reports
            self.fail(period, f"{type(error).__name__}: {describe(error)}")
        finally:
            self.close()

    def fail(self, period, what):
        doing = self.clock.failed_in or (self.clock.current or ("between steps",))[0]
        self.failure = f"{now()} {self.name()}, period {period}, during {doing!r}: {what}"

    def step(self, period):
        raise NotImplementedError

    def close(self):
        pass


def now():
    """UTC wall time, as pgplex's log lines have it: to find a failure's moment there."""
    moment = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03}"


def describe(error):
    """An error in one line, with its SQLSTATE when the server sent one."""
    sqlstate = getattr(error, "sqlstate", None)
    text = " ".join(str(error).split())
    if not text and error.__traceback__ is not None:
        # A bare assertion (psycopg's own checks have no message): where it was raised.
        frames = traceback.extract_tb(error.__traceback__)
        text = "raised at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                                          for f in reversed(frames[-4:]))
    return f"[{sqlstate}] {text}" if sqlstate and sqlstate not in text else text


class PooldiffClient(SoakClient):
    """pooldiff's client i (its grammar and startup parameters), one pooldiff.Client per
    period on one endless sequence; its failures are pooldiff's reports."""

    kind = "pooldiff"

    def __init__(self, index, seed, target):
        super().__init__(index, seed, target)
        grammar = pooldiff.Grammar(self.rng, index)
        self.startup = grammar.startup()
        self.sequence = iter(grammar.step, None)  # endless: step() never returns None

    def run_period(self, period, stop):
        plan = pooldiff.Plan(self.seed, POOLDIFF_CLIENTS, self.target.pool_size,
                             {self.index: self.startup}, {self.index: self.sequence})
        client = TimedPooldiffClient(plan, self.index, self.target.endpoints, float("inf"),
                                     stop)
        client.clock = self.clock
        client.run()
        self.events["pooldiff steps compared"] += client.steps_done
        if client.failure:
            # pooldiff's own replay hint names fuzz-pool; the soak prints its own. Lines
            # cut at LINE_MAX: an observation that failed on one side is printed whole.
            report = client.failure.report().split("\n  replay:")[0].splitlines()
            self.failure = "\n".join([f"{now()} {self.name()}, period {period}:"] +
                                     [line[:LINE_MAX] for line in report])


class TimedPooldiffClient(pooldiff.Client):
    """pooldiff.Client whose connects and actions the soak's watchdog can time."""

    clock = None

    def connect(self):
        with self.clock.step("pooldiff connect"):
            super().connect()

    def same(self, step, action, what="result differs"):
        with self.clock.step("pooldiff action", f"pooldiff step {step}: {action}"[:300]):
            return super().same(step, action, what)


class ChaosClient(SoakClient):
    """Picks one chaos step after another (STEPS, by weight). Keeps one psycopg connection
    (reopened after a reconnect step) with its own application_name, which pgplex must
    bring along to every server it lends: the steps check it."""

    kind = "chaos"
    STEPS = (("short_transaction", 30), ("abandoned_transaction", 8),
             ("abandoned_query", 4), ("abandoned_copy", 3), ("pin_and_leave", 6),
             ("cancelled_sleep", 6), ("large_value", 4), ("copy_round_trip", 5),
             ("reconnect", 3))

    def __init__(self, index, seed, target):
        super().__init__(index, seed, target)
        self.conn = None
        self.counter = 0          # what this client's row of soak.counters must hold
        self.app = f"soak_c{index}"
        self.session_lock = 100000 + index
        self.warmed_up = False

    def step(self, period):
        if not self.warmed_up:  # the run's first step: see RSS_GROWTH_KB
            self.warmed_up = True
            with self.clock.step("large_value"):
                self.large_value(LARGE_VALUE_MAX)
            return
        name = self.rng.choices([n for n, _ in self.STEPS], [w for _, w in self.STEPS])[0]
        with self.clock.step(name):
            getattr(self, name)()
        time.sleep(self.rng.uniform(0, 0.02))

    def connection(self):
        if self.conn is None:
            with self.clock.step("connect"):
                self.conn = self.target.pooled(application_name=self.app)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def expect(self, condition, what):
        if not condition:
            raise Unexpected(what)

    def check_counter(self, row):
        """row: (n, application_name) as the counter update returned them."""
        self.expect(row == (self.counter, self.app),
                    f"counter row says {row}, expected ({self.counter}, {self.app!r}): a "
                    "transaction committed that should not have, or the other way round")

    # steps ------------------------------------------------------------------------------

    def short_transaction(self):
        conn = self.connection()
        commit = self.rng.random() < 0.8
        with conn.transaction(force_rollback=not commit):
            if self.rng.random() < 0.5:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SHARED_LOCK,))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.index,))
            if self.rng.random() < 0.3:
                conn.execute("SET LOCAL work_mem = '7MB'")
            row = conn.execute("UPDATE soak.counters SET n = n + 1 WHERE client = %s "
                               "RETURNING n, current_setting('application_name')",
                               (self.index,)).fetchone()
            self.expect(row == (self.counter + 1, self.app), f"counter update returned {row}"
                        f", expected ({self.counter + 1}, {self.app!r})")
        self.counter += commit
        row = conn.execute("SELECT n, current_setting('application_name') "
                           "FROM soak.counters WHERE client = %s", (self.index,)).fetchone()
        self.check_counter(row)
        work_mem = conn.execute("SHOW work_mem").fetchone()[0]
        self.expect(work_mem == DEFAULT_WORK_MEM, f"work_mem is {work_mem}: a SET LOCAL "
                    "outlived its transaction, or another client's SET came along")

    def abandoned_transaction(self):
        """BEGIN, an update of our counter (its row lock held), maybe the shared lock, then
        the socket closes: pgplex must roll it back before the server serves anyone."""
        with self.target.raw() as client:
            client.query("BEGIN")
            client.query(f"UPDATE soak.counters SET n = n + 1 WHERE client = {self.index}")
            if self.rng.random() < 0.5:
                client.query(f"SELECT pg_advisory_xact_lock({SHARED_LOCK})")

    def abandoned_query(self):
        """A query still running on the server when the client goes: pgplex closes that
        server; the transaction must not commit."""
        with self.target.raw() as client:
            client.send(message(b"Q", f"BEGIN; UPDATE soak.counters SET n = n + 1 WHERE "
                                      f"client = {self.index}; SELECT pg_sleep(2)\0".encode()))
            time.sleep(self.rng.uniform(0, 0.5))

    def abandoned_copy(self):
        """COPY FROM STDIN cut off mid-stream by a closed socket: nothing of it stays."""
        rows = "".join(f"{self.index}\t{n}\tabandoned\n" for n in range(self.rng.randint(1, 500)))
        with self.target.raw() as client:
            client.send(message(b"Q", b"COPY soak.copy_rows (client, n, note) FROM STDIN\0"))
            kind, body = client.read_message()
            self.expect(kind == b"G", f"COPY FROM STDIN answered {kind} {body[:200]}")
            client.send(message(b"d", rows.encode()))

    def pin_and_leave(self):
        """A temporary table and a session advisory lock pin the client to its server; it
        uses both, then leaves: with a Terminate or a bare close, having dropped them or
        not. Afterwards no one may see the lock (the quiet point checks pg_locks) or the
        table."""
        with self.target.raw() as client:
            client.query("CREATE TEMP TABLE soak_pinned (x int)")
            client.query("INSERT INTO soak_pinned SELECT generate_series(1, 100)")
            client.query(f"SELECT pg_advisory_lock({self.session_lock})")
            for _ in range(self.rng.randint(1, 4)):
                rows = client.query("SELECT count(*), current_setting('application_name') "
                                    "FROM soak_pinned")
                self.expect(rows == [["100", ""]], f"pinned client read {rows}")
            if self.rng.random() < 0.3:
                client.query(f"DROP TABLE soak_pinned; SELECT pg_advisory_unlock("
                             f"{self.session_lock})")
                self.expect(client.query("SELECT 1") == [["1"]], "no answer after unpinning")
            if self.rng.random() < 0.5:
                client.send(message(b"X"))  # Terminate; else the socket just closes

    def cancelled_sleep(self):
        """pg_sleep(5) cancelled after 0.2-1 s, and again every 0.5 s until it ends (a
        cancel that comes while the client still waits for a server has nothing to stop):
        57014, and the connection then works with its own settings."""
        conn = self.connection()
        finished = threading.Event()
        problems = []

        def cancel(delay):
            try:
                while not finished.wait(delay):
                    conn.cancel()
                    self.events["sleep cancels sent"] += 1
                    delay = 0.5
            except psycopg.Error as error:
                problems.append(f"conn.cancel() failed: {describe(error)}")

        canceller = threading.Thread(target=cancel, args=(self.rng.uniform(0.2, 1.0),),
                                     daemon=True)
        canceller.start()
        try:
            conn.execute(f"SELECT pg_sleep({SLEEP_SECONDS})")
            problems.append(f"pg_sleep({SLEEP_SECONDS}) was never cancelled")
        except errors.QueryCanceled:
            self.events["sleeps cancelled"] += 1
        finally:
            finished.set()
            canceller.join(STEP_LIMIT_SECONDS)
        self.expect(not canceller.is_alive() and not problems, problems or "canceller hangs")
        row = conn.execute("SELECT current_setting('application_name')").fetchone()
        self.expect(row == (self.app,), f"after the cancel: {row}")

    def large_value(self, size=None):
        """1-16 MB as bytea or text, written as a parameter and read back whole."""
        conn = self.connection()
        size = size or self.rng.randint(1, LARGE_VALUE_MAX >> 20) << 20
        data = self.rng.randbytes(4096) * (size // 4096)
        if self.rng.random() < 0.5:
            conn.execute("INSERT INTO soak.blobs VALUES (%s, %b) ON CONFLICT (client) "
                         "DO UPDATE SET data = EXCLUDED.data", (self.index, data))
            back = conn.execute("SELECT data FROM soak.blobs WHERE client = %s", (self.index,),
                                binary=self.rng.random() < 0.5).fetchone()[0]
        else:
            data = data.hex()[:size]
            back = conn.execute("SELECT %s::text", (data,)).fetchone()[0]
        self.expect(back == data, f"a {size >> 20} MB value came back different "
                                  f"({len(back)} bytes)")
        self.events["MB of large values"] += size >> 20

    def copy_round_trip(self):
        """COPY FROM STDIN, then COPY TO STDOUT of the same rows in another transaction
        (maybe on another server), then delete them."""
        conn = self.connection()
        count = self.rng.randint(1000, 5000)
        with conn.cursor() as cursor:
            with cursor.copy("COPY soak.copy_rows (client, n, note) FROM STDIN") as copy:
                for n in range(count):
                    copy.write_row((self.index, n, f"row {n} of client {self.index}"))
            with cursor.copy(f"COPY (SELECT n FROM soak.copy_rows WHERE client = "
                             f"{self.index}) TO STDOUT") as copy:
                back = [int(row[0]) for row in copy.rows()]
        self.expect(sorted(back) == list(range(count)),
                    f"COPY wrote {count} rows, COPY TO read back {len(back)}")
        conn.execute("DELETE FROM soak.copy_rows WHERE client = %s", (self.index,))

    def reconnect(self):
        self.close()
        row = self.connection().execute("SELECT n, current_setting('application_name') FROM "
                                        "soak.counters WHERE client = %s",
                                        (self.index,)).fetchone()
        self.check_counter(row)


class RaceClient(SoakClient):
    """Queries of a few milliseconds (alone, or a few in a transaction) while its own
    thread sends cancels at random moments. The only error it may see is 57014; after one
    it rolls back if it must, and goes on."""

    kind = "race"

    def __init__(self, index, seed, target):
        super().__init__(index, seed, target)
        self.app = f"soak_r{index}"
        self.conn = None
        self.pauses = random.Random(seed * 1000 + index + 500)  # the canceller's own stream

    def run_period(self, period, stop):
        done = threading.Event()
        canceller = threading.Thread(target=self.cancel_at_random, args=(period, done),
                                     daemon=True)
        try:
            with self.clock.step("connect"):
                self.conn = self.target.pooled(application_name=self.app)
            canceller.start()
            while not stop.is_set() and self.failure is None:
                self.step(period)
        except Exception as error:  # any exception is the failure this run reports
            self.fail(period, f"{type(error).__name__}: {describe(error)}")
        finally:
            done.set()
            if canceller.is_alive():
                canceller.join(STEP_LIMIT_SECONDS)
            self.close()

    def cancel_at_random(self, period, done):
        try:
            while not done.wait(self.pauses.uniform(0.005, 0.1)):
                self.conn.cancel()
                self.events["race cancels sent"] += 1
        except psycopg.Error as error:
            self.fail(period, f"conn.cancel() failed: {describe(error)}")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def step(self, period):
        conn = self.conn
        count = self.rng.randint(1, 20000)
        query = ("SELECT count(*), current_setting('application_name') "
                 "FROM generate_series(1, %s)")
        with self.clock.step("race query"):
            try:
                if self.rng.random() < 0.3:
                    # BEGIN/COMMIT by hand: psycopg 3.1's conn.transaction() counts the
                    # transaction before its BEGIN runs and never uncounts it when the BEGIN
                    # itself is cancelled (it can be, waiting for a server), then asserts.
                    conn.execute("BEGIN")
                    for _ in range(self.rng.randint(2, 4)):
                        self.check(conn.execute(query, (count,)).fetchone(), count)
                    conn.execute("COMMIT")
                else:
                    self.check(conn.execute(query, (count,)).fetchone(), count)
            except errors.QueryCanceled:
                self.events["race queries cancelled"] += 1
                self.roll_back()

    def roll_back(self):
        """Out of a transaction a cancel broke (the ROLLBACK may be cancelled too)."""
        for _ in range(10):
            if self.conn.info.transaction_status == pq.TransactionStatus.IDLE:
                return
            try:
                self.conn.execute("ROLLBACK")
            except errors.QueryCanceled:
                self.events["race queries cancelled"] += 1
        raise Unexpected("still in a transaction after 10 ROLLBACKs")

    def check(self, row, count):
        if row != (count, self.app):
            raise Unexpected(f"race query returned {row}, expected ({count}, {self.app!r})")


class ListenClient(SoakClient):
    """A listener (LISTEN through pgplex) and a notifier connection. Each step NOTIFYs
    its channel one way or another; the listener must then have received exactly the
    committed notifications so far, in order. Now and then the listener reconnects (its
    channel goes from pgplex's listener and comes back)."""

    kind = "listen"

    def __init__(self, index, seed, target):
        super().__init__(index, seed, target)
        self.channel = f"soak_n{index}"
        self.listener = self.notifier = None
        self.expected = []
        self.sent = 0

    def close(self):
        for conn in (self.listener, self.notifier):
            if conn is not None:
                conn.close()
        self.listener = self.notifier = None

    def listen(self):
        with self.clock.step("listen"):
            if self.listener is not None:
                self.listener.close()
            target = self.target
            self.listener = listening_client(target.pgplex_port, dbname=pooldiff.ALIAS,
                                             user=pooldiff.SUPERUSER,
                                             password=pooldiff.SUPERUSER_PASSWORD)
            self.listener.execute(f"LISTEN {self.channel}")
            self.expected = []

    def step(self, period):
        if self.listener is None or self.rng.random() < 0.05:
            self.listen()
        if self.notifier is None:
            with self.clock.step("connect"):
                self.notifier = self.target.pooled()
        with self.clock.step("notify"):
            self.notify(f"p{period}-{self.sent}")
        with self.clock.step("wait for notification"):
            if self.rng.random() < 0.3:
                self.listener.execute("SELECT 1")
            received = wait_notifies(self.listener, len(self.expected), NOTIFY_SECONDS)
            if received != self.expected:
                raise Unexpected(f"listener on {self.channel} received {received[-5:]} "
                                 f"(last 5 of {len(received)}), expected {self.expected[-5:]}")
        self.events["notifications"] += 1
        time.sleep(self.rng.uniform(0, 0.05))

    def notify(self, payload):
        self.sent += 1
        conn, form = self.notifier, self.rng.randrange(3)
        if form == 0:
            conn.execute(f"NOTIFY {self.channel}, '{payload}'")
        elif form == 1:
            with conn.transaction():
                conn.execute("SELECT 1")
                conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
        else:
            with conn.transaction(force_rollback=True):
                conn.execute(f"NOTIFY {self.channel}, 'rolled back {payload}'")
            conn.execute(f"NOTIFY {self.channel}, '{payload}'")
        self.expected.append((self.channel, payload))


def make_clients(seed, target):
    """pooldiff clients 0.., then the chaos, race and listen clients."""
    first_chaos = POOLDIFF_CLIENTS
    clients = [PooldiffClient(i, seed, target) for i in range(POOLDIFF_CLIENTS)]
    clients += [ChaosClient(first_chaos + i, seed, target) for i in range(CHAOS_CLIENTS)]
    race = first_chaos + CHAOS_CLIENTS
    clients.append(RaceClient(race, seed, target))
    clients += [ListenClient(race + 1 + i, seed, target) for i in range(LISTEN_CLIENTS)]
    return clients


# ---------------------------------------------------------------------------------------
# The run: busy periods, a watchdog, quiet points


@dataclass
class Report:
    seconds: float
    seed: int
    failures: list = field(default_factory=list)
    quiet_points: list = field(default_factory=list)   # (at seconds, RSS kB, settle s)
    steps: Counter = field(default_factory=Counter)
    slowest: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)

    def summary(self):
        lines = [f"soak seed {self.seed}, {self.seconds:.0f} s: "
                 f"{len(self.quiet_points)} quiet points, {sum(self.steps.values())} steps, "
                 f"{len(self.failures)} failure(s)"]
        lines += [f"  {kind}: {count} steps, slowest {self.slowest[kind]:.2f} s"
                  for kind, count in sorted(self.steps.items())]
        lines += [f"  {name}: {count}" for name, count in sorted(self.events.items())]
        lines.append("  quiet points (at s: pgplex RSS MB, baseline reached after s): " +
                     ", ".join(f"{at:.0f}: {rss / 1024:.1f}, {settle:.1f}"
                               for at, rss, settle in self.quiet_points))
        return "\n".join(lines)

    def failure_text(self):
        return "\n\n".join([self.summary(), *self.failures,
                            replay_hint(self.seconds, self.seed)])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sanitized(pid):
    """Whether pgplex runs under ASan, whose quarantine and shadow memory grow RSS anyway."""
    with open(f"/proc/{pid}/maps") as maps:
        return "libasan" in maps.read()


# After warm-up pgplex's memory is its fixed pools plus what its allocator keeps. The
# largest pool, each worker's receive buffer ring (buffer_size x buffer_count, 32 MiB), is
# touched page by page as buffers cycle through it: every chaos client's first step sends
# and reads back LARGE_VALUE_MAX, so the warm-up period cycles each worker's ring (without
# it a first quiet point after 10 s of small queries showed 77 MB, later ones 100 MB).
# Other pages may still be touched later (a race-only run stepped once from 44 to 52 MB and
# stayed there), and glibc's arenas keep freed memory: up to 20% or 32 MB above the first
# quiet point, whichever is larger, is that; a leak per client, connection or message
# passes it in a long run. A slower leak shows as growth that does not stop: in a run of
# RSS_TREND_POINTS quiet points or more, every sample of each third above every sample of
# the third before (a one-off step up, as above, is not that), by RSS_TREND_KB in all. Less
# is what the allocator's high-water marks do: runs of 15 and 20 minutes crept 0.4 MB after
# warm-up, slower and slower (0.3 MB in the first 10 minutes, 0.1 MB in the next 10).
RSS_GROWTH_FRACTION = 0.20
RSS_GROWTH_KB = 32 * 1024
RSS_TREND_POINTS = 9
RSS_TREND_KB = 4 * 1024


def rss_problem(quiet_points):
    """Why the RSS samples (kB) are not flat after the first (warm-up) one, or None."""
    if len(quiet_points) < 2:
        return None
    samples = [(at, rss) for at, rss, _ in quiet_points]
    baseline = samples[0][1]
    limit = baseline + max(RSS_GROWTH_FRACTION * baseline, RSS_GROWTH_KB)
    over = [(at, rss) for at, rss in samples[1:] if rss > limit]
    if over:
        at, rss = over[0]
        return (f"pgplex RSS grew from {baseline / 1024:.1f} MB after warm-up to "
                f"{rss / 1024:.1f} MB at {at:.0f} s (limit {limit / 1024:.1f} MB)")
    after = [rss for _, rss in samples[1:]]
    if len(after) >= RSS_TREND_POINTS:
        third = len(after) // 3
        first, middle, last = after[:third], after[third:-third], after[-third:]
        if (min(middle) > max(first) and min(last) > max(middle) and
                min(last) - max(first) >= RSS_TREND_KB):
            return (f"pgplex RSS keeps growing after warm-up: {after[0] / 1024:.1f} MB, "
                    f"then up to {max(first) / 1024:.1f}, {max(middle) / 1024:.1f} and "
                    f"{max(last) / 1024:.1f} MB over the three thirds of the run")
    return None


def server_leftovers(target):
    """What the server holds for POOL_DB that a quiet pool should not: transactions,
    advisory locks, temporary tables, more connections than pool_size + the listener.
    An empty list when there is none."""
    with target.direct() as conn:
        states = conn.execute(
            "SELECT state, count(*) FROM pg_stat_activity WHERE datname = %s AND "
            "backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY state",
            (pooldiff.POOL_DB,)).fetchall()
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                             ).fetchone()[0]
        temps = conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
                             ).fetchone()[0]
    problems = []
    if sum(count for _, count in states) > target.pool_size + 1:
        problems.append(f"server connections of the pool: {dict(states)}")
    if any(state != "idle" for state, _ in states):
        problems.append(f"server connections not idle: {dict(states)}")
    if locks:
        problems.append(f"{locks} advisory locks held")
    if temps:
        problems.append(f"{temps} temporary tables left")
    return problems


def snapshot(target):
    """pgplex's SHOW WORKERS and the server's pg_stat_activity of the pool's database, as
    text for a report (or why either could not be read)."""
    def state():  # the columns that are not 0, per worker
        return [{name: value for name, value in row.items()
                 if name == "worker" or value not in ("0", "")}
                for row in show(target.pgplex_port, "SHOW WORKERS")]

    def activity():
        with target.direct() as conn:
            return conn.execute(
                "SELECT pid, state, wait_event, round(extract(epoch FROM clock_timestamp() - "
                "state_change)::numeric, 1)::text || ' s', left(query, 120) FROM "
                "pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (pooldiff.POOL_DB,)).fetchall()

    parts = []
    for title, read in (("pgplex SHOW WORKERS (columns not 0)", state),
                        (f"server pg_stat_activity of {pooldiff.POOL_DB}", activity)):
        try:
            rows = "\n".join(f"    {row}" for row in read())
        except Exception as error:  # a report of a stall should not fail on the stall
            rows = f"    (could not read: {describe(error)})"
        parts.append(f"  {title}:\n{rows}")
    return "\n".join(parts)


class Soak:
    """One run: its clients, its periods and quiet points, and its report; log(text)
    reports progress (each quiet point)."""

    def __init__(self, target, seconds, seed, log):
        self.target = target
        self.seconds = seconds
        self.seed = seed
        self.log = log
        self.clients = make_clients(seed, target)
        self.report = Report(seconds, seed)
        self.started = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def period_lengths(self):
        """Busy periods of random length: up to a quarter of the run, between
        PERIOD_SECONDS_MAX / 3 and PERIOD_SECONDS_MAX in a long one, at least 3 s."""
        rng = random.Random(self.seed)
        longest = max(5.0, min(PERIOD_SECONDS_MAX, self.seconds / 4))
        while True:
            yield rng.uniform(longest / 3, longest)

    def run(self):
        """Busy periods and quiet points until the time is up (at least two quiet points:
        the warm-up's and one to compare with), or the first failure."""
        for period, busy in enumerate(self.period_lengths()):
            left = self.seconds - self.elapsed()
            if period >= 2 and left <= 0:
                break
            if left < busy * 1.5:
                busy = left  # the last period takes what remains
            self.busy(period, max(busy, 3.0))
            if not self.report.failures:
                self.quiet_point(period)
            if self.report.failures:
                break
        self.check_rss()
        for client in self.clients:
            self.report.steps.update(client.clock.counts)
            self.report.events.update(client.events)
            for kind, seconds in client.clock.slowest.items():
                self.report.slowest[kind] = max(self.report.slowest[kind], seconds)
        return self.report

    def check_rss(self):
        problem = rss_problem(self.report.quiet_points)
        if problem and sanitized(self.target.pgplex_pid):
            self.log(f"soak: {problem}; not a failure under ASan")
        elif problem:
            self.report.failures.append(problem)

    def busy(self, period, seconds):
        """Every client runs for seconds, then finishes its step and disconnects; the
        watchdog runs all along."""
        stop = threading.Event()
        threads = [threading.Thread(target=client.run_period, args=(period, stop), daemon=True)
                   for client in self.clients]
        for thread in threads:
            thread.start()
        self.watch(threads, time.monotonic() + seconds, end_on_failure=True)
        stop.set()
        if self.report.failures:  # a client stuck: the others may end within a step
            joined_by = time.monotonic() + 10
            for thread in threads:
                thread.join(max(0.0, joined_by - time.monotonic()))
        else:
            self.watch(threads, time.monotonic() + STEP_LIMIT_SECONDS + 10)
        self.report.failures += [client.failure for client in self.clients if client.failure]
        if not self.report.failures:
            self.report.failures += [f"{client.name()} did not finish its period" for client,
                                     thread in zip(self.clients, threads) if thread.is_alive()]

    def watch(self, threads, until, end_on_failure=False):
        """Until then, or until every thread has ended (or a client failed, if
        end_on_failure): looks for a client stuck in one step longer than
        STEP_LIMIT_SECONDS, reports it with what pgplex and the server show, and ends."""
        while time.monotonic() < until and any(t.is_alive() for t in threads):
            if end_on_failure and any(client.failure for client in self.clients):
                return
            moment = time.monotonic()
            for client in self.clients:
                current = client.clock.current
                if current and moment - current[1] > STEP_LIMIT_SECONDS:
                    self.report.failures.append(
                        f"{now()} {client.name()} stuck for {moment - current[1]:.0f} s in "
                        f"{current[0]!r}\n{snapshot(self.target)}")
                    return
            time.sleep(0.2)

    def quiet_point(self, period):
        """Everyone has gone: pgplex and the server back at their idle baseline within
        QUIET_SECONDS; then pgplex's RSS."""
        began = time.monotonic()
        while True:
            ok, _ = at_baseline(self.target.pgplex_port)
            leftovers = server_leftovers(self.target)
            if ok and not leftovers:
                break
            if time.monotonic() - began > QUIET_SECONDS:
                self.report.failures.append(
                    f"{now()} quiet point after period {period}: not back to the idle "
                    f"baseline within {QUIET_SECONDS} s (server: {leftovers or 'idle'})\n"
                    f"{snapshot(self.target)}")
                return
            time.sleep(0.2)
        settle = time.monotonic() - began
        rss = rss_kb(self.target.pgplex_pid)
        self.report.quiet_points.append((self.elapsed(), rss, settle))
        steps = sum(sum(client.clock.counts.values()) for client in self.clients)
        pools = sum(int(row["memtotal"]) for row in show(self.target.pgplex_port, "SHOW MEM"))
        self.log(f"soak: quiet point {period} at {self.elapsed():.0f} s: baseline after "
                 f"{settle:.1f} s, pgplex RSS {rss / 1024:.1f} MB (SHOW MEM pools "
                 f"{pools / 1024:.0f} kB), {steps} steps so far")


def progress(text):
    print(text, flush=True)


def run_soak(target, seconds, seed, log=progress):
    """Sets up the schemas, runs the soak for about seconds against target (a Target);
    returns its Report (failures empty when all went well)."""
    soak = Soak(target, seconds, seed, log)
    prepare_databases(target, [c.index for c in soak.clients if isinstance(c, ChaosClient)])
    return soak.run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long (default 600)")
    parser.add_argument("--seed", type=int, default=1, help="the seed (default 1)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    env = dict(os.environ, SOAK_SECONDS=str(args.seconds), SOAK_SEED=str(args.seed))
    env.setdefault("PGPLEX_BIN", str(here.parents[1] / "build" / "pgplex"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
               str(here / "test_soak.py")]
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
