"""Shared fixtures for pgplex's integration tests.

One PostgreSQL 15 primary with one streaming replica runs for the whole session
(scripts/pgcluster.sh, in a temp dir under /tmp, on free ports from 25432 up, or from
PGPLEX_TEST_PORT_BASE, below 32768). Each test
then starts its own pgplex in front of it, from a config it can shape (pool sizes, auth,
limits, timeouts), so every test begins from a known state. At teardown pgplex gets SIGINT
and must exit 0: a crash or a hang fails the test that caused it, with pgplex's stderr.

The roles and databases mirror the payam_db / payam_dw example that pgplex's aliases are
modelled on (PgBouncer's, see docs): payam owns payam_db, dataplatform_ro may only read it;
app owns appdb with pgbench's tables.

Raw protocol helpers (RawClient) speak just enough of the v3 protocol to see the SQLSTATE of
a refused login, which libpq keeps to itself, and to misbehave on purpose.
"""

import base64
import hashlib
import hmac
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGCLUSTER = REPO / "scripts" / "pgcluster.sh"
HOST = "127.0.0.1"

# Client-side passwords: the auth file holds them (or their hashes); the server roles have
# the same ones, except analyst, who exists only in pgplex's auth file.
PASSWORDS = {
    "payam": "payam-secret",
    "dataplatform_ro": "ro-secret",
    "app": "app-secret",
    "analyst": "analyst-secret",
}
SERVER_ROLES = ("payam", "dataplatform_ro", "app")

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102

START_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 10
SERVICE_START_GRACE_SECONDS = 2


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "smoke: fast, broad tests that also run under ASan (pytest -m smoke)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the stderr of every pgplex a failed test started to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("call", "setup"):
        for instance in getattr(item, "pgplex_instances", []):
            report.sections.append((f"pgplex stderr (port {instance.port})", instance.log()))


# ---------------------------------------------------------------------------------------
# Ports and processes


_next_port = [0]
# Where the ports a run takes begin (the cluster's, then pgplex's 1000 above): a second run
# on the same machine (a long `make fuzz-pool`) takes another range, e.g. 20432. Keep it
# below the kernel's ephemeral range (ip_local_port_range, usually from 32768): there a
# client's outgoing connection can take a port between the check and pgplex's bind.
# Under pytest-xdist (`make integration JOBS=2`; make check runs one worker), worker gwN
# takes the range 3000*N above the base: its clusters and pgplex never meet another
# worker's.
PORT_BASE = int(os.environ.get("PGPLEX_TEST_PORT_BASE", "25432")) + 3000 * int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_run(first, count):
    """The first port >= first such that it and the count-1 after it are all free."""
    for port in range(first, first + 2000):
        if all(port_is_free(port + i) for i in range(count)):
            return port
    raise RuntimeError(f"no {count} free ports from {first}")


def next_free_port():
    """A free port, never one handed out before in this session (no TIME_WAIT surprises)."""
    port = free_port_run(max(_next_port[0], PORT_BASE + 1000), 1)
    _next_port[0] = port + 1
    return port


