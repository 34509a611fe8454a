"""A real Patroni cluster on loopback for pgplex's tests: one etcd member and three
Patroni-managed PostgreSQL 15 nodes (Debian's patroni 3.0.2, etcd-server 3.4).

pgplex's patroni_port is one port for every node, so each node has its own loopback
address: node N listens for PostgreSQL on 127.0.0.N:pg_port and for Patroni's REST API on
127.0.0.N:rest_port. Patroni talks to etcd through its v3 gRPC gateway (the etcd3 section).

Patroni and PostgreSQL run as the postgres user; everything lives under one directory that
the postgres user owns. Processes are ended by the PIDs this module started (Patroni, etcd),
and the postmasters by the PIDs in their postmaster.pid (Patroni starts them in their own
session), never by name.
"""

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import conftest
from conftest import PG_BIN, PASSWORDS, clean_env, wait_until

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
ETCD = "/usr/bin/etcd"
SCOPE = "pgplex-it"
SUPERUSER_PASSWORD = "patroni-super-secret"
REPLICATION_PASSWORD = "patroni-repl-secret"
NODES = 3
# Patroni's timing: a leader key lives ttl seconds, each node looks every loop_wait.
# loop_wait + 2 * retry_timeout <= ttl, or Patroni complains.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4
START_SECONDS = 90


def missing_packages():
    """What is missing to run Patroni here, or '' when everything is."""
    missing = [path for path in (PATRONI, PATRONICTL, ETCD, str(PG_BIN / "postgres"))
               if not os.access(path, os.X_OK)]
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("user postgres")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import patroni, etcd"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        missing.append("python3 modules patroni, etcd")
    return ", ".join(missing)


def try_install():
    """apt-get install patroni etcd (as root only, bounded); '' when it worked."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root, or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "patroni", "etcd-server", "etcd-client"],
                       capture_output=True, timeout=600, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return missing_packages()


def address_free(address, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def pick_ports():
    """(pg_port, rest_port, etcd_client, etcd_peer), free on 127.0.0.1-3, taken from
    conftest's ledger of cluster ports so no other test of the session reuses them."""
    first = conftest._next_cluster_port[0]
    for port in range(first, first + 2000):
        addresses = [f"127.0.0.{n}" for n in range(1, NODES + 1)]
        if all(address_free(address, port + i) for address in addresses for i in range(4)):
            conftest._next_cluster_port[0] = port + 4
            return port, port + 1, port + 2, port + 3
    raise RuntimeError(f"no 4 free ports on 127.0.0.1-{NODES} from {first}")


def http_get(url, timeout=2):
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (OSError, urllib.error.URLError):
        return 0, ""


