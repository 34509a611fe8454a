"""SHOW STATE and SHOW MEM on the management database: what each worker holds (clients and
servers by state, pins, buffers, bytes queued), live while clients work, and back to the
idle baseline once they are gone: no buffer, no queued byte, no pin, no server lent."""

import threading
import time

import pytest

from conftest import connect, wait_until
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
    """SHOW STATE once the workers published (each tick): no client but maybe this psql
    (counted only when a tick came after it connected), nothing lent, pinned or held."""
    rows = show(port, "SHOW STATE")
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
            rows = show(pgplex.port, "SHOW STATE")
            return total(rows, "cl_active") >= 1 and total(rows, "sv_active") >= 1
        assert wait_until(lent, 5), "SHOW STATE never showed the open transaction"
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