def wait_for_tcp(port, timeout, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def clean_env(**extra):
    """os.environ without any PG* variable that could steer libpq, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---------------------------------------------------------------------------------------
# Clients: psql, pgbench, psycopg


def conninfo(port, dbname, user, **extra):
    parts = {"host": HOST, "port": port, "dbname": dbname, "user": user}
    parts.update(extra)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def run_psql(port, sql, dbname="payam_db", user="payam", password=None, timeout=60, **extra):
    """Runs psql -c SQL; returns the CompletedProcess whatever its exit code."""
    if password is None:
        password = PASSWORDS.get(user, "")
    command = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At",
               conninfo(port, dbname, user, **extra), "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(PGPASSWORD=password, PGCONNECT_TIMEOUT=10))


def psql(port, sql, dbname="payam_db", user="payam", password=None, **extra):
    """Runs psql -c SQL and returns its output, failing the test if psql fails."""
    result = run_psql(port, sql, dbname, user, password, **extra)
    assert result.returncode == 0, f"psql failed ({result.returncode}): {result.stderr}"
    return result.stdout.strip()


def pgbench_command(port, args, dbname="appdb", user="app"):
    return [str(PG_BIN / "pgbench"), "-h", HOST, "-p", str(port), "-U", user, *args, dbname]


def pgbench_env(user="app"):
    return clean_env(PGPASSWORD=PASSWORDS[user], PGCONNECT_TIMEOUT=10)


def run_pgbench(port, args, dbname="appdb", user="app", timeout=120):
    return subprocess.run(pgbench_command(port, args, dbname, user), capture_output=True,
                          text=True, timeout=timeout, env=pgbench_env(user))


def pgbench_summary(output):
    """The numbers pgbench prints at the end of a run, as ints (missing ones absent)."""
    summary = {}
    patterns = {
        "processed": r"number of transactions actually processed: (\d+)",
        "failed": r"number of failed transactions: (\d+)",
        "clients": r"number of clients: (\d+)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, output)
        if match:
            summary[key] = int(match.group(1))
    return summary


def assert_pgbench_clean(result):
    """pgbench exited 0, processed transactions, and reported no failure or abort."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"pgbench exited {result.returncode}:\n{output}"
    assert "aborted" not in output, output
    assert "error" not in result.stderr.lower(), output
    summary = pgbench_summary(result.stdout)
    assert summary.get("processed", 0) > 0, output
    assert summary.get("failed", 0) == 0, output
    return summary


def connect(port, dbname="payam_db", user="payam", password=None, **kwargs):
    """A psycopg connection through pgplex (or any server on 127.0.0.1:port)."""
    if password is None:
        password = PASSWORDS.get(user, "")
    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(host=HOST, port=port, dbname=dbname, user=user,
                           password=password, **kwargs)


# ---------------------------------------------------------------------------------------
# Raw protocol


def startup_packet(params, protocol=PROTOCOL_3_0):
    body = struct.pack("!I", protocol)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def parse_error_fields(body):
    """ErrorResponse / NoticeResponse body → {'C': '28P01', 'M': '...', ...}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode(errors="replace")
    return fields


class ServerError(Exception):
    def __init__(self, fields):
        super().__init__(f"{fields.get('C')}: {fields.get('M')}")
        self.fields = fields
        self.sqlstate = fields.get("C")


class RawClient:
    """A hand-driven v3 protocol client: for SQLSTATEs of refused logins and for
    deliberately broken traffic."""

    def __init__(self, port, timeout=10, source=None):
        """source: the local address to connect from (another loopback address)."""
        self.sock = socket.create_connection((HOST, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""
        self.backend_key = None
        self.parameters = {}

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def recv_exactly(self, count):
        """count bytes, or fewer if the peer closed first."""
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_message(self):
        """(type byte, body), or (None, b'') when the peer has closed."""
        header = self.recv_exactly(5)
        if len(header) < 5:
            return None, b""
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        body = self.recv_exactly(length - 4)
        return kind, body

    def read_until_closed(self, limit=100):
        """Every message until the peer closes; fails if it keeps talking."""
        messages = []
        for _ in range(limit):
            kind, body = self.read_message()
            if kind is None:
                return messages
            messages.append((kind, body))
        raise AssertionError(f"peer did not close after {limit} messages: {messages[:5]}")

    def is_closed(self, timeout=5):
        """True if the peer closed (EOF or reset) within timeout without sending more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def startup(self, user, database, protocol=PROTOCOL_3_0, **params):
        self.send(startup_packet({"user": user, "database": database, **params}, protocol))

    def login(self, user, database, password=None, **params):
        """Logs in; returns when ReadyForQuery arrives. Raises ServerError on ErrorResponse."""
        if password is None:
            password = PASSWORDS.get(user, "")
        self.startup(user, database, **params)
        scram = None
        while True:
            kind, body = self.read_message()
            if kind is None:
                raise ConnectionError("closed during login")
            if kind == b"E":
                raise ServerError(parse_error_fields(body))
            if kind == b"R":
                scram = self.on_authentication(body, user, password, scram)
            elif kind == b"K":
                self.backend_key = struct.unpack("!II", body)
            elif kind == b"S":
                key, value, _ = body.split(b"\0", 2)
                self.parameters[key.decode()] = value.decode()
            elif kind == b"Z":
                return

    def on_authentication(self, body, user, password, scram):
        code = struct.unpack("!I", body[:4])[0]
        if code == 0:  # AuthenticationOk
            return scram
        if code == 3:  # AuthenticationCleartextPassword
            self.send(message(b"p", password.encode() + b"\0"))
            return scram
        if code == 5:  # AuthenticationMD5Password
            inner = hashlib.md5((password + user).encode()).hexdigest()
            outer = "md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest()
            self.send(message(b"p", outer.encode() + b"\0"))
            return scram
        if code == 10:  # AuthenticationSASL
            assert b"SCRAM-SHA-256\0" in body[4:], body
            scram = ScramClient(password)
            first = scram.client_first().encode()
            self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            return scram
        if code == 11:  # AuthenticationSASLContinue
            self.send(message(b"p", scram.client_final(body[4:].decode()).encode()))
            return scram
        if code == 12:  # AuthenticationSASLFinal
            scram.verify_server_final(body[4:].decode())
            return scram
        raise AssertionError(f"unexpected authentication request {code}")

    def query(self, sql):
        """Simple query; returns rows (lists of str/None). Raises ServerError on error."""
        self.send(message(b"Q", sql.encode() + b"\0"))
        return self.results()

    def results(self):
        """Reads up to ReadyForQuery; returns the rows, or raises the ErrorResponse."""
        rows, error = [], None
        while True:
            kind, body = self.read_message()
            if kind is None:  # a FATAL error, then the close
                raise error or ConnectionError("closed during query")
            if kind == b"D":
                rows.append(parse_data_row(body))
            elif kind == b"E":
                error = ServerError(parse_error_fields(body))
            elif kind == b"Z":
                if error:
                    raise error
                return rows


def parse_data_row(body):
    count = struct.unpack("!H", body[:2])[0]
    offset, values = 2, []
    for _ in range(count):
        length = struct.unpack("!i", body[offset:offset + 4])[0]
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[offset:offset + length].decode())
            offset += length
    return values