def start_etcd(directory, host, client_port, peer_port, log_tail, extra_args=()):
    """One etcd member on host (client and peer ports), its data and etcd.log in directory;
    returns its Popen once /health answers 200 over http on client_port. log_tail() is shown
    if it never does; extra_args go last (a later flag overrides an earlier one). Also used
    by test_dcs.py."""
    client = f"http://{host}:{client_port}"
    peer = f"http://{host}:{peer_port}"
    log = open(Path(directory) / "etcd.log", "ab")
    try:
        process = subprocess.Popen(
            [ETCD, "--name", "etcd1", "--data-dir", str(Path(directory) / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"etcd1={peer}", "--initial-cluster-state", "new",
             "--initial-cluster-token", f"pgplex-it-{client_port}",
             "--enable-v2=true", *extra_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()
    ok = wait_until(lambda: http_get(client + "/health")[0] == 200, 30, step=0.2)
    if not ok:
        stop_etcd(process)
    assert ok, f"etcd did not become healthy:\n{log_tail()}"
    return process


def stop_etcd(process):
    """Ends the etcd start_etcd() started (by its PID), if it still runs."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Node:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"node{index}"
        self.host = f"127.0.0.{index}"
        self.dir = cluster.dir / self.name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "patroni.yml"
        self.log_path = self.dir / "patroni.log"
        self.process = None
        self.tags = {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                     "nosync": False}

    @property
    def addr(self):
        return f"{self.host}:{self.cluster.pg_port}"

    @property
    def rest(self):
        return f"http://{self.host}:{self.cluster.rest_port}"

    def config(self):
        c = self.cluster
        return {
            "scope": SCOPE,
            "namespace": "/pgplex-it/",
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"{self.host}:{c.rest_port}",
                        "connect_address": f"{self.host}:{c.rest_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{c.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "parameters": {
                            "max_connections": 100, "wal_level": "replica",
                            "hot_standby": "on", "max_wal_senders": 10,
                            "max_replication_slots": 10, "wal_log_hints": "on",
                            "fsync": "off", "synchronous_commit": "off",
                            "password_encryption": "scram-sha-256",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"},
                           {"auth-host": "scram-sha-256"}],
            },
            "postgresql": {
                "listen": f"{self.host}:{c.pg_port}",
                "connect_address": f"{self.host}:{c.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                    "replication": {"username": "replicator",
                                    "password": REPLICATION_PASSWORD},
                    "rewind": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                },
                "parameters": {"unix_socket_directories": str(self.dir),
                               "shared_buffers": "32MB"},
                "pg_hba": ["local all all trust",
                           "host replication replicator 127.0.0.0/8 scram-sha-256",
                           "host all all 127.0.0.0/8 scram-sha-256"],
            },
            "tags": dict(self.tags),
        }

    def write_config(self):
        # JSON is YAML: no PyYAML needed on the test's side.
        self.config_path.write_text(json.dumps(self.config(), indent=1))
        shutil.chown(self.config_path, "postgres", "postgres")

    def start(self):
        self.dir.mkdir(exist_ok=True)
        shutil.chown(self.dir, "postgres", "postgres")
        self.write_config()
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [PATRONI, str(self.config_path)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, cwd=self.dir, user="postgres", group="postgres",
                extra_groups=[], env=clean_env(HOME=str(self.dir)), start_new_session=True)
        finally:
            log.close()

    def postmaster_pid(self):
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self):
        """SIGKILL Patroni and its postmaster: the node crashes."""
        postmaster = self.postmaster_pid()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if postmaster and pid_alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)

    def stop(self, timeout=30):
        """SIGTERM Patroni (it stops PostgreSQL), SIGKILL after timeout; then make sure the
        postmaster it started is gone too."""
        postmaster = self.postmaster_pid()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        postmaster = self.postmaster_pid() or postmaster
        if postmaster and pid_alive(postmaster):
            # Only if it is still ours: the pid file of this data directory names it.
            os.kill(postmaster, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(postmaster), 15):
                os.kill(postmaster, signal.SIGKILL)

    def set_tags(self, **tags):
        """Writes tags into this member's patroni.yml and has Patroni reload it (patronictl
        reload: Patroni re-reads its tags on a local reload)."""
        self.tags.update(tags)
        self.write_config()
        reloaded = self.cluster.patronictl("reload", SCOPE, self.name, "--force")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr

    def member_tags(self):
        """The tags GET /patroni reports for this member ({} when it does not answer)."""
        status, body = http_get(self.rest + "/patroni")
        try:
            return json.loads(body).get("tags", {}) if body else {}
        except ValueError:
            return {}

    def pg_ctl_stop(self):
        """Stops this node's PostgreSQL behind Patroni's back (pg_ctl stop -m fast), as an
        operator would in maintenance mode."""
        return subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                               "-w", "-t", "30", "stop"], capture_output=True, text=True,
                              timeout=60, user="postgres", group="postgres", extra_groups=[],
                              cwd=self.dir, env=clean_env(HOME=str(self.dir)))

    def status(self, path):
        """The HTTP status of GET path on this member's REST API; 0 when nothing answered."""
        return http_get(self.rest + path)[0]

    def role(self):
        """'primary', 'replica' or None from the REST API (GET /)."""
        status, body = http_get(self.rest + "/")
        if not body:
            return None
        try:
            return json.loads(body).get("role")
        except ValueError:
            return None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def psql(self, sql, dbname="postgres", user="postgres", password=SUPERUSER_PASSWORD,
             timeout=30):
        """psql -c SQL over TCP; returns the CompletedProcess."""
        command = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.host,
                   "-p", str(self.cluster.pg_port), "-U", user, "-d", dbname, "-c", sql]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(PGPASSWORD=password, PGCONNECT_TIMEOUT=5))

    def sql(self, sql, **kwargs):
        result = self.psql(sql, **kwargs)
        assert result.returncode == 0, f"psql on {self.name} failed: {result.stderr}"
        return result.stdout.strip()


