"""Transaction pooling isolation, tested differentially: pooldiff.py runs 8-16 concurrent
clients per seed, each sending the same random session-state sequence through pgplex
(pool_mode = "transaction", 1-3 servers) and to its own direct connection, and fails on
the first difference a client sees (see pooldiff.py's docstring for the design).

By default a few fixed seeds run, each for at most SEED_SECONDS. Longer runs:
  POOLDIFF_SEEDS=1-200 (or "5" or "1,7,9-12")   those seeds instead
  POOLDIFF_MINUTES=M                              seeds from the first of POOLDIFF_SEEDS
                                                  on, one after another, for M minutes
  POOLDIFF_SECONDS=S                              per-seed time limit
  POOLDIFF_OMIT="SET ROLE,set_config"             leave out steps mentioning these (to
                                                  look past a known bug; same sequences else)
as `make fuzz-pool SEEDS=1-200 [MINUTES=M]` or `tests/integration/pooldiff.py --seeds ...`.

NOTE: when this file was written, pgplex had known isolation bugs (set_config and SET ROLE
leaking between clients, RESET going to the server's default instead of the client's
startup value, replay failures killing clients) and these seeds failed on them. That is
what this test is for: it is deliberately not marked xfail. A failure prints the seed,
the client, its sequence up to the difference, both sides' answers and a replay command.
"""

import os
import time

import pytest

import pooldiff
from conftest import HOST, PASSWORDS

DEFAULT_SEEDS = "1-10"
SEED_SECONDS = float(os.environ.get("POOLDIFF_SECONDS", "10"))
MINUTES = float(os.environ.get("POOLDIFF_MINUTES", "0"))
SEEDS = pooldiff.parse_seeds(os.environ.get("POOLDIFF_SEEDS", DEFAULT_SEEDS))


@pytest.fixture(scope="module")
def pooldiff_databases(cluster):
    """The superuser and roles pooldiff's clients use, and its two databases."""
    cluster.admin_psql(pooldiff.role_sql())
    existing = cluster.admin_psql("SELECT string_agg(datname, ' ') FROM pg_database").split()
    for dbname in (pooldiff.POOL_DB, pooldiff.TWIN_DB):
        if dbname not in existing:
            cluster.admin_psql(f"CREATE DATABASE {dbname} OWNER {pooldiff.SUPERUSER}")
    return cluster


def start_pgplex(cluster, make_pgplex, pool_size):
    """pgplex in transaction pooling, with alias pooldiff.ALIAS for POOL_DB."""
    alias = {"host": HOST, "port": cluster.port, "dbname": pooldiff.POOL_DB,
             "pool_size": pool_size}
    return make_pgplex(users={**PASSWORDS, pooldiff.SUPERUSER: pooldiff.SUPERUSER_PASSWORD},
                       settings={"pool_mode": "transaction"},
                       databases={pooldiff.ALIAS: alias}, query_wait_timeout="60s")


def run_seed(seed, cluster, make_pgplex):
    """Runs one seed on a fresh pgplex and fresh schemas; returns (failures, steps, plan)."""
    plan = pooldiff.make_plan(seed, pooldiff.omitted_from_environment())
    for dbname in (pooldiff.POOL_DB, pooldiff.TWIN_DB):
        cluster.admin_psql(pooldiff.setup_sql(plan.clients), dbname=dbname)
    pgplex = start_pgplex(cluster, make_pgplex, plan.pool_size)
    endpoints = pooldiff.Endpoints(HOST, pgplex.port, cluster.port)
    failures, steps = pooldiff.run_plan(plan, endpoints, SEED_SECONDS)
    code, killed = pgplex.stop()  # one pgplex per seed, not hundreds in a long run
    assert (code, killed) == (0, False), f"pgplex exited {code} (killed: {killed}) after " \
        f"seed {seed}:\n{pgplex.log()[-5000:]}"
    return failures, steps, plan


def summary(seed, failures, steps, plan):
    head = (f"seed {seed}: {plan.clients} clients, pool_size {plan.pool_size}, "
            f"{steps} steps compared, {len(failures)} client(s) diverged")
    if not failures:
        return head
    others = [f"client {f.client} step {f.step}: {f.what}" for f in failures[1:]]
    return "\n".join([head, "first divergence:", failures[0].report()]
                     + (["other clients:"] + others if others else []))


# Expected to fail against pgplex builds that still have the isolation bugs listed above.
@pytest.mark.skipif(MINUTES > 0, reason="POOLDIFF_MINUTES runs the timed test instead")
@pytest.mark.parametrize("seed", SEEDS)
def test_pooled_clients_see_what_direct_clients_see(seed, pooldiff_databases, make_pgplex):
    failures, steps, plan = run_seed(seed, pooldiff_databases, make_pgplex)
    if failures:
        pytest.fail(summary(seed, failures, steps, plan), pytrace=False)
    print(summary(seed, failures, steps, plan))


@pytest.mark.skipif(MINUTES <= 0, reason="only with POOLDIFF_MINUTES")
def test_pooled_clients_see_what_direct_clients_see_for_minutes(pooldiff_databases,
                                                                make_pgplex):
    """Seeds from the first of POOLDIFF_SEEDS upwards until POOLDIFF_MINUTES have passed;
    stops at the first seed that diverges."""
    deadline = time.monotonic() + MINUTES * 60
    seed = SEEDS[0]
    while time.monotonic() < deadline:
        failures, steps, plan = run_seed(seed, pooldiff_databases, make_pgplex)
        if failures:
            pytest.fail(summary(seed, failures, steps, plan), pytrace=False)
        print(summary(seed, failures, steps, plan), flush=True)
        seed += 1


def test_the_tester_sees_no_difference_for_clients_that_change_nothing(pooldiff_databases,
                                                                      make_pgplex):
    """pooldiff's own baseline: clients that only read, with and without startup
    parameters, observe the same on both sides (else its comparisons would be noise), and a
    seed's plan is the same every time it is made."""
    assert pooldiff.make_plan(7) == pooldiff.make_plan(7)
    plan = pooldiff.make_plan(7)
    reads = [pooldiff.Action("Q", "SELECT count(*) FROM shared_table"),
             pooldiff.Action("P", "SELECT tag FROM shared_table ORDER BY tag LIMIT 1")]
    plan.sequences = [[reads] * 5 for _ in range(plan.clients)]
    plan.startup = [{}, {"application_name": "pd_x", "options": "-c work_mem=6MB"}] * 8
    cluster = pooldiff_databases
    for dbname in (pooldiff.POOL_DB, pooldiff.TWIN_DB):
        cluster.admin_psql(pooldiff.setup_sql(plan.clients), dbname=dbname)
    pgplex = start_pgplex(cluster, make_pgplex, pool_size=2)
    failures, steps = pooldiff.run_plan(plan, pooldiff.Endpoints(HOST, pgplex.port,
                                                                 cluster.port), 20)
    assert not failures, failures[0].report()
    assert steps == 5 * plan.clients