class ScramClient:
    """SCRAM-SHA-256 without channel binding (RFC 5802, RFC 7677), as libpq does it."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n=,r={self.nonce}"
        self.server_signature = None

    def client_first(self):
        return "n,," + self.client_first_bare

    def client_final(self, server_first):
        attributes = dict(item.split("=", 1) for item in server_first.split(","))
        assert attributes["r"].startswith(self.nonce), server_first
        salt = base64.b64decode(attributes["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, int(attributes["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        without_proof = f"c=biws,r={attributes['r']}"
        auth_message = f"{self.client_first_bare},{server_first},{without_proof}".encode()
        client_signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final):
        assert server_final == "v=" + base64.b64encode(self.server_signature).decode(), \
            f"bad server signature: {server_final}"


def login_error(port, user, database, password=None):
    """The ServerError a raw login gets, or None if it succeeds."""
    with RawClient(port) as client:
        try:
            client.login(user, database, password)
        except ServerError as error:
            return error
    return None


def md5_secret(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# The PostgreSQL cluster


class Cluster:
    def __init__(self, directory, port):
        self.dir = directory
        self.port = port            # the primary
        self.replica_port = port + 1
        self.scram_secrets = {}     # role → rolpassword from pg_authid

    def admin_psql(self, sql, dbname="postgres", port=None, user="postgres"):
        """psql as a superuser over the Unix socket (trust)."""
        command = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.dir,
                   "-p", str(port or self.port), "-U", user, "-d", dbname, "-c", sql]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                env=clean_env())
        assert result.returncode == 0, f"admin psql failed: {result.stderr}"
        return result.stdout.strip()

    def server_now(self):
        return self.admin_psql("SELECT now()")

    def backends(self, user, since=None, dbname=None):
        """Client backends of user on the primary (started at or after since, if given)."""
        where = f"usename = '{user}' AND backend_type = 'client backend'"
        if since:
            where += f" AND backend_start >= '{since}'"
        if dbname:
            where += f" AND datname = '{dbname}'"
        return int(self.admin_psql(f"SELECT count(*) FROM pg_stat_activity WHERE {where}"))


def setup_cluster(cluster):
    for role in SERVER_ROLES:
        cluster.admin_psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORDS[role]}'")
    cluster.admin_psql("CREATE DATABASE payam_db OWNER payam")
    cluster.admin_psql("CREATE DATABASE payam_archive OWNER payam")
    cluster.admin_psql("CREATE DATABASE appdb OWNER app")
    cluster.admin_psql(
        "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);"
        "INSERT INTO orders SELECT i, 'item ' || i FROM generate_series(1, 100) i;"
        "GRANT SELECT ON orders TO dataplatform_ro;",
        dbname="payam_db", user="payam")
    cluster.admin_psql("CREATE TABLE archive_marker (note text);"
                       "INSERT INTO archive_marker VALUES ('this is payam_archive');",
                       dbname="payam_archive", user="payam")
    result = subprocess.run(
        [str(PG_BIN / "pgbench"), "-i", "-s", "1", "-q", "-h", cluster.dir, "-p",
         str(cluster.port), "-U", "app", "appdb"],
        capture_output=True, text=True, timeout=120, env=clean_env())
    assert result.returncode == 0, f"pgbench -i failed: {result.stderr}"
    rows = cluster.admin_psql("SELECT rolname || ' ' || rolpassword FROM pg_authid "
                              f"WHERE rolname IN ({', '.join(repr(r) for r in SERVER_ROLES)})")
    for line in rows.splitlines():
        role, secret = line.split(" ", 1)
        assert secret.startswith("SCRAM-SHA-256$"), secret
        cluster.scram_secrets[role] = secret


@pytest.fixture(scope="session")
def cluster():
    """A primary + 1 streaming replica with the test roles and databases."""
    directory = tempfile.mkdtemp(prefix="pgplex-it-", dir="/tmp")
    port = free_port_run(PORT_BASE, 2)
    _next_port[0] = max(_next_port[0], port + 2)
    try:
        started = subprocess.run([str(PGCLUSTER), "start", directory, str(port), "1"],
                                 capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, f"pgcluster start failed:\n{started.stderr}"
        instance = Cluster(directory, port)
        setup_cluster(instance)
        yield instance
    finally:
        subprocess.run([str(PGCLUSTER), "stop", directory], timeout=120)
        if not os.environ.get("PGPLEX_KEEP_TMP"):
            shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# pgplex


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def toml_key(name):
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def render_cluster(name, table):
    """[clusters.NAME] lines: its plain keys, then one [clusters.NAME.KIND."ITEM"] table per
    entry of each dict-valued key (node_options → "host:port", services → service name)."""
    lines = ["", f"[clusters.{toml_key(name)}]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in table.items()
              if not isinstance(value, dict)]
    for kind, items in table.items():
        if not isinstance(items, dict):
            continue
        for item, settings in items.items():
            lines += ["", f"[clusters.{toml_key(name)}.{toml_key(kind)}.{toml_key(item)}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    return lines


def default_databases(cluster):
    """The aliases of the payam_db / payam_dw example, plus the "*" fallback.

    client_encoding is "UTF8" where the PgBouncer original says "UNICODE": PostgreSQL
    reports a requested "UNICODE" back verbatim in ParameterStatus, and psycopg 3 cannot
    decode under that name (psycopg/psycopg#122). test_aliases covers "UNICODE" itself.
    """
    return {
        "payam_db": {
            "host": HOST, "port": cluster.port, "user": "payam",
            "password": PASSWORDS["payam"], "client_encoding": "UTF8", "datestyle": "ISO",
        },
        "payam_dw": {
            "host": HOST, "port": cluster.port, "dbname": "payam_db",
            "user": "dataplatform_ro", "password": PASSWORDS["dataplatform_ro"],
            "application_name": "readonly_client",
            "options": "-c default_transaction_read_only=on",
            "client_encoding": "UTF8", "datestyle": "ISO",
        },
        "*": {"host": HOST, "port": cluster.port},
    }


class Pgplex:
    """One pgplex process with its own directory, config.toml and userlist.txt."""

    def __init__(self, binary, directory, cluster, port, settings, databases, secrets):
        self.binary = binary
        self.dir = Path(directory)
        self.cluster = cluster
        self.port = port
        self.settings = settings      # the [pgplex] table
        self.databases = databases    # alias → its table; None removes an alias
        self.secrets = secrets        # user → what the auth file holds
        self.user_settings = {}       # user → its [users.NAME] table
        self.clusters = {}            # name → its [clusters.NAME] table (see render_cluster)
        self.rules = []               # [[rules]] tables, in order
        self.rewrites = []            # [[rewrites]] tables, in order
        self.sections = {}            # other top-level tables ([gossip]): name → table
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "pgplex.stderr"
        self.process = None
        self.returncode = None
        self.file_limit = None        # RLIMIT_NOFILE to start it with (soft and hard)

    def render(self):
        lines = ["[pgplex]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in self.settings.items()]
        for name, table in self.databases.items():
            if table is None:
                continue
            lines += ["", f"[databases.{toml_key(name)}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        for name, table in self.user_settings.items():
            lines += ["", f"[users.{toml_key(name)}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        for name, table in self.clusters.items():
            lines += render_cluster(name, table)
        for array, tables in (("rules", self.rules), ("rewrites", self.rewrites)):
            for table in tables:
                lines += ["", f"[[{array}]]"]
                lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        for name, table in self.sections.items():
            lines += ["", f"[{name}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        return "\n".join(lines) + "\n"

    def service_port(self, service, cluster=None):
        """The port of [clusters.CLUSTER.services.SERVICE] (cluster may be omitted when only
        one cluster has such a service)."""
        ports = [table["services"][service]["port"]
                 for name, table in self.clusters.items()
                 if (cluster is None or name == cluster)
                 and service in table.get("services", {})]
        assert len(ports) == 1, f"service {service!r} of {cluster or 'any'} cluster: {ports}"
        return ports[0]

    def service_ports(self):
        return [service["port"] for table in self.clusters.values()
                for service in table.get("services", {}).values() if "port" in service]

    def write(self):
        userlist = "".join(f'"{user}" "{secret}"\n' for user, secret in self.secrets.items())
        (self.dir / "userlist.txt").write_text(userlist)
        self.config_path.write_text(self.render())

    def start(self):
        self.write()
        self.stderr_file = open(self.log_path, "wb")
        limit = self.file_limit

        def set_file_limit():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        self.process = subprocess.Popen([self.binary, str(self.config_path)], cwd=self.dir,
                                        stdin=subprocess.DEVNULL, stdout=self.stderr_file,
                                        stderr=self.stderr_file, preexec_fn=set_file_limit)
        # Every listener is bound before the first accepts: services get a short grace.
        for port, timeout in [(self.port, START_TIMEOUT_SECONDS)] + [
                (port, SERVICE_START_GRACE_SECONDS) for port in self.service_ports()]:
            if not wait_for_tcp(port, timeout, self.process):
                self.process.poll()
                raise AssertionError(f"pgplex did not accept TCP on {port} "
                                     f"(exit code {self.process.returncode}):\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=5):
        """The first match of the regex in pgplex's stderr, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match or time.monotonic() >= deadline:
                return match
            time.sleep(0.05)

    def signal(self, signum):
        self.process.send_signal(signum)

    def reload(self, settle_seconds=0.5):
        """Rewrites the config from settings/databases/secrets and sends SIGHUP."""
        self.write()
        self.signal(signal.SIGHUP)
        time.sleep(settle_seconds)

    def wait_exit(self, timeout):
        """The exit code, or None if still running after timeout."""
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """SIGINT (a safe shutdown: clients go once idle), wait, SIGKILL after
        STOP_TIMEOUT_SECONDS; returns (exit code, killed)."""
        if self.process is None:
            return 0, False
        killed = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            if self.wait_exit(STOP_TIMEOUT_SECONDS) is None:
                self.process.kill()
                self.process.wait()
                killed = True
        self.returncode = self.process.returncode
        self.stderr_file.close()
        return self.returncode, killed


def pgplex_binary():
    binary = os.environ.get("PGPLEX_BIN", str(REPO / "build" / "pgplex"))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"pgplex binary not found or not executable: {binary} (set PGPLEX_BIN)")
    if Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() == "2":
        pytest.skip("io_uring is disabled on this kernel (kernel.io_uring_disabled=2)")
    return binary


