"""pgbench through pgplex: many clients at once, simple and extended protocol.

appdb holds pgbench's scale-1 tables (owned by app); the "*" alias takes clients to it
with their own credentials. -n skips pgbench's VACUUM so runs are timed loads only.
"""

import pytest

from conftest import assert_pgbench_clean, run_pgbench


@pytest.mark.smoke
def test_pgbench_select_only_8_clients_completes_without_errors(pgplex):
    result = run_pgbench(pgplex.port, ["-n", "-S", "-T", "5", "-c", "8", "-j", "2"])
    summary = assert_pgbench_clean(result)
    assert summary["clients"] == 8
    assert summary["processed"] > 0


def test_pgbench_tpcb_8_clients_completes_without_errors(pgplex):
    result = run_pgbench(pgplex.port, ["-n", "-T", "5", "-c", "8", "-j", "2"])
    assert_pgbench_clean(result)


@pytest.mark.parametrize("mode", ["extended", "prepared"])
def test_pgbench_protocol_mode_completes_without_errors(pgplex, mode):
    result = run_pgbench(pgplex.port, ["-n", "-M", mode, "-T", "5", "-c", "8", "-j", "2"])
    assert_pgbench_clean(result)


def test_pgbench_connection_per_transaction_completes_without_errors(pgplex):
    # -C: a new login for every transaction, so pgplex's accept, auth and pool hand-back
    # paths carry the load rather than the query path.
    result = run_pgbench(pgplex.port, ["-n", "-S", "-C", "-t", "50", "-c", "4", "-j", "2"])
    summary = assert_pgbench_clean(result)
    assert summary["processed"] == 200
