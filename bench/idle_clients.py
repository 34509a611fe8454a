#!/usr/bin/python3
"""bench/idle_clients.py PATH_TO_PGPLEX

How much memory an idle, logged-in client costs each proxy. Starts PostgreSQL 15, PgBouncer
and pgplex (both in transaction pooling, md5 auth to clients), opens N client connections
through each, logs every one in and leaves it idle, and reads the proxy's VmRSS from
/proc/PID/status with no client (after start and one warm-up query) and with all N idle.
(RSS_idle - RSS_empty) / N is the figure reported, in bytes per client, for both proxies in
the same run; pgplex's VmHWM too.

Clients are raw sockets speaking the v3 protocol (StartupMessage, md5 PasswordMessage, wait
for ReadyForQuery); no driver needed. They are held by child processes of this script
(`idle_clients.py --hold ...`), each with its own RLIMIT_NOFILE and its own 127.0.0.x source
address, so no process needs more descriptors than the hard limit allows and no source
address needs more than the ephemeral port range.

Clients are logged in in two halves, with RSS read after each: the second half's growth per
client is the marginal cost of one more idle client, once the one-off costs (buffer ring
pages first touched, allocator arenas, send blocks kept for the peak of concurrent logins)
are paid. pgplex is also started once with max_client_conn = 1 and no client, to tell what
it sets aside per client slot at start (its slot tables are sized from max_client_conn).

The hard RLIMIT_NOFILE caps how far each proxy can go: PgBouncer holds a descriptor per
client; pgplex holds clients as io_uring fixed files, whose table per worker it sizes from
the limit (src/worker/worker.cc), and logs the size. The script reads those sizes and measures
at the largest N reachable when N itself is not, and says so.

Environment overrides (defaults in brackets):
  N            idle clients wanted through pgplex                          [100000]
  SIZES        further client counts measured through both proxies         ["10000"]
               (besides N, or the largest count reachable, and the largest
               count PgBouncer can hold if that is smaller)
  WORKERS      pgplex workers                                              [2]
  BENCH_PORT   PostgreSQL's port; PgBouncer +1, pgplex +2                  [26442]
  LOGIN_TIMEOUT  seconds allowed for logging all clients of one run in     [240]
  SETTLE       seconds to wait with every client idle before reading RSS   [2]
  BENCH_KEEP   1: keep the temporary directory (configs, logs, smaps)

Runs as root. Everything it starts is stopped on exit, by PID. Writes the table to
bench/results/idle_clients.txt as well as stdout.
"""
import collections
import errno
import hashlib
import json
import os
import pwd
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
PGBOUNCER_BIN = "/usr/sbin/pgbouncer"
USER = "bench"
DATABASE = "bench"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# Logins under way at once per holder: enough to keep a proxy busy, few enough that the
# listen backlog (4096 for both) never overflows into SYN retransmits.
LOGINS_IN_FLIGHT_MAX = 256
# Descriptors a holder keeps for itself (stdio, epoll, python's own).
HOLDER_SPARE_FILES = 64
# Clients one holder process takes at most, and what each source address carries: well
# under the 28k ports of ip_local_port_range.
HOLDER_CLIENTS_MAX = 15000
# A holder that loses its parent closes its clients after this long anyway.
HOLD_SECONDS_MAX = 900
# A holder whose logins make no progress (none completes or fails) this long gives up.
STALL_SECONDS = 20


def note(message):
    print("idle_clients: " + message, file=sys.stderr, flush=True)


# ---- holder: one child process holding up to HOLDER_CLIENTS_MAX idle clients ---------------


def startup_message(user, database):
    # protocol-message-formats.html: Int32 length, Int32 196608 (3.0), name/value pairs, \0.
    # application_name and client_encoding as a libpq client with them set sends them.
    params = {"user": user, "database": database, "application_name": "idle_clients",
              "client_encoding": "UTF8"}
    body = struct.pack("!I", 196608)
    for name, value in params.items():
        body += name.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def password_message(text):
    body = text.encode() + b"\0"
    return b"p" + struct.pack("!I", len(body) + 4) + body