class PgplexFactory:
    """Starts pgplex processes for one test and stops them all at its end (see make_pgplex).
    Every factory of a test shares request.node.pgplex_instances, so a failed test's report
    carries the stderr of each pgplex it started."""

    def __init__(self, tmp_path, request):
        self.binary = pgplex_binary()
        self.tmp_path = tmp_path
        self.shared = request.node.__dict__.setdefault("pgplex_instances", [])
        self.instances = []

    def start(self, cluster, auth_type="scram-sha-256", secrets="plain", max_client_conn=100,
              default_pool_size=20, pool_size=None, query_wait_timeout="120s",
              shutdown_timeout="10s", server_reset_query="DISCARD ALL", workers=2,
              fallback=True, databases=None, users=None, settings=None, user_settings=None,
              clusters=None, rules=None, rewrites=None, sections=None, start=True):
        port = next_free_port()
        all_settings = {
            "listen": [f"{HOST}:{port}"],
            "workers": workers,
            "max_client_conn": max_client_conn,
            "pool_mode": "session",
            "default_pool_size": default_pool_size,
            "auth_type": auth_type,
            "auth_file": "userlist.txt",
            "server_reset_query": server_reset_query,
            "server_idle_timeout": "600s",
            "server_lifetime": "3600s",
            "query_wait_timeout": query_wait_timeout,
            "shutdown_timeout": shutdown_timeout,
        }
        all_settings.update(settings or {})
        all_databases = default_databases(cluster)
        if not fallback:
            del all_databases["*"]
        if pool_size is not None:
            all_databases["payam_db"]["pool_size"] = pool_size
            all_databases["payam_dw"]["pool_size"] = pool_size
        for name, table in (databases or {}).items():
            if table is None:
                all_databases.pop(name, None)
            else:
                all_databases[name] = {**all_databases.get(name, {}), **table}
        if users is None:
            users = auth_file_secrets(cluster, secrets)
        directory = self.tmp_path / f"pgplex-{len(self.shared)}"
        directory.mkdir()
        instance = Pgplex(self.binary, directory, cluster, port, all_settings, all_databases,
                          dict(users))
        instance.user_settings = dict(user_settings or {})
        instance.clusters = dict(clusters or {})
        instance.rules = list(rules or [])
        instance.rewrites = list(rewrites or [])
        instance.sections = dict(sections or {})
        self.instances.append(instance)
        self.shared.append(instance)
        if start:
            try:
                instance.start()
            except AssertionError:
                instance.start_failed = True  # the test fails with the log; no second report
                raise
        return instance

    def finish(self):
        problems = []
        for instance in self.instances:
            code, killed = instance.stop()
            if getattr(instance, "start_failed", False):
                continue
            if killed:
                problems.append(f"pgplex on {instance.port} ignored SIGINT for "
                                f"{STOP_TIMEOUT_SECONDS}s and was killed")
            elif code != 0:
                problems.append(f"pgplex on {instance.port} exited {code} (crash?)")
            if problems:
                problems.append(f"--- pgplex stderr (port {instance.port}) ---\n"
                                f"{instance.log()}")
        assert not problems, "\n".join(problems)