class PatroniCluster:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.pg_port, self.rest_port, self.etcd_port, self.etcd_peer_port = pick_ports()
        self.nodes = [Node(self, n) for n in range(1, NODES + 1)]
        self.etcd = None

    # --- life cycle

    def start(self):
        self.start_etcd()
        for node in self.nodes:
            node.start()
        self.wait_healthy(START_SECONDS)

    def start_etcd(self):
        self.etcd = start_etcd(self.dir, "127.0.0.1", self.etcd_port, self.etcd_peer_port,
                               self.etcd_log)

    def etcd_log(self):
        try:
            return (self.dir / "etcd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self):
        for node in self.nodes:
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - keep cleaning up
                pass
        stop_etcd(self.etcd)

    def logs(self):
        parts = [f"--- {node.name} ---\n{node.log()}" for node in self.nodes]
        return "\n".join(parts) + f"\n--- etcd ---\n{self.etcd_log()}"

    # --- state

    def members(self, via=None):
        """Patroni's GET /cluster members (name → member dict), asked of via or of the first
        node that answers."""
        for node in [via] if via else self.nodes:
            status, body = http_get(node.rest + "/cluster")
            if status == 200:
                try:
                    return {m["name"]: m for m in json.loads(body).get("members", [])}
                except ValueError:
                    continue
        return {}

    def node(self, name):
        return next(node for node in self.nodes if node.name == name)

    def leader(self, alive=None):
        """The Node Patroni says leads (and whose /primary answers 200), or None."""
        for name, member in self.members().items():
            node = self.node(name)
            if alive is not None and node not in alive:
                continue
            if member.get("role") == "leader" and member.get("state") == "running" \
                    and http_get(node.rest + "/primary")[0] == 200:
                return node
        return None

    def streaming(self, leader):
        """Names of the replicas streaming from leader (pg_stat_replication)."""
        result = leader.psql("SELECT application_name FROM pg_stat_replication "
                             "WHERE state = 'streaming'")
        return set(result.stdout.split()) if result.returncode == 0 else set()

    def healthy(self, expected_replicas=NODES - 1):
        leader = self.leader()
        if leader is None:
            return False
        replicas = [n for n in self.nodes if n is not leader]
        if len(self.streaming(leader)) < expected_replicas:
            return False
        answered = [n for n in replicas if http_get(n.rest + "/replica")[0] == 200]
        return leader if len(answered) >= expected_replicas else False

    def wait_healthy(self, timeout, expected_replicas=NODES - 1):
        leader = wait_until(lambda: self.healthy(expected_replicas), timeout, step=0.5)
        assert leader, ("no leader with streaming replicas within "
                        f"{timeout}s:\n{self.patronictl('list').stdout}\n{self.logs()}")
        return leader

    def patronictl(self, *args, timeout=60):
        return subprocess.run([PATRONICTL, "-c", str(self.nodes[0].config_path), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=clean_env(HOME=str(self.dir)))

    # --- the databases pgplex's tests use

    def setup_databases(self):
        """payam and app (with conftest's passwords), payam_db and appdb, made through the
        leader; pgbench's tables in appdb."""
        leader = self.leader()
        for role in ("payam", "app"):
            leader.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORDS[role]}'")
        leader.sql("CREATE DATABASE payam_db OWNER payam")
        leader.sql("CREATE DATABASE appdb OWNER app")
        leader.sql("CREATE TABLE writes (id bigserial PRIMARY KEY, node text NOT NULL "
                   "DEFAULT host(inet_server_addr()), at timestamptz DEFAULT clock_timestamp())",
                   dbname="payam_db", user="payam", password=PASSWORDS["payam"])
        result = subprocess.run(
            [str(PG_BIN / "pgbench"), "-i", "-s", "1", "-q", "-h", leader.host, "-p",
             str(self.pg_port), "-U", "app", "appdb"],
            capture_output=True, text=True, timeout=120,
            env=clean_env(PGPASSWORD=PASSWORDS["app"]))
        assert result.returncode == 0, f"pgbench -i failed: {result.stderr}"


def make_directory():
    base = "/tmp"
    if os.path.isdir("/dev/shm"):
        stats = os.statvfs("/dev/shm")
        if stats.f_bavail * stats.f_frsize >= 2 << 30:
            base = "/dev/shm"
    directory = tempfile.mkdtemp(prefix="pgplex-it-patroni-", dir=base)
    shutil.chown(directory, "postgres", "postgres")
    return directory
