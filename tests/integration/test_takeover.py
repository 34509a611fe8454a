"""pgplex --takeover: a second pgplex takes the listening sockets and the clients of the
running one, which exits once its clients are handed over. Clients see at most a delay:
their connections, session settings, prepared statements and cancel keys carry on."""

import os
import random
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import assert_pgbench_clean, connect, pgbench_command, pgbench_env
from test_admin_clusters import show

TAKEOVER_SECONDS = 30


class Taker:
    """The second pgplex, started with --takeover on the first's config file."""

    def __init__(self, old):
        self.old = old
        self.log_path = old.dir / "taker.stderr"
        self.stderr = open(self.log_path, "wb")
        self.process = subprocess.Popen([old.binary, "--takeover", str(old.config_path)],
                                        cwd=old.dir, stdin=subprocess.DEVNULL,
                                        stdout=self.stderr, stderr=self.stderr)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_old_exit(self):
        """The old pgplex's exit code once it has handed everything over."""
        code = self.old.wait_exit(TAKEOVER_SECONDS)
        assert code is not None, (f"the old pgplex did not exit:\n{self.old.log()}\n"
                                  f"--- taker ---\n{self.log()}")
        return code

    def become(self):
        """The fixture stops (and checks) the taker from now on, as it would the old one."""
        self.old.process = self.process
        self.old.log_path = self.log_path
        self.old.stderr_file.close()
        self.old.stderr_file = self.stderr


def takeover_pgplex(make_pgplex, **settings):
    pgplex = make_pgplex(start=False, settings={"pool_mode": "transaction", **settings})
    pgplex.settings["takeover_socket"] = str(pgplex.dir / "takeover.sock")
    pgplex.start()
    return pgplex


def session_of(conn):
    return conn.execute("SELECT current_setting('search_path'), "
                        "current_setting('application_name')").fetchone()


def test_idle_clients_keep_their_sessions_through_a_takeover(make_pgplex):
    """Clients with settings, SQL-level and protocol-level prepared statements go over to the
    new pgplex; each keeps its own, and the old pgplex exits 0."""
    pgplex = takeover_pgplex(make_pgplex)
    rng = random.Random(1)
    clients = []
    for i in range(12):
        conn = connect(pgplex.port, autocommit=True)
        path = f"s{i}, public"
        name = f"app{i}_{rng.randrange(1000)}"
        conn.execute(f"SET search_path TO {path}")
        conn.execute(f"SET application_name TO '{name}'")
        conn.execute(f"PREPARE mine{i} AS SELECT {i} + $1::int")
        # psycopg prepares a statement on the server after prepare_threshold uses: with
        # prepare=True at once, under a name of its own.
        assert conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone() == (2 * i,)
        clients.append((conn, (path, name), i))
    pids = [conn.info.backend_pid for conn, _, _ in clients]
    taker = Taker(pgplex)
    assert taker.wait_old_exit() == 0
    taker.become()
    assert "takeover: done; 12 clients handed over" in pgplex.log(), pgplex.log()
    for conn, expected, i in clients:
        assert session_of(conn) == expected
        assert conn.execute(f"EXECUTE mine{i}(1)").fetchone() == (i + 1,)
        assert conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone() == (2 * i,)
        assert conn.info.backend_pid in pids
    with connect(pgplex.port) as fresh:
        assert session_of(fresh)[0] == '"$user", public'
    for conn, _, _ in clients:
        conn.close()