@pytest.fixture
def make_pgplex(cluster, tmp_path, request):
    """Factory: make_pgplex(**options) writes a config and starts pgplex on a free port.

    Options: auth_type, secrets ("plain" | "md5" | "scram"), max_client_conn,
    default_pool_size, pool_size (for payam_db and payam_dw), query_wait_timeout,
    shutdown_timeout, server_reset_query, workers, fallback (keep the "*" alias),
    databases (alias → table, merged over the defaults; None drops one), users (the auth
    file's user → secret, replacing the derived ones), settings (extra [pgplex] keys),
    user_settings (user → its [users.NAME] table), clusters (name → [clusters.NAME] table,
    see render_cluster and cluster_table), rules and rewrites (lists of [[rules]] /
    [[rewrites]] tables), start (False: only build it; .write() renders the files).
    """
    factory = PgplexFactory(tmp_path, request)
    yield lambda **options: factory.start(cluster, **options)
    factory.finish()


def auth_file_secrets(cluster, kind):
    """The auth file for every test user: plain passwords, md5 hashes or SCRAM secrets.
    analyst has no server role, so no SCRAM secret from the server: one is derived here."""
    if kind == "plain":
        return dict(PASSWORDS)
    if kind == "md5":
        return {user: md5_secret(user, password) for user, password in PASSWORDS.items()}
    if kind == "scram":
        secrets = dict(cluster.scram_secrets)
        secrets["analyst"] = scram_secret(PASSWORDS["analyst"])
        return secrets
    raise ValueError(kind)


