"""The session fuzzer (session_fuzz.py): a bounded, seeded run of random client sessions,
in clear and over TLS, in transaction pooling; then pgplex must still serve, be back to
its idle baseline, and exit 0 (the fixture). PGPLEX_FUZZ_SEED replays one seed,
PGPLEX_FUZZ_SESSIONS sets how many sessions (default 600)."""

import os

import pytest

import session_fuzz
from conftest import connect, wait_until
from test_admin_state import at_baseline
from test_tls import certs, tls_settings  # noqa: F401  (certs is a fixture)

pytestmark = pytest.mark.usefixtures("hard_timeout")


def test_random_sessions_never_crash_hang_or_leak(make_pgplex, certs):  # noqa: F811
    seed = int(os.environ.get("PGPLEX_FUZZ_SEED", "1"))
    sessions = int(os.environ.get("PGPLEX_FUZZ_SESSIONS", "600"))
    # trust: sessions get past the login to the data path, where most of the state is.
    pgplex = make_pgplex(pool_size=3, workers=2, auth_type="trust",
                         settings={**tls_settings(certs, "prefer"), "pool_mode": "transaction",
                                   "admin_users": ["payam"], "auth_failure_delay": "0",
                                   "auth_failure_limit": 0, "client_login_timeout": "3s"})
    problems = session_fuzz.run(pgplex.port, seed, sessions, seconds=60)
    assert not problems, problems[:5]
    assert pgplex.running(), f"pgplex died (seed {seed}):\n{pgplex.log()[-3000:]}"
    with connect(pgplex.port, autocommit=True) as conn:
        assert conn.execute("SELECT 'still serving'").fetchone() == ("still serving",)
    rows = []

    def settled():
        ok, rows[:] = at_baseline(pgplex.port)
        return ok
    assert wait_until(settled, 15), f"not back to baseline after seed {seed}: {rows}"