def test_transactions_under_load_lose_nothing_across_a_takeover(make_pgplex):
    """Clients running transactions back to back while the takeover happens: no error, no
    closed connection; every row they committed is there."""
    pgplex = takeover_pgplex(make_pgplex)
    with connect(pgplex.port, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS takeover_rows")
        setup.execute("CREATE TABLE takeover_rows (client int, n int)")
    stop = threading.Event()
    errors = []
    committed = {}
    longest = {}

    def run(index):
        count = 0
        longest[index] = 0.0
        try:
            with connect(pgplex.port) as conn:
                deadline = time.monotonic() + TAKEOVER_SECONDS
                while not stop.is_set() and time.monotonic() < deadline and count < 100000:
                    began = time.monotonic()
                    with conn.transaction():
                        conn.execute("INSERT INTO takeover_rows VALUES (%s, %s)", (index, count))
                        conn.execute("SELECT pg_sleep(0.001)")
                    longest[index] = max(longest[index], time.monotonic() - began)
                    count += 1
        except psycopg.Error as error:
            errors.append(f"client {index} after {count}: {error!r}")
        committed[index] = count

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    taker = Taker(pgplex)
    code = taker.wait_old_exit()
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(TAKEOVER_SECONDS)
    taker.become()
    assert code == 0
    assert not errors, errors
    assert all(count > 0 for count in committed.values()), committed
    with connect(pgplex.port) as check:
        rows = dict(check.execute("SELECT client, count(*) FROM takeover_rows "
                                  "GROUP BY client").fetchall())
    assert rows == committed
    print(f"takeover under load: {sum(committed.values())} transactions, longest "
          f"{max(longest.values()) * 1000:.1f} ms")


@pytest.mark.parametrize("protocol", ["simple", "prepared"])
def test_pgbench_through_a_takeover_has_no_errors_and_loses_no_client(make_pgplex, protocol):
    """TPC-B with 8 clients, the takeover in the middle: pgbench exits 0, every client ran to
    the end (none aborted), no transaction failed; with -M prepared each client's named
    statements came along."""
    pgplex = takeover_pgplex(make_pgplex)
    command = pgbench_command(pgplex.port,
                              ["-n", "-T", "8", "-c", "8", "-j", "2", "-M", protocol])
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=pgbench_env())
    try:
        time.sleep(2)
        taker = Taker(pgplex)
        code = taker.wait_old_exit()
        stdout, stderr = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    taker.become()
    assert code == 0
    summary = assert_pgbench_clean(subprocess.CompletedProcess(bench.args, bench.returncode,
                                                               stdout, stderr))
    assert "takeover: done; 8 clients handed over" in pgplex.log(), pgplex.log()
    print(f"pgbench -M {protocol} through a takeover: {summary}")


def test_a_client_in_a_transaction_finishes_it_on_the_old_pgplex_then_moves(make_pgplex):
    pgplex = takeover_pgplex(make_pgplex)
    conn = connect(pgplex.port)
    conn.execute("SET search_path TO pg_catalog, public")
    conn.commit()
    conn.execute("SELECT 1")  # a transaction block is open now
    taker = Taker(pgplex)
    assert pgplex.wait_log(r"accepts on every listener now", timeout=10), pgplex.log()
    time.sleep(0.5)
    assert pgplex.running(), "the old pgplex left while a client was inside a transaction"
    assert conn.execute("SELECT current_setting('search_path')").fetchone() == (
        "pg_catalog, public",)
    conn.commit()
    assert taker.wait_old_exit() == 0
    taker.become()
    assert conn.execute("SELECT current_setting('search_path')").fetchone() == (
        "pg_catalog, public",)
    conn.commit()
    conn.close()


def test_a_handed_over_client_can_still_cancel_its_query(make_pgplex):
    """Its BackendKeyData was made by the old pgplex: the new one maps that key to it."""
    pgplex = takeover_pgplex(make_pgplex)
    conn = connect(pgplex.port, autocommit=True)
    conn.execute("SELECT 1")
    taker = Taker(pgplex)
    assert taker.wait_old_exit() == 0
    taker.become()
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(20)")
    timer.join()
    assert time.monotonic() - started < 10
    assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
    conn.close()