def scram_secret(password, iterations=4096):
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(stored_key)}:{encode(server_key)}"


@pytest.fixture
def pgplex(make_pgplex):
    """pgplex with the default config: payam_db, payam_dw and "*", SCRAM, plain secrets."""
    return make_pgplex()


# ---------------------------------------------------------------------------------------
# Replicated clusters: [clusters.X], monitors, services, per-statement routing
#
# One initdb per session (pg_template: a stopped primary with the roles and databases of
# setup_cluster, and a password on postgres for pgplex's monitors, which log in over TCP
# where pg_hba.conf asks for SCRAM). Every replicated cluster is a cold copy of it
# (pgcluster.sh clone): `replicated`, shared by the session and never stopped or promoted by
# a test, and `failover_cluster`, a fresh one per test for tests that stop, promote, delay
# or pause nodes. In both, replicaN streams as application_name=replicaN.

MONITOR_PASSWORD = "monitor-secret"
CLUSTER_PORT_BASE = PORT_BASE + 100  # 25532 by default
_next_cluster_port = [CLUSTER_PORT_BASE]
# pgplex's checks in tests: every 200ms, one good or bad check flips a node.
FAST_CHECKS = {"inter": "200ms", "fastinter": "100ms", "downinter": "200ms",
               "rise": 1, "fall": 1, "check_timeout": "1s"}
FOUR_SERVICES = ("primary", "replica", "default", "offline")
TEST_TIMEOUT_SECONDS = 120

WHERE_SQL = "SELECT inet_server_port(), pg_is_in_recovery()"


