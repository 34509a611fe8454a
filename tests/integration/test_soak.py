"""The soak test (soak.py): about twenty clients over a transaction pool of three servers -
pooldiff's grammar compared with direct twins, cancels, clients that vanish mid-transaction,
pins, LISTEN/NOTIFY, large values and COPY - in busy periods and quiet points, for
SOAK_SECONDS (default 60; `make check` runs 30 in the release build and 15 under ASan;
`make soak DURATION=3600` runs an hour). Every step must be served within
soak.STEP_LIMIT_SECONDS, pgplex and the server must be back at their idle baseline at each
quiet point, pgplex's RSS must stay flat after
warm-up, and pgplex must then stop cleanly. SOAK_SEED (default 1) picks the sequences.
"""

import os

import pytest

import pooldiff
import soak
from conftest import HOST, PASSWORDS
from test_admin_clusters import ADMIN
from test_large_messages import deadline
from test_pool_differential import pooldiff_databases  # noqa: F401 - a fixture

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SEED = int(os.environ.get("SOAK_SEED", "1"))
# Past the run itself: the last period's clients finishing their steps, a quiet point,
# setup. A hang within that is the watchdog's to report; past it, SIGALRM ends the test.
OVERRUN_SECONDS = soak.STEP_LIMIT_SECONDS + soak.QUIET_SECONDS + 120


def test_many_clients_over_a_small_pool_are_served_and_leave_nothing_behind(
        pooldiff_databases, make_pgplex):  # noqa: F811 - the fixture imported above
    cluster = pooldiff_databases
    alias = {"host": HOST, "port": cluster.port, "dbname": pooldiff.POOL_DB,
             "pool_size": soak.POOL_SIZE}
    # query_wait_timeout below the watchdog's limit: a client left waiting for a server
    # gets pgplex's error (a failure), not a silent stall.
    pgplex = make_pgplex(users={**PASSWORDS, pooldiff.SUPERUSER: pooldiff.SUPERUSER_PASSWORD},
                         settings={"pool_mode": "transaction", **ADMIN},
                         databases={pooldiff.ALIAS: alias}, query_wait_timeout="20s")
    target = soak.Target(pgplex.port, cluster.port, pgplex.process.pid)
    with deadline(int(SECONDS + OVERRUN_SECONDS)):
        report = soak.run_soak(target, SECONDS, SEED)
    code, killed = pgplex.stop()
    stopped = f"pgplex then exited {code} (killed: {killed})"
    if report.failures:
        pytest.fail(f"{report.failure_text()}\n{stopped}", pytrace=False)
    print(report.summary())
    assert (code, killed) == (0, False), f"{stopped}:\n{pgplex.log()[-5000:]}"
