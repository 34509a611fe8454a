"""Config reload on SIGHUP, and pgplex --check.

A reload swaps the config for new connections only: open sessions keep their server, and
a file that does not load is refused with FILE:LINE: reason while the old config serves.
"""

import re
import signal
import subprocess
import time

import pytest

from conftest import (assert_pgbench_clean, connect, login_error, pgbench_command, pgbench_env,
                      pgplex_binary, psql, run_psql)


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def test_sighup_during_pgbench_causes_no_errors_or_aborted_clients(pgplex):
    command = pgbench_command(pgplex.port, ["-n", "-T", "8", "-c", "8", "-j", "2"])
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=pgbench_env())
    try:
        for pool_size in (30, 25, 20, 15):
            time.sleep(1.5)
            pgplex.settings["default_pool_size"] = pool_size
            pgplex.reload(settle_seconds=0)
            assert pgplex.running(), "pgplex died on SIGHUP"
        stdout, stderr = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert_pgbench_clean(subprocess.CompletedProcess(bench.args, bench.returncode,
                                                     stdout, stderr))
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_changed_alias_target_applies_to_new_sessions_while_open_ones_keep_theirs(pgplex):
    with connect(pgplex.port, dbname="payam_db", autocommit=True) as old_session:
        assert old_session.execute("SELECT current_database()").fetchone() == ("payam_db",)
        old_pid = old_session.execute("SELECT pg_backend_pid()").fetchone()[0]

        pgplex.databases["payam_db"]["dbname"] = "payam_archive"
        pgplex.reload()

        def new_session_database():
            return psql(pgplex.port, "SELECT current_database()")

        assert wait_until(lambda: new_session_database() == "payam_archive", 5), \
            f"new sessions still reach {new_session_database()} after reload"
        assert psql(pgplex.port, "SELECT note FROM archive_marker") == "this is payam_archive"
        # The open session was not touched: same server, same database.
        assert old_session.execute("SELECT current_database(), pg_backend_pid()").fetchone() \
            == ("payam_db", old_pid)


def test_removed_alias_refuses_new_sessions_after_reload(make_pgplex):
    pgplex = make_pgplex(fallback=False)
    assert psql(pgplex.port, "SELECT 1", dbname="payam_dw", user="analyst") == "1"
    pgplex.databases.pop("payam_dw")
    pgplex.reload()
    error = wait_until(lambda: login_error(pgplex.port, "analyst", "payam_dw"), 5)
    assert error is not None and error.sqlstate == "3D000", error
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_changed_auth_file_password_applies_after_reload(pgplex):
    pgplex.secrets["analyst"] = "rotated-secret"
    pgplex.reload()
    assert wait_until(lambda: psql_ok(pgplex.port, "rotated-secret"), 5)
    assert not psql_ok(pgplex.port, "analyst-secret")


def psql_ok(port, password):
    return run_psql(port, "SELECT 1", dbname="payam_dw", user="analyst",
                    password=password).returncode == 0


def break_line(text, line_number, replacement):
    lines = text.splitlines()
    lines[line_number - 1] = replacement
    return "\n".join(lines) + "\n"


def test_config_with_syntax_error_is_refused_on_reload_and_old_config_keeps_serving(pgplex):
    with connect(pgplex.port, autocommit=True) as open_session:
        good = pgplex.config_path.read_text()
        bad_line = 4
        pgplex.config_path.write_text(break_line(good, bad_line, "workers = = 2"))
        pgplex.signal(signal.SIGHUP)
        match = pgplex.wait_log(r"config\.toml:(\d+):", timeout=5)
        assert match, f"no FILE:LINE: in the log after a bad reload:\n{pgplex.log()}"
        assert int(match.group(1)) == bad_line, match.group(0)
        assert pgplex.running()
        # The old config still serves both new and open sessions.
        assert psql(pgplex.port, "SELECT current_user", dbname="payam_dw",
                    user="analyst") == "dataplatform_ro"
        assert open_session.execute("SELECT 1").fetchone() == (1,)
    # A fixed file is taken on the next SIGHUP.
    pgplex.databases["payam_db"]["dbname"] = "payam_archive"
    pgplex.reload()
    assert wait_until(lambda: psql(pgplex.port, "SELECT current_database()")
                      == "payam_archive", 5)


def test_config_with_invalid_value_is_refused_on_reload(pgplex):
    good = pgplex.config_path.read_text()
    lines = good.splitlines()
    bad_line = next(i for i, line in enumerate(lines, 1) if line.startswith("pool_mode"))
    pgplex.config_path.write_text(break_line(good, bad_line, 'pool_mode = "sometimes"'))
    pgplex.signal(signal.SIGHUP)
    match = pgplex.wait_log(r"config\.toml:(\d+):", timeout=5)
    assert match, f"no FILE:LINE: in the log after a bad reload:\n{pgplex.log()}"
    assert int(match.group(1)) == bad_line, match.group(0)
    assert psql(pgplex.port, "SELECT 1") == "1"


def run_check(path):
    return subprocess.run([pgplex_binary(), "--check", str(path)], capture_output=True,
                          text=True, timeout=30)


def test_check_accepts_a_good_config(make_pgplex):
    pgplex = make_pgplex(start=False)
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 0, result.stderr
    # Nothing, "ok", or "FILE: ok".
    assert result.stdout.strip() == "" or result.stdout.strip().endswith("ok"), result.stdout


@pytest.mark.parametrize("broken, reason_hint", [
    ("workers = = 2", None),
    ('pool_mode = "sometimes"', "pool_mode"),
    ('query_wait_timeout = "soon"', "query_wait_timeout"),
    ("max_client_conn = -5", "max_client_conn"),
])
def test_check_rejects_a_bad_config_with_file_line_reason(make_pgplex, broken, reason_hint):
    pgplex = make_pgplex(start=False)
    pgplex.write()
    lines = pgplex.config_path.read_text().splitlines()
    key = broken.split(" ")[0]
    # Replace the setting's own line, or the [pgplex] header's next line for a syntax error.
    bad_line = next((i for i, line in enumerate(lines, 1) if line.startswith(key + " ")), 3)
    bad = pgplex.dir / "bad.toml"
    bad.write_text(break_line(pgplex.config_path.read_text(), bad_line, broken))
    result = run_check(bad)
    assert result.returncode == 1, (result.returncode, result.stderr)
    match = re.search(r"bad\.toml:(\d+): (.+)", result.stderr)
    assert match, result.stderr
    assert int(match.group(1)) == bad_line, result.stderr
    if reason_hint:
        assert reason_hint in match.group(2), result.stderr


def test_check_rejects_a_missing_auth_file(make_pgplex):
    pgplex = make_pgplex(start=False)
    pgplex.write()
    (pgplex.dir / "userlist.txt").unlink()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert "userlist.txt" in result.stderr, result.stderr