def wait_until(predicate, timeout, step=0.1, ignore=()):
    """predicate()'s first truthy value within timeout seconds, else False. Exceptions of
    the types in ignore count as a falsy answer (a node or pgplex that is not there yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = False
        if value:
            return value
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


@pytest.fixture
def hard_timeout():
    """Fails a test that runs longer than TEST_TIMEOUT_SECONDS (SIGALRM interrupts a client
    blocked on pgplex), so a hang costs minutes at most. Use as pytestmark."""
    def expire(signum, frame):
        raise TimeoutError(f"test ran longer than {TEST_TIMEOUT_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIMEOUT_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def cluster_ports(count):
    """count consecutive free ports for PostgreSQL instances, never handed out before."""
    port = free_port_run(_next_cluster_port[0], count)
    _next_cluster_port[0] = port + count
    return port


def as_postgres(*command, timeout=60):
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)],
                          capture_output=True, text=True, timeout=timeout, env=clean_env(),
                          cwd="/")


class PgNodes:
    """A primary and its streaming replicas under one directory (scripts/pgcluster.sh):
    primary on port, replicaN on port+N. Names and ports stay what they were at start,
    whatever role a node has later (after a promotion "replica1" may be the primary)."""

    def __init__(self, directory, port, replicas, scram_secrets):
        self.dir = directory
        self.port = port
        self.names = ["primary"] + [f"replica{i}" for i in range(1, replicas + 1)]
        self.ports = {name: port + i for i, name in enumerate(self.names)}
        self.scram_secrets = dict(scram_secrets)

    @property
    def primary(self):
        return self.ports["primary"]

    @property
    def replica1(self):
        return self.ports["replica1"]

    @property
    def replica2(self):
        return self.ports["replica2"]

    def addr(self, name):
        """"127.0.0.1:PORT" of a node, by name or port: how [clusters.X] nodes name it."""
        port = self.ports[name] if isinstance(name, str) else name
        return f"{HOST}:{port}"

    def name_of(self, port):
        return next((name for name, p in self.ports.items() if p == port), str(port))

    def run_admin_psql(self, port, sql, dbname="postgres", user="postgres", timeout=30):
        command = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.dir,
                   "-p", str(port), "-U", user, "-d", dbname, "-c", sql]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(PGCONNECT_TIMEOUT=5))

    def admin_psql(self, port, sql, dbname="postgres", user="postgres"):
        """psql -c SQL on the node at port, as a superuser over its Unix socket (trust)."""
        result = self.run_admin_psql(port, sql, dbname, user)
        assert result.returncode == 0, f"admin psql on {port} failed: {result.stderr}"
        return result.stdout.strip()

    def data_dir(self, name):
        return Path(self.dir) / name

    def log(self, name):
        """The server log of a node (log_min_error_statement logs failed statements)."""
        try:
            return (Path(self.dir) / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pg_ctl(self, name, *args, timeout=60):
        result = as_postgres(PG_BIN / "pg_ctl", *args, "-D", self.data_dir(name),
                             timeout=timeout)
        assert result.returncode == 0, \
            f"pg_ctl {' '.join(args)} {name} failed: {result.stdout}{result.stderr}"

    def running(self, name):
        return as_postgres(PG_BIN / "pg_ctl", "status", "-D", self.data_dir(name)).returncode == 0

    def stop(self, name):
        self.pg_ctl(name, "stop", "-w", "-t", "30", "-m", "fast")

    def start(self, name):
        self.pg_ctl(name, "start", "-w", "-t", "30", "-l", Path(self.dir) / f"{name}.log")

    def promote(self, name):
        self.pg_ctl(name, "promote", "-w", "-t", "30")

    def set(self, name, setting, value):
        """ALTER SYSTEM SET setting = value on a node, and reload its configuration."""
        port = self.ports[name]
        self.admin_psql(port, f"ALTER SYSTEM SET {setting} = '{value}'")
        self.admin_psql(port, "SELECT pg_reload_conf()")

    def in_recovery(self, name):
        return self.admin_psql(self.ports[name], "SELECT pg_is_in_recovery()") == "t"

    def pause_replay(self, name):
        port = self.ports[name]
        self.admin_psql(port, "SELECT pg_wal_replay_pause()")
        assert wait_until(lambda: self.admin_psql(
            port, "SELECT pg_get_wal_replay_pause_state()") == "paused", 10), \
            f"replay on {name} did not pause"

    def resume_replay(self, name):
        self.admin_psql(self.ports[name], "SELECT pg_wal_replay_resume()")

    def replayed(self, name, primary="primary"):
        """True when name has replayed everything its primary has written so far."""
        lsn = self.admin_psql(self.ports[primary], "SELECT pg_current_wal_insert_lsn()")
        return self.admin_psql(
            self.ports[name], f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t"

    def wait_replayed(self, names=None, timeout=15):
        for name in names or [n for n in self.names if n != "primary"]:
            assert wait_until(lambda: self.replayed(name), timeout), f"{name} is behind"

    def streaming(self, primary="primary"):
        """application_name → sync_state of the replicas streaming from primary."""
        rows = self.admin_psql(self.ports[primary], "SELECT application_name, sync_state "
                               "FROM pg_stat_replication WHERE state = 'streaming'")
        return dict(line.split("|") for line in rows.splitlines())

    def backends(self, name, where="true"):
        """pids of the client backends on a node matching an SQL condition on
        pg_stat_activity."""
        rows = self.admin_psql(self.ports[name], "SELECT pid FROM pg_stat_activity WHERE "
                               f"backend_type = 'client backend' AND ({where})")
        return {int(pid) for pid in rows.split()}


def cluster_tmp_dir(kind):
    """A fresh directory for a replicated cluster: in /dev/shm when it has room (every clone
    copies the template's data directories; on a busy disk that is most of a test's time),
    else in /tmp."""
    base = "/tmp"
    if os.path.isdir("/dev/shm"):
        stats = os.statvfs("/dev/shm")
        if stats.f_bavail * stats.f_frsize >= 2 << 30:
            base = "/dev/shm"
    return tempfile.mkdtemp(prefix=f"pgplex-it-{kind}-", dir=base)


def start_clone(template, directory, replicas):
    source, secrets = template
    port = cluster_ports(replicas + 1)
    started = subprocess.run([str(PGCLUSTER), "clone", source, directory, str(port),
                              str(replicas)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, f"pgcluster clone failed:\n{started.stderr}"
    return PgNodes(directory, port, replicas, secrets)


def stop_clone(directory):
    subprocess.run([str(PGCLUSTER), "stop", directory], capture_output=True, timeout=120)
    if not os.environ.get("PGPLEX_KEEP_TMP"):
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template():
    """(directory, scram secrets): a stopped primary with setup_cluster's roles, databases
    and tables, and MONITOR_PASSWORD on postgres; what every replicated cluster is cloned
    from."""
    directory = cluster_tmp_dir("template")
    try:
        port = cluster_ports(1)
        started = subprocess.run([str(PGCLUSTER), "start", directory, str(port), "0"],
                                 capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, f"pgcluster start failed:\n{started.stderr}"
        instance = Cluster(directory, port)
        setup_cluster(instance)
        instance.admin_psql(f"ALTER ROLE postgres PASSWORD '{MONITOR_PASSWORD}'")
        instance.admin_psql("CHECKPOINT")
        stopped = subprocess.run([str(PGCLUSTER), "stop", directory], capture_output=True,
                                 text=True, timeout=120)
        assert stopped.returncode == 0, f"pgcluster stop failed:\n{stopped.stderr}"
        # Every clone copies the template whole: 1MB WAL segments instead of two of 16MB
        # (pg_resetwal on a cleanly stopped cluster, as pg_upgrade does; then one more start
        # and stop, since a standby refuses the wal_level=minimal checkpoint it writes).
        data = Path(directory) / "primary"
        reset = as_postgres(PG_BIN / "pg_resetwal", "--wal-segsize=1", "-D", data)
        assert reset.returncode == 0, f"pg_resetwal failed: {reset.stderr}"
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("min_wal_size = '4MB'\nmax_wal_size = '64MB'\n")
        for command in (["start", directory, str(port), "0"], ["stop", directory]):
            again = subprocess.run([str(PGCLUSTER), *command], capture_output=True, text=True,
                                   timeout=120)
            assert again.returncode == 0, f"pgcluster {command[0]} failed:\n{again.stderr}"
        yield directory, dict(instance.scram_secrets)
    finally:
        stop_clone(directory)


@pytest.fixture(scope="session")
def replicated(pg_template):
    """PgNodes: a primary + replica1 + replica2, streaming, for the whole session. Tests
    may pause replay (and must resume it) but never stop, promote or reconfigure a node:
    failover_cluster is for that. Tests flag replica2 offline in pgplex's config."""
    directory = cluster_tmp_dir("replicated")
    try:
        yield start_clone(pg_template, directory, 2)
    finally:
        stop_clone(directory)