def test_takeover_with_nothing_to_take_over_from_fails_clearly(make_pgplex):
    pgplex = make_pgplex(start=False, settings={"pool_mode": "transaction"})
    pgplex.settings["takeover_socket"] = str(pgplex.dir / "nobody.sock")
    pgplex.write()
    result = subprocess.run([pgplex.binary, "--takeover", str(pgplex.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no pgplex to take over from" in result.stderr, result.stderr


def test_a_second_takeover_takes_over_from_the_first_taker(make_pgplex):
    """The taker offers itself to be taken over on the same socket: upgrades chain."""
    pgplex = takeover_pgplex(make_pgplex)
    conn = connect(pgplex.port, autocommit=True)
    conn.execute("SET search_path TO chained, public")
    first = Taker(pgplex)
    assert first.wait_old_exit() == 0
    first.become()
    assert conn.execute("SHOW search_path").fetchone() == ("chained, public",)
    second = Taker(pgplex)
    assert second.wait_old_exit() == 0
    second.become()
    assert conn.execute("SHOW search_path").fetchone() == ("chained, public",)
    conn.close()
    assert os.path.exists(pgplex.dir / "takeover.sock")


def test_session_pooled_clients_move_with_their_session(make_pgplex):
    """Session pooling: a client between transactions moves to the new pgplex, which gives
    its next server the settings and named statements the old server had."""
    pgplex = takeover_pgplex(make_pgplex, pool_mode="session")
    clients = []
    for i in range(4):
        conn = connect(pgplex.port, autocommit=True)
        conn.execute(f"SET search_path TO sess{i}, public")
        conn.execute(f"SET application_name TO 'session{i}'")
        conn.execute(f"PREPARE mine{i} AS SELECT {i} * 10 + $1::int")
        assert conn.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone() == (i + 1,)
        clients.append((conn, i, conn.execute("SELECT pg_backend_pid()").fetchone()[0]))
    taker = Taker(pgplex)
    assert taker.wait_old_exit() == 0
    taker.become()
    for conn, i, old_backend in clients:
        assert session_of(conn) == (f"sess{i}, public", f"session{i}")
        assert conn.execute(f"EXECUTE mine{i}(1)").fetchone() == (i * 10 + 1,)
        assert conn.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone() == (i + 1,)
        # Its session is on a server of the new pgplex now.
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != old_backend
        conn.close()


def test_a_session_with_a_temporary_table_stays_on_the_old_pgplex_until_it_leaves(
        make_pgplex):
    """What no other server can be given (a temporary table) keeps the session where it
    is: the old pgplex serves it until it leaves, then exits."""
    pgplex = takeover_pgplex(make_pgplex, pool_mode="session")
    conn = connect(pgplex.port, autocommit=True)
    conn.execute("CREATE TEMPORARY TABLE mine (n int)")
    conn.execute("INSERT INTO mine VALUES (7)")
    taker = Taker(pgplex)
    assert pgplex.wait_log(r"accepts on every listener now", timeout=10), pgplex.log()
    time.sleep(1)
    assert pgplex.running()
    assert conn.execute("SELECT n FROM mine").fetchone() == (7,)
    conn.close()
    assert taker.wait_old_exit() == 0
    taker.become()


def test_many_idle_clients_are_handed_over_and_counted(make_pgplex):
    """Every idle client moves (TAKEOVER_CLIENTS, 300 by default): SHOW CLIENTS on the new
    pgplex lists them all, each still answers, and the time the handover took is printed."""
    count = int(os.environ.get("TAKEOVER_CLIENTS", "300"))
    pgplex = takeover_pgplex(make_pgplex, admin_users=["payam"], max_client_conn=count + 50)
    clients = [connect(pgplex.port, autocommit=True) for _ in range(count)]
    for index, conn in enumerate(clients):
        conn.execute(f"SET application_name TO 'many{index}'")
    started = time.monotonic()
    taker = Taker(pgplex)
    assert taker.wait_old_exit() == 0
    took = time.monotonic() - started
    taker.become()
    listed = [row for row in show(pgplex.port, "SHOW CLIENTS") if row["database"] == "payam_db"]
    assert len(listed) == count, len(listed)
    for index, conn in enumerate(clients):
        assert conn.execute("SHOW application_name").fetchone() == (f"many{index}",)
        conn.close()
    print(f"takeover of {count} idle clients: {took:.2f} s from the taker's start to the old "
          f"pgplex's exit")