def error_text(body):
    # ErrorResponse: (field type byte, \0-terminated string)*, \0. 'M' is the message.
    for field in body.split(b"\0"):
        if field[:1] == b"M":
            return field[1:].decode(errors="replace")
    return "ErrorResponse"


class Login:
    __slots__ = ("sock", "connected", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.connected = False
        self.buf = b""


def hold(host, port, source, count, password, login_timeout):
    """Logs COUNT clients in from SOURCE, reports, holds them until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if count + HOLDER_SPARE_FILES > hard:
        print(json.dumps({"error": f"{count} clients need more than the hard limit {hard}"}),
              flush=True)
        return 1
    startup = startup_message(USER, DATABASE)
    md5_inner = hashlib.md5((password + USER).encode()).hexdigest().encode()
    epoll = select.epoll()
    logins = {}            # fd -> Login under way
    idle = []              # sockets logged in, kept open
    errors = collections.Counter()
    opened = 0
    started = time.monotonic()
    deadline = started + login_timeout

    progress = [started]

    def fail(fd, reason):
        progress[0] = time.monotonic()
        login = logins.pop(fd)
        epoll.unregister(fd)
        login.sock.close()
        errors[reason] += 1

    def on_messages(fd, login):
        while len(login.buf) >= 5:
            kind = login.buf[0:1]
            length = struct.unpack("!I", login.buf[1:5])[0]
            if len(login.buf) < 1 + length:
                return
            body = login.buf[5:1 + length]
            login.buf = login.buf[1 + length:]
            if kind == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code == 5:      # AuthenticationMD5Password
                    digest = hashlib.md5(md5_inner + body[4:8]).hexdigest()
                    login.sock.send(password_message("md5" + digest))
                elif code == 3:    # AuthenticationCleartextPassword
                    login.sock.send(password_message(password))
                elif code != 0:    # not AuthenticationOk
                    fail(fd, f"authentication request {code} not supported here")
                    return
            elif kind == b"E":
                fail(fd, error_text(body))
                return
            elif kind == b"Z":     # ReadyForQuery: logged in; keep it, stop watching it
                logins.pop(fd)
                epoll.unregister(fd)
                idle.append(login.sock)
                progress[0] = time.monotonic()
                return

    stalled = False
    while (opened < count or logins) and time.monotonic() < deadline:
        if time.monotonic() - progress[0] > STALL_SECONDS:
            stalled = True
            break
        while opened < count and len(logins) < LOGINS_IN_FLIGHT_MAX:
            opened += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            # The port is chosen at connect() per 4-tuple, so a port in TIME_WAIT towards
            # another destination (or an earlier run) does not block the bind.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            try:
                sock.bind((source, 0))
                rc = sock.connect_ex((host, port))
            except OSError as e:
                sock.close()
                errors[f"bind/connect: {e.strerror}"] += 1
                continue
            if rc not in (0, errno.EINPROGRESS):
                sock.close()
                errors[f"connect: {os.strerror(rc)}"] += 1
                continue
            logins[sock.fileno()] = Login(sock)
            epoll.register(sock.fileno(), select.EPOLLOUT)
        for fd, events in epoll.poll(0.2):
            login = logins.get(fd)
            if login is None:
                continue
            try:
                if not login.connected:
                    err = login.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(fd, f"connect: {os.strerror(err)}")
                        continue
                    login.connected = True
                    login.sock.send(startup)
                    epoll.modify(fd, select.EPOLLIN)
                    continue
                data = login.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(fd, e.strerror or str(e))
                continue
            if not data:
                fail(fd, "closed by the proxy during login")
                continue
            login.buf += data
            on_messages(fd, login)
    for fd in list(logins):
        fail(fd, f"no progress for {STALL_SECONDS} s" if stalled else "login timeout")
    if opened < count:
        errors["not tried: the logins before them stalled"] += count - opened
    elapsed = time.monotonic() - started
    print(json.dumps({"ok": len(idle), "failed": sum(errors.values()), "errors": errors,
                      "seconds": round(elapsed, 2)}), flush=True)
    # Hold until the parent closes our stdin (or says anything), bounded.
    select.select([sys.stdin], [], [], HOLD_SECONDS_MAX)
    terminate = b"X" + struct.pack("!I", 4)
    for sock in idle:
        try:
            sock.send(terminate)
        except OSError:
            pass
        sock.close()
    print(json.dumps({"closed": len(idle)}), flush=True)
    return 0


# ---- orchestration --------------------------------------------------------------------------


class Bench:
    def __init__(self, pgplex_bin):
        self.repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.pgplex_bin = os.path.abspath(pgplex_bin)
        self.n_wanted = int(os.environ.get("N", "100000"))
        self.sizes = [int(s) for s in os.environ.get("SIZES", "10000").split()]
        self.workers = int(os.environ.get("WORKERS", "2"))
        self.pg_port = int(os.environ.get("BENCH_PORT", "26442"))
        self.pgbouncer_port = self.pg_port + 1
        self.pgplex_port = self.pg_port + 2
        self.login_timeout = int(os.environ.get("LOGIN_TIMEOUT", "240"))
        self.settle = float(os.environ.get("SETTLE", "2"))
        self.keep = os.environ.get("BENCH_KEEP", "0") == "1"
        self.password = "bench-" + os.urandom(6).hex()
        self.hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.tmp = tempfile.mkdtemp(prefix="pgplex-idle.")
        os.chmod(self.tmp, 0o755)
        shutil.chown(self.tmp, "postgres", "postgres")
        self.pg_dir = os.path.join(self.tmp, "pg")
        self.pg_started = False
        self.proxy = None       # (name, pid, Popen) of the proxy running now
        self.holders = []       # Popen of the holders running now
        self.next_source = 2    # 127.0.0.x: a fresh source address for every holder
        self.results = []

    # -- processes --

    def stop_pid(self, pid, name, sig=signal.SIGTERM, wait_s=15):
        """Signal a PID this script started, wait, SIGKILL if it lingers."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}") or self.is_zombie(pid):
                return
            time.sleep(0.1)
        note(f"{name} (pid {pid}) did not stop in {wait_s} s; SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @staticmethod
    def is_zombie(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    def stop_holders(self):
        for holder in self.holders:
            try:
                holder.stdin.close()
            except OSError:
                pass
        for holder in self.holders:
            try:
                holder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                note(f"holder {holder.pid} did not exit; SIGKILL")
                holder.kill()
                holder.wait()
        self.holders = []

    def stop_proxy(self):
        if self.proxy is None:
            return
        name, pid, popen = self.proxy
        self.stop_pid(pid, name)
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        self.proxy = None

    def cleanup(self):
        self.stop_holders()
        self.stop_proxy()
        if self.pg_started:
            subprocess.run([os.path.join(self.repo, "scripts/pgcluster.sh"), "stop", self.pg_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        if self.keep:
            note(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- PostgreSQL --

    def pg_admin(self, sql):
        return subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.pg_dir, "-p",
             str(self.pg_port), "-U", "postgres", "-d", "postgres", "-c", sql],
            check=True, capture_output=True, text=True, timeout=60).stdout.strip()

    def start_postgres(self):
        note(f"starting PostgreSQL 15 on 127.0.0.1:{self.pg_port} with scripts/pgcluster.sh")
        out = subprocess.run([os.path.join(self.repo, "scripts/pgcluster.sh"), "start",
                              self.pg_dir, str(self.pg_port), "0"],
                             capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise SystemExit(f"idle_clients: pgcluster.sh start failed:\n{out.stderr}")
        self.pg_started = True
        self.pg_admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{self.password}'")
        self.pg_admin(f"CREATE DATABASE {DATABASE} OWNER {USER}")

    # -- proxies --

    def write_userlist(self):
        path = os.path.join(self.tmp, "userlist.txt")
        with open(path, "w") as f:
            f.write(f'"{USER}" "{self.password}"\n')
        shutil.chown(path, "postgres", "postgres")
        os.chmod(path, 0o600)

    def write_pgbouncer_ini(self, max_client_conn):
        path = os.path.join(self.tmp, "pgbouncer.ini")
        with open(path, "w") as f:
            f.write(f"""[databases]
{DATABASE} = host=127.0.0.1 port={self.pg_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.pgbouncer_port}
unix_socket_dir =
pidfile = {self.tmp}/pgbouncer.pid
auth_type = md5
auth_file = {self.tmp}/userlist.txt
pool_mode = transaction
default_pool_size = 5
max_client_conn = {max_client_conn}
server_reset_query = DISCARD ALL
log_connections = 0
log_disconnections = 0
listen_backlog = 4096
""")
        shutil.chown(path, "postgres", "postgres")
        return path

    def write_pgplex_toml(self, max_client_conn):
        path = os.path.join(self.tmp, "pgplex.toml")
        with open(path, "w") as f:
            f.write(f"""[pgplex]
listen = ["127.0.0.1:{self.pgplex_port}"]
workers = {self.workers}
max_client_conn = {max_client_conn}
pool_mode = "transaction"
default_pool_size = 5
auth_type = "md5"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
log_connections = false
log_disconnections = false

[databases.{DATABASE}]
host = "127.0.0.1"
port = {self.pg_port}
dbname = "{DATABASE}"
""")
        return path

    @staticmethod
    def raise_files():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def wait_ready(self, name, pid, port):
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="2")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}") or self.is_zombie(pid):
                raise SystemExit(f"idle_clients: {name} exited during startup")
            ok = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U",
                                 USER, "-d", DATABASE, "-c", "SELECT 1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=5).returncode == 0
            if ok:
                return
            time.sleep(0.1)
        raise SystemExit(f"idle_clients: no working connection through {name} within 20 s")

    @staticmethod
    def become_postgres():
        # Not runuser: its PAM session (pam_limits) puts the soft RLIMIT_NOFILE back to 1024,
        # and PgBouncer does not raise it itself.
        Bench.raise_files()
        user = pwd.getpwnam("postgres")
        os.initgroups("postgres", user.pw_gid)
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    def start_pgbouncer(self, max_client_conn):
        ini = self.write_pgbouncer_ini(max_client_conn)
        log = open(os.path.join(self.tmp, "pgbouncer.log"), "a")
        # PgBouncer refuses root, so it runs as postgres.
        popen = subprocess.Popen([PGBOUNCER_BIN, ini], stdout=log, stderr=log,
                                 preexec_fn=self.become_postgres, cwd="/")
        self.proxy = ("pgbouncer", popen.pid, popen)
        self.wait_ready("pgbouncer", popen.pid, self.pgbouncer_port)
        return popen.pid

    def start_pgplex(self, max_client_conn):
        toml = self.write_pgplex_toml(max_client_conn)
        log_path = os.path.join(self.tmp, "pgplex.log")
        log = open(log_path, "w")
        popen = subprocess.Popen([self.pgplex_bin, toml], stdout=log, stderr=log,
                                 preexec_fn=self.raise_files, cwd="/")
        self.proxy = ("pgplex", popen.pid, popen)
        self.wait_ready("pgplex", popen.pid, self.pgplex_port)
        with open(log_path) as f:
            slots = [int(m) for m in re.findall(r"worker \d+: .*?, (\d+) client slots", f.read())]
        return popen.pid, slots

    # -- measuring --

    @staticmethod
    def status_kb(pid, field):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    @staticmethod
    def nofile_limit(pid):
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return None

    def save_smaps(self, pid, label):
        try:
            shutil.copy(f"/proc/{pid}/smaps", os.path.join(self.tmp, f"smaps-{label}"))
        except OSError:
            pass

    def smaps_growth(self, before, after, top=4):
        """The mappings whose Rss grew most between two saved smaps, as text."""
        def read(label):
            rss, name, size = {}, {}, {}
            key = None
            try:
                with open(os.path.join(self.tmp, f"smaps-{label}")) as f:
                    for line in f:
                        head = line.split()
                        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                            # By start address: a malloc arena grows in place, its end moves.
                            key = head[0].split("-")[0]
                            name[key] = head[5] if len(head) > 5 else "[anon]"
                        elif head and head[0] == "Rss:" and key:
                            rss[key] = int(head[1])
                        elif head and head[0] == "Size:" and key:
                            size[key] = int(head[1])
            except OSError:
                pass
            return rss, name, size
        rss_before, _, _ = read(before)
        rss_after, name, size = read(after)
        growth = sorted(((rss_after[k] - rss_before.get(k, 0), k) for k in rss_after),
                        reverse=True)[:top]
        return ", ".join(f"{name[k]} of {size.get(k, 0)} kB +{kb} kB" for kb, k in growth
                         if kb > 0)

    def open_clients(self, port, count):
        """Starts holders for COUNT clients; returns (logged in, failed, errors, seconds)."""
        per_holder = min(HOLDER_CLIENTS_MAX, self.hard_files - HOLDER_SPARE_FILES)
        started = []
        remaining = count
        while remaining > 0:
            take = min(per_holder, remaining)
            remaining -= take
            source = f"127.0.0.{self.next_source}"
            self.next_source += 1
            if self.next_source > 254:
                raise SystemExit("idle_clients: out of 127.0.0.x source addresses")
            started.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--hold", "127.0.0.1", str(port),
                 source, str(take), self.password, str(self.login_timeout)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/"))
            self.holders.append(started[-1])
        ok = failed = 0
        seconds = 0.0
        errors = collections.Counter()
        for holder in started:
            ready, _, _ = select.select([holder.stdout], [], [], self.login_timeout + 60)
            line = holder.stdout.readline() if ready else ""
            if not line:
                raise SystemExit(f"idle_clients: holder {holder.pid} reported nothing")
            report = json.loads(line)
            if "error" in report:
                raise SystemExit(f"idle_clients: holder {holder.pid}: {report['error']}")
            ok += report["ok"]
            failed += report["failed"]
            errors.update(report["errors"])
            seconds = max(seconds, report["seconds"])
        return ok, failed, errors, seconds

    def measure(self, name, count):
        """One proxy, freshly started, empty and then with COUNT idle clients."""
        if name == "pgplex":
            pid, slots = self.start_pgplex(max(count, 1))
            port = self.pgplex_port
        else:
            pid = self.start_pgbouncer(count + 100)
            slots = []
            port = self.pgbouncer_port
        time.sleep(1)
        result = {"proxy": name, "wanted": count, "pid": pid, "slots": sum(slots),
                  "nofile": self.nofile_limit(pid),
                  "rss_empty_kb": self.status_kb(pid, "VmRSS")}
        self.save_smaps(pid, f"{name}-{count}-empty")
        if count > 0:
            # In two halves, so that the second half's growth is the cost of one more
            # client with everything else (buffer ring pages first touched, allocator
            # arenas, the server pool) already paid.
            first = count // 2
            note(f"{name}: logging in {count} clients, in two halves")
            ok, failed, errors, seconds = self.open_clients(port, first)
            time.sleep(self.settle)
            result["rss_half_kb"] = self.status_kb(pid, "VmRSS")
            ok_2, failed_2, errors_2, seconds_2 = self.open_clients(port, count - first)
            time.sleep(self.settle)
            errors.update(errors_2)
            result.update(ok=ok + ok_2, ok_second=ok_2, failed=failed + failed_2,
                          errors=dict(errors), login_s=seconds + seconds_2,
                          rss_idle_kb=self.status_kb(pid, "VmRSS"),
                          hwm_kb=self.status_kb(pid, "VmHWM"))
            self.save_smaps(pid, f"{name}-{count}-idle")
            result["growth"] = self.smaps_growth(f"{name}-{count}-empty", f"{name}-{count}-idle")
            self.stop_holders()
            time.sleep(self.settle)
            result["rss_closed_kb"] = self.status_kb(pid, "VmRSS")
            if result["ok"] > 0:
                result["bytes_per_client"] = (result["rss_idle_kb"] -
                                              result["rss_empty_kb"]) * 1024 / result["ok"]
            if ok_2 > 0:
                result["bytes_marginal"] = (result["rss_idle_kb"] -
                                            result["rss_half_kb"]) * 1024 / ok_2
            for reason, n in errors.items():
                note(f"{name}: {n} clients failed: {reason}")
            note(f"{name}: {result['ok']} of {count} idle in {result['login_s']:.1f} s; RSS "
                 f"{result['rss_empty_kb']} -> {result['rss_half_kb']} -> "
                 f"{result['rss_idle_kb']} kB ({result.get('bytes_per_client', 0):.0f} B per "
                 f"client, {result.get('bytes_marginal', 0):.0f} B in the second half)")
        self.stop_proxy()
        self.results.append(result)
        return result

    # -- the run --

    def pgplex_capacity(self):
        """Client slots pgplex gets with max_client_conn = N under this hard limit."""
        pid, slots = self.start_pgplex(self.n_wanted)
        self.stop_proxy()
        if len(slots) != self.workers:
            raise SystemExit("idle_clients: could not read pgplex's client slots from its log")
        return slots

    def run(self):
        for port in (self.pg_port, self.pgbouncer_port, self.pgplex_port):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise SystemExit(f"idle_clients: port {port} is in use; set BENCH_PORT")
        self.start_postgres()
        self.write_userlist()
        note(f"hard RLIMIT_NOFILE here: {self.hard_files} (raised for each proxy and holder)")
        slots = self.pgplex_capacity()
        # Clients are spread over the workers by SO_REUSEPORT's hash, so a worker fills up
        # before the sum does: keep 5% spare on the fullest.
        pgplex_max = min(self.n_wanted, int(min(slots) * 0.95) * len(slots))
        # PgBouncer: a descriptor per client, per server, the listener, its own few.
        pgbouncer_max = self.hard_files - 200
        if pgplex_max < self.n_wanted:
            note(f"N={self.n_wanted} is out of reach: pgplex's {self.workers} workers get "
                 f"{'+'.join(map(str, slots))} client slots under the hard file limit "
                 f"{self.hard_files}; measuring pgplex at {pgplex_max}")
        counts = sorted(set(self.sizes + [pgplex_max, min(pgplex_max, pgbouncer_max)]))
        # pgplex with max_client_conn 1 and no client: its smallest slot tables, to tell
        # what it sets aside per slot at start from what a client adds.
        self.measure("pgplex", 0)
        for count in counts:
            if count <= pgbouncer_max:
                self.measure("pgbouncer", count)
            self.measure("pgplex", count)
        return self.report(slots, pgplex_max, pgbouncer_max)

    def report(self, slots, pgplex_max, pgbouncer_max):
        lines = []
        out = lines.append
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 1048576
        version = subprocess.run([PGBOUNCER_BIN, "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
        plex_version = subprocess.run([self.pgplex_bin, "--version"], capture_output=True,
                                      text=True).stdout.strip()
        out(f"idle clients benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        out(f"machine: {os.cpu_count()} CPUs, {os.uname().release}, {mem_gib:.0f} GiB; "
            f"hard RLIMIT_NOFILE {self.hard_files}")
        out(f"{version}, {plex_version} ({self.workers} workers); both in transaction pooling, "
            f"md5 auth to clients, pool size 5")
        out(f"N wanted {self.n_wanted}; pgplex reachable {pgplex_max} "
            f"(client slots per worker {'+'.join(map(str, slots))} at max_client_conn "
            f"{self.n_wanted}), "
            f"PgBouncer reachable {pgbouncer_max} (one descriptor per client)")
        out("rss: VmRSS in kB: empty = after start and one warm-up query, half = half the "
            "clients logged in and idle, idle = all of them, closed = after they left;")
        out("hwm: VmHWM in kB; B/client = (idle - empty) * 1024 / logged in; "
            "2nd half = (idle - half) * 1024 / clients of the second half")
        out("")
        out(f"{'proxy':<9} {'clients':>7} {'logged in':>9} {'failed':>6} {'login s':>7} | "
            f"{'slots':>6} {'nofile':>6} | {'rss empty':>9} {'rss half':>9} {'rss idle':>9} "
            f"{'hwm':>9} {'closed':>9} | {'B/client':>8} {'2nd half':>8}")
        for r in self.results:
            if r["wanted"] == 0:
                continue
            out(f"{r['proxy']:<9} {r['wanted']:>7} {r['ok']:>9} {r['failed']:>6} "
                f"{r['login_s']:>7.1f} | {r['slots'] or '-':>6} {r['nofile'] or '-':>6} | "
                f"{r['rss_empty_kb']:>9} {r['rss_half_kb']:>9} {r['rss_idle_kb']:>9} "
                f"{r['hwm_kb']:>9} {r['rss_closed_kb']:>9} | "
                f"{r.get('bytes_per_client', 0):>8.0f} {r.get('bytes_marginal', 0):>8.0f}")
        base = next((r for r in self.results if r["proxy"] == "pgplex" and r["wanted"] == 0),
                    None)
        if base:
            out("")
            out(f"pgplex with max_client_conn 1 and no client: {base['slots']} client slots, "
                f"VmRSS {base['rss_empty_kb']} kB. Set aside at start, per client slot, and "
                f"all-in per client ((idle - that) / logged in):")
            for r in self.results:
                if r["proxy"] != "pgplex" or r["wanted"] == 0 or not r["ok"]:
                    continue
                per_slot = ((r["rss_empty_kb"] - base["rss_empty_kb"]) * 1024 /
                            max(1, r["slots"] - base["slots"]))
                all_in = (r["rss_idle_kb"] - base["rss_empty_kb"]) * 1024 / r["ok"]
                out(f"  {r['wanted']:>7} clients: {r['slots']} slots, {per_slot:.0f} B per slot "
                    f"at start, {all_in:.0f} B per client all-in")
        out("")
        out("largest Rss growth by mapping (empty -> idle):")
        for r in self.results:
            if r["wanted"] and r.get("growth"):
                out(f"  {r['proxy']} {r['wanted']}: {r['growth']}")
        failed = [r for r in self.results if r.get("failed")]
        for r in failed:
            out(f"{r['proxy']} {r['wanted']}: failures {r['errors']}")
        text = "\n".join(lines) + "\n"
        sys.stdout.write(text)
        results_dir = os.path.join(self.repo, "bench", "results")
        os.makedirs(results_dir, exist_ok=True)
        with open(os.path.join(results_dir, "idle_clients.txt"), "w") as f:
            f.write(text)
        note("table written to bench/results/idle_clients.txt")
        return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "--hold":
        host, port, source, count, password, login_timeout = argv[2:8]
        return hold(host, int(port), source, int(count), password, float(login_timeout))
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        note("run as root (PostgreSQL and PgBouncer are started as postgres)")
        return 1
    for path in (PGBOUNCER_BIN, os.path.join(PG_BIN, "initdb"), argv[1]):
        if not os.access(path, os.X_OK):
            note(f"{path} is not an executable")
            return 1
    bench = Bench(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return bench.run()
    except KeyboardInterrupt:
        return 130
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