@pytest.fixture
def failover_cluster(pg_template):
    """PgNodes: a fresh primary + replica1 + replica2 for one test, which may stop, start,
    promote, delay or pause them; stopped and deleted afterwards."""
    directory = cluster_tmp_dir("failover")
    try:
        yield start_clone(pg_template, directory, 2)
    finally:
        stop_clone(directory)


def cluster_table(nodes, services=FOUR_SERVICES, offline=("replica2",), node_options=None,
                  **settings):
    """A [clusters.X] table over PgNodes: every node, monitored as postgres over TCP with
    FAST_CHECKS, the nodes named in offline flagged offline, and services (names, or
    name → table) each on a free port unless its table gives one. settings override or add
    cluster keys (max_lag, rise, ...)."""
    table = {"nodes": [nodes.addr(name) for name in nodes.names],
             "monitor_user": "postgres", "monitor_password": MONITOR_PASSWORD,
             "monitor_dbname": "postgres", **FAST_CHECKS, **settings}
    options = {nodes.addr(name): {"offline": True} for name in offline}
    for name, extra in (node_options or {}).items():
        key = nodes.addr(name)
        options[key] = {**options.get(key, {}), **extra}
    if options:
        table["node_options"] = options
    if not isinstance(services, dict):
        services = {name: {} for name in services}
    if services:
        table["services"] = {name: {"port": next_free_port(), **service}
                             for name, service in services.items()}
    return table


@pytest.fixture
def make_cluster_pgplex(tmp_path, request):
    """Factory: make_cluster_pgplex(nodes, **options) starts pgplex with PgNodes as
    [clusters.c1] (see cluster_table), waiting until the main listener and every service
    port accept TCP.

    Options: name (of the cluster, "c1"), services, offline, node_options (as cluster_table),
    cluster_settings (extra [clusters.c1] keys), clusters (more name → table),
    aliases (as make_pgplex's databases), query_wait_timeout (default "5s", so a client no
    node carries gives up quickly), and every other make_pgplex option. The default aliases
    (payam_db, payam_dw, "*") point at the nodes' primary port.
    """
    factory = PgplexFactory(tmp_path, request)

    def start(nodes, name="c1", services=FOUR_SERVICES, offline=("replica2",),
              node_options=None, cluster_settings=None, clusters=None, aliases=None,
              query_wait_timeout="5s", **options):
        table = cluster_table(nodes, services, offline, node_options,
                              **(cluster_settings or {}))
        return factory.start(nodes, clusters={name: table, **(clusters or {})},
                             databases=aliases, query_wait_timeout=query_wait_timeout,
                             **options)

    yield start
    factory.finish()


def where(conn):
    """(port, in recovery) of the node serving conn's next statement."""
    return tuple(conn.execute(WHERE_SQL).fetchone())


def landing(port, dbname="payam_db", user="payam", **kwargs):
    """(port, in recovery) of the node a fresh client of port lands on."""
    kwargs.setdefault("connect_timeout", 5)
    with connect(port, dbname=dbname, user=user, autocommit=True, prepare_threshold=None,
                 **kwargs) as conn:
        return where(conn)


def landing_ports(port, count=4, **kwargs):
    """The node ports count fresh clients of port land on, in order."""
    return [landing(port, **kwargs)[0] for _ in range(count)]
