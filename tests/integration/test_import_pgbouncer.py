"""pgplex import-pgbouncer: realistic pgbouncer.ini files (tests/integration/data/pgbouncer/)
are imported, the pgplex.toml printed starts pgplex, a query goes through it, and every
setting pgplex does not take is a comment naming its file:line.

Each file has @PORT@ (pgplex's port), @PGPORT@ (the primary's), @DIR@ (the test's
directory), @CERTS@ and @AUTH_USER@ put in before it is imported; the directory tree is
copied so relative auth_file and %include paths resolve beside the copy."""

import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from conftest import HOST, PASSWORDS, connect
from test_tls import certs, tls_connect  # noqa: F401 (certs is a fixture)

DATA = Path(__file__).resolve().parent / "data" / "pgbouncer"
AUTH_USER = "imp_auth"
AUTH_PASSWORD = "imp-auth-secret"


def imported(pgplex, name, files=None, **names):
    """Copies the data files into pgplex's directory with the names put in (and `files`,
    name → text, beside them), imports `name`, checks the result with pgplex --check and
    makes it pgplex's config. Returns the TOML text."""
    target = pgplex.dir / "pgbouncer"
    shutil.copytree(DATA, target)
    values = {"PORT": pgplex.port, "PGPORT": pgplex.cluster.port, "DIR": pgplex.dir,
              "AUTH_USER": AUTH_USER, **names}
    for ini in target.rglob("*.ini"):
        text = ini.read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", str(value))
        ini.write_text(text)
    for file, text in (files or {}).items():
        (target / file).write_text(text)
    userlist = "".join(f'"{user}" "{secret}"\n' for user, secret in pgplex.secrets.items())
    for directory in (target, pgplex.dir):  # relative to the ini, or @DIR@/userlist.txt
        (directory / "userlist.txt").write_text(userlist)
    result = subprocess.run([pgplex.binary, "import-pgbouncer", str(target / name)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    toml = result.stdout
    pgplex.render = lambda: toml
    check = pgplex.dir / "check.toml"
    check.write_text(toml)
    checked = subprocess.run([pgplex.binary, "--check", str(check)], capture_output=True,
                             text=True, timeout=10)
    assert checked.returncode == 0, f"{checked.stdout}{checked.stderr}\n{toml}"
    return toml


def unmapped(toml):
    """{(file name, line): [key, ...]} of the '# unmapped:' comments."""
    found = {}
    for match in re.finditer(r"^# unmapped: (\S+):(\d+): ([^:]+):", toml, re.M):
        found.setdefault((Path(match[1]).name, int(match[2])), []).append(match[3])
    return found


def line_of(name, pattern):
    """The 1-based line of the first line of data file `name` matching the regex."""
    for number, line in enumerate((DATA / name).read_text().splitlines(), 1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern} not in {name}")


def one_value(port, sql, **options):
    with connect(port, **options) as conn:
        return conn.execute(sql).fetchone()[0]


def test_debian_default_config_imports_and_serves(make_pgplex):
    pgplex = make_pgplex(start=False, secrets="plain", fallback=False)
    toml = imported(pgplex, "debian.ini")
    assert f'listen = ["localhost:{pgplex.port}", "{pgplex.dir}:{pgplex.port}"]' in toml
    assert 'auth_type = "md5"' in toml
    pgplex.start()
    assert one_value(pgplex.port, "SELECT count(*) FROM orders") == 100
    found = unmapped(toml)
    assert "logfile" in found[("debian.ini", line_of("debian.ini", r"^logfile"))]
    assert "pidfile" in found[("debian.ini", line_of("debian.ini", r"^pidfile"))]


def test_fallback_and_connection_strings_import_with_their_options(make_pgplex):
    pgplex = make_pgplex(start=False, secrets="scram")
    toml = imported(pgplex, "fallback.ini")
    assert 'pool_mode = "transaction"' in toml
    assert 'server_lifetime = "1800000ms"' in toml
    assert 'application_name = "readonly_client"' in toml
    pgplex.start()
    # Through "*": the client's own database and user.
    assert one_value(pgplex.port, "SELECT current_database()", dbname="appdb",
                     user="app") == "appdb"
    # payam_dw: another database, user and application_name.
    with connect(pgplex.port, dbname="payam_dw", user="dataplatform_ro") as conn:
        row = conn.execute("SELECT current_database(), current_user, "
                           "current_setting('application_name')").fetchone()
    assert row == ("payam_db", "dataplatform_ro", "readonly_client")
    assert one_value(pgplex.port, "SELECT current_user", dbname="orders",
                     user="payam") == "payam"
    found = unmapped(toml)
    orders = line_of("fallback.ini", r"^orders")
    assert found[("fallback.ini", orders)] == ["connect_query=SELECT 1"]
    assert "max_db_connections = 10" in toml
    assert "server_round_robin" in \
        found[("fallback.ini", line_of("fallback.ini", r"^server_round_robin"))]
    assert found[("fallback.ini", line_of("fallback.ini", r"^spread"))] == [
        "host=127.0.0.1,127.0.0.2", "load_balance_hosts=round-robin"]
    assert f"fallback.ini:{orders}: connect_query=SELECT 1:" in toml


@pytest.fixture
def lookup_roles(cluster):
    cluster.admin_psql(f"DROP ROLE IF EXISTS {AUTH_USER}; CREATE ROLE {AUTH_USER} LOGIN "
                       f"SUPERUSER PASSWORD '{AUTH_PASSWORD}'")
    cluster.admin_psql("DROP ROLE IF EXISTS imp_alice; "
                       "CREATE ROLE imp_alice LOGIN PASSWORD 'alice-secret'")
    yield cluster
    cluster.admin_psql("DROP ROLE IF EXISTS imp_alice")


def test_auth_query_and_hba_import_and_look_users_up(make_pgplex, lookup_roles):
    secrets = {AUTH_USER: AUTH_PASSWORD, "payam": PASSWORDS["payam"]}
    pgplex = make_pgplex(start=False, users=secrets)
    toml = imported(pgplex, "auth_query.ini",
                    files={"hba.conf": "host all all 127.0.0.1/32 scram-sha-256\n"})
    assert 'auth_type = "hba"' in toml
    assert "auth_query = \"SELECT usename, passwd FROM pg_shadow WHERE usename=$1\"" in toml
    pgplex.start()
    assert one_value(pgplex.port, "SELECT current_user", dbname="payam_db", user="imp_alice",
                     password="alice-secret") == "imp_alice"
    with pytest.raises(psycopg.OperationalError):
        connect(pgplex.port, dbname="payam_db", user="imp_alice", password="wrong")
    found = unmapped(toml)
    assert "stats_users" in \
        found[("auth_query.ini", line_of("auth_query.ini", r"^stats_users"))]


def test_tls_and_include_import_and_serve_over_tls(make_pgplex, certs):  # noqa: F811
    pgplex = make_pgplex(start=False, secrets="scram", fallback=False)
    certificate_dir = Path(certs["server.crt"]).parent
    toml = imported(pgplex, "tls.ini", CERTS=certificate_dir)
    assert 'client_tls_sslmode = "require"' in toml
    assert '[databases."payam_db"]' in toml
    pgplex.start()
    with tls_connect(pgplex.port, "require") as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    found = unmapped(toml)
    assert "client_tls_ecdhcurve" in \
        found[("tls.ini", line_of("tls.ini", r"^client_tls_ecdhcurve"))]
    include = line_of("conf.d/databases.ini", r"^%include")
    assert re.search(rf"databases\.ini:{include}: not read: %include \.\./tls\.ini is a cycle",
                     toml), toml


def test_per_user_and_per_database_pool_settings_import(make_pgplex):
    pgplex = make_pgplex(start=False, secrets="plain", fallback=False)
    toml = imported(pgplex, "users.ini")
    assert '[users."app"]\npool_mode = "transaction"\n' in toml
    assert "reserve_pool_size = 1" in toml
    pgplex.start()
    assert one_value(pgplex.port, "SELECT count(*) FROM pgbench_branches", dbname="appdb",
                     user="app") == 1
    assert one_value(pgplex.port, "SELECT current_user") == "payam"
    found = unmapped(toml)
    # PgBouncer's limits are pgplex's too: none is left as a comment.
    assert ("users.ini", line_of("users.ini", r"^app =")) not in found
    assert ("users.ini", line_of("users.ini", r"^max_db_connections")) not in found
    assert '[users."app"]\npool_mode = "transaction"\nmax_user_connections = 10\n' in toml
    assert "max_user_client_connections = 5" in toml
    assert "max_db_connections = 50\n" in toml and "max_user_connections = 20\n" in toml
