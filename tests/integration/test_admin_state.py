"""SHOW WORKERS and SHOW MEM on the management database: what each worker holds (clients and
servers by state, pins, buffers, bytes queued), live while clients work, and back to the
idle baseline once they are gone: no buffer, no queued byte, no pin, no server lent."""

import threading
import time

import pytest

from conftest import RawClient, connect, message, wait_until
from test_admin_clusters import ADMIN, show

pytestmark = pytest.mark.usefixtures("hard_timeout")

LENT = ("sv_syncing", "sv_active", "sv_resetting")
HELD = ("pinned", "ring_buffers_used", "out_buffers_used", "chunks_used", "bytes_queued")


def total(rows, column):
    return sum(int(row[column]) for row in rows)


def clients(rows):
    return sum(int(value) for row in rows for name, value in row.items()
               if name.startswith("cl_"))


def at_baseline(port):
    """SHOW WORKERS once the workers published (each tick): no client but maybe this psql
    (counted only when a tick came after it connected), nothing lent, pinned or held."""
    rows = show(port, "SHOW WORKERS")
    busy = ("cl_waiting", "cl_syncing", "cl_active")
    return (rows and clients(rows) <= 1 and all(total(rows, c) == 0 for c in busy + LENT + HELD),
            rows)


def load(port, seconds):
    """Clients doing what pools see: short transactions, a pin by a temp table, a large
    value each way, one left mid-transaction by a client that goes away."""
    deadline = time.monotonic() + seconds

    def worker(number):
        with connect(port) as conn:
            while time.monotonic() < deadline:
                conn.execute("SELECT count(*) FROM pg_class").fetchone()
                with conn.transaction():
                    conn.execute("SET LOCAL work_mem = '8MB'")
                    conn.execute("SELECT repeat('x', 2000000)").fetchone()
                conn.execute("SELECT %s::text", ["y" * 300000]).fetchone()
                if number == 0:
                    conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (x int)")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    left = connect(port)
    left.execute("BEGIN")
    left.execute("SELECT 1")
    left.close()  # gone mid-transaction
    for thread in threads:
        thread.join(seconds + 30)


def test_state_shows_a_transaction_in_flight(make_pgplex):
    pgplex = make_pgplex(settings=ADMIN, workers=2)
    with connect(pgplex.port, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")

        def lent():
            rows = show(pgplex.port, "SHOW WORKERS")
            return total(rows, "cl_active") >= 1 and total(rows, "sv_active") >= 1
        assert wait_until(lent, 5), "SHOW WORKERS never showed the open transaction"
        conn.execute("COMMIT")


def test_every_worker_returns_to_its_idle_baseline_after_load(make_pgplex):
    pgplex = make_pgplex(settings={**ADMIN, "pool_mode": "transaction"}, workers=2,
                         pool_size=3)
    load(pgplex.port, 4)
    outcome = {}

    def settled():
        ok, outcome["rows"] = at_baseline(pgplex.port)
        return ok
    assert wait_until(settled, 10), f"not back to baseline: {outcome.get('rows')}"
    mem = {row["name"]: row for row in show(pgplex.port, "SHOW MEM")}
    assert int(mem["ring_buffers"]["used"]) == 0
    assert int(mem["ring_buffers"]["free"]) > 0
    assert int(mem["chunks"]["used"]) == 0


def by_application(rows):
    return {row["application_name"]: row for row in rows if row["database"] != "pgplex"}


def test_show_clients_lists_every_client_of_every_worker_with_what_it_waits_for(make_pgplex):
    """Transaction pooling, two servers: one client sits in an open transaction (holds a
    server, waits for nothing), one runs a long statement ("query"), one waits for a server
    ("pool"); each is listed once, with its wait's reason and age in PgBouncer's wait and
    wait_us and pgplex's wait_reason, whichever worker holds it."""
    pgplex = make_pgplex(settings={**ADMIN, "pool_mode": "transaction"}, workers=2,
                         pool_size=2, query_wait_timeout="30s")
    holder = connect(pgplex.port, autocommit=True, application_name="holder")
    sleeper = connect(pgplex.port, autocommit=True, application_name="sleeper")
    waiter = connect(pgplex.port, autocommit=True, application_name="waiter")
    idlers = [connect(pgplex.port, autocommit=True, application_name=f"idle{n}")
              for n in range(4)]
    threads = []
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        threads.append(threading.Thread(target=sleeper.execute, args=("SELECT pg_sleep(4)",)))
        threads[-1].start()
        time.sleep(0.5)
        threads.append(threading.Thread(target=lambda: waiter.execute("SELECT 'served'")))
        threads[-1].start()
        time.sleep(1.5)
        rows = show(pgplex.port, "SHOW CLIENTS")
        named = by_application(rows)
        assert sorted(named) == ["holder", "idle0", "idle1", "idle2", "idle3", "sleeper",
                                 "waiter"], rows
        assert len(rows) == 8, rows  # and this psql, asking
        asking = [row for row in rows if row["database"] == "pgplex"]
        assert [(row["pgplex_state"], row["wait_reason"]) for row in asking] == \
            [("asking", "workers")], asking
        waiting = named["waiter"]
        assert (waiting["state"], waiting["pgplex_state"], waiting["wait_reason"]) == \
            ("waiting", "waiting", "pool")
        assert int(waiting["wait"]) >= 1 and 0 <= int(waiting["wait_us"]) < 1000000
        running = named["sleeper"]
        assert (running["state"], running["wait_reason"]) == ("active", "query")
        assert int(running["wait"]) >= 1 and int(running["remote_pid"]) > 0
        held = named["holder"]
        assert (held["state"], held["pgplex_state"], held["wait_reason"]) == \
            ("active", "active", "")
        assert (held["wait"], held["wait_us"]) == ("0", "0")
        for row in rows:
            assert row["type"] == "C" and row["user"] == "payam", row
            assert row["connect_time"].endswith("UTC") and row["request_time"].endswith("UTC")
        assert len({row["id"] for row in rows}) == len(rows)
        assert {row["worker"] for row in rows} <= {"0", "1"}
        holder.execute("COMMIT")
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
        assert {row["wait_reason"] for row in show(pgplex.port, "SHOW CLIENTS")} == {"",
                                                                                     "workers"}
    finally:
        for conn in [holder, sleeper, waiter, *idlers]:
            conn.close()


def test_queries_sent_behind_show_clients_wait_for_its_answer(make_pgplex):
    """SHOW CLIENTS waits for the other workers; what the client sent after it is answered
    after it, in order."""
    pgplex = make_pgplex(settings=ADMIN, workers=2)
    with RawClient(pgplex.port) as admin:
        admin.login("payam", "pgplex")
        admin.send(message(b"Q", b"SHOW CLIENTS\0") + message(b"Q", b"SHOW VERSION\0"))
        listed = admin.results()
        assert [row[22] for row in listed] == ["asking"], listed  # pgplex_state
        assert admin.results()[0][0].startswith("PgBouncer 1.25.0 (pgplex ")
