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
from wiretap import Wiretap

# The statements pgplex sends of its own (server_lease.cc, session_state.h, notify.h): the
# replay of a client's settings, prepared statements and LISTENs, the checks after a
# transaction, the reset and rollback of a server a client left.
OWN_STATEMENTS = (b"SET ", b"RESET ", b"DISCARD ALL", b"DEALLOCATE", b"ROLLBACK", b"BEGIN",
                  b"COMMIT", b"LISTEN ", b"UNLISTEN ", b"PREPARE ",
                  b"SELECT pg_catalog.lower(name), pg_catalog.current_setting(name)",
                  b"SELECT (SELECT count(*) FROM pg_catalog.pg_locks",
                  b"SELECT pg_current_wal_insert_lsn()", b"SELECT pg_catalog.set_config(",
                  b"SELECT 1/0 -- pgplex: ")


def unsent_messages(seen, sent):
    """What reached the server that no session sent whole and pgplex does not send itself."""
    unsent = []
    for kind, body in seen:
        if kind == "Q":
            text = body.split(b"\0", 1)[0]
        elif kind == "P" and body.count(b"\0") >= 2:
            text = body.split(b"\0", 2)[1]
        elif kind in "dcfF":
            text = body
        else:
            continue
        if (kind.encode(), text) in sent or (kind in "QP" and text.startswith(OWN_STATEMENTS)):
            continue
        unsent.append((kind, text[:120]))
    return unsent

pytestmark = pytest.mark.usefixtures("hard_timeout")


@pytest.fixture
def wiretap(cluster):
    tap = Wiretap(cluster.port)
    yield tap
    tap.stop()


def test_random_sessions_never_crash_hang_or_leak(make_pgplex, certs, wiretap):  # noqa: F811
    seed = int(os.environ.get("PGPLEX_FUZZ_SEED", "1"))
    sessions = int(os.environ.get("PGPLEX_FUZZ_SESSIONS", "600"))
    # trust: sessions get past the login to the data path, where most of the state is.
    # payam_db's servers are reached through the wiretap.
    pgplex = make_pgplex(pool_size=3, workers=2, auth_type="trust",
                         databases={"payam_db": {"port": wiretap.port}},
                         settings={**tls_settings(certs, "prefer"), "pool_mode": "transaction",
                                   "admin_users": ["payam"], "auth_failure_delay": "0",
                                   "auth_failure_limit": 0, "client_login_timeout": "3s"})
    sent = set()
    problems = session_fuzz.run(pgplex.port, seed, sessions, seconds=60, sent=sent)
    assert not problems, problems[:5]
    seen, framing = wiretap.messages()
    assert not framing, f"seed {seed}: the server got bytes no frontend sends: {framing[:5]}"
    assert len(seen) > sessions, f"the wiretap saw only {len(seen)} messages"
    unsent = unsent_messages(seen, sent)
    assert not unsent, f"seed {seed}: the server got messages no client sent: {unsent[:10]}"
    assert pgplex.running(), f"pgplex died (seed {seed}):\n{pgplex.log()[-3000:]}"
    with connect(pgplex.port, autocommit=True) as conn:
        assert conn.execute("SELECT 'still serving'").fetchone() == ("still serving",)
    rows = []

    def settled():
        ok, rows[:] = at_baseline(pgplex.port)
        return ok
    assert wait_until(settled, 15), f"not back to baseline after seed {seed}: {rows}"
