"""pgplex under systemd, without systemd: the Unix socket for clients (unix_socket_dir,
unix_socket_mode, hba `local` lines), socket activation through systemd-socket-activate
(sockets matched to listeners by FileDescriptorName= or by address, the rest closed), and the
sd_notify messages read from a NOTIFY_SOCKET the test binds (READY, RELOADING with
MONOTONIC_USEC, STATUS, WATCHDOG, STOPPING)."""

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import psycopg
import pytest

from conftest import (HOST, PASSWORDS, PG_BIN, START_TIMEOUT_SECONDS, PROTOCOL_3_0, clean_env,
                      next_free_port, startup_packet, wait_for_tcp)
from test_admin_clusters import ADMIN, show
from test_tls import certs, tls_settings  # noqa: F401 - certs is a fixture


@pytest.fixture
def short_dir():
    """A directory with a short path: a Unix socket path is at most 107 bytes."""
    directory = tempfile.mkdtemp(prefix="pgx", dir="/tmp")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def unix_psql(directory, port, sql, dbname="payam_db", user="payam"):
    command = [str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
               f"host={directory} port={port} dbname={dbname} user={user}", "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, timeout=30,
                          env=clean_env(PGPASSWORD=PASSWORDS.get(user, ""), PGCONNECT_TIMEOUT=10))


def launch(instance, prefix=(), env=None):
    """Starts a make_pgplex(start=False) instance with a command prefix and extra environment,
    as Pgplex.start() would; its stop() and the factory's checks still apply."""
    instance.write()
    instance.stderr_file = open(instance.log_path, "wb")
    instance.process = subprocess.Popen(
        [*prefix, instance.binary, str(instance.config_path)], cwd=instance.dir,
        stdin=subprocess.DEVNULL, stdout=instance.stderr_file, stderr=instance.stderr_file,
        env={**os.environ, **(env or {})})
    return instance


def answers_startup(port):
    """True when a StartupMessage on port is answered with a message (the listener is served
    by a worker), False when the connection is closed or refused."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            raw.settimeout(5)
            raw.sendall(startup_packet({"user": "payam", "database": "payam_db"}, PROTOCOL_3_0))
            head = raw.recv(1)
            return head in (b"R", b"E")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# The Unix socket


def test_unix_socket_dir_serves_clients_with_its_mode_and_show_clients_says_unix(
        make_pgplex, short_dir):
    pgplex = make_pgplex(settings={**ADMIN, "unix_socket_dir": short_dir,
                                   "unix_socket_mode": "0770"})
    path = os.path.join(short_dir, f".s.PGSQL.{pgplex.port}")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
    result = unix_psql(short_dir, pgplex.port, "SELECT 'over unix'")
    assert result.returncode == 0, result.stderr + pgplex.log()
    assert result.stdout.strip() == "over unix"
    with psycopg.connect(host=short_dir, port=pgplex.port, dbname="payam_db", user="payam",
                         password=PASSWORDS["payam"], autocommit=True) as conn:
        conn.execute("SELECT 1")
        rows = show(pgplex.port, "SHOW CLIENTS")
        addresses = sorted(row["addr"] for row in rows)
        assert addresses == ["127.0.0.1", "unix"], rows
    assert pgplex.stop() == (0, False)
    assert not os.path.exists(path), "the Unix socket outlived pgplex"


def test_unix_socket_mode_rejects_a_non_octal_mode(make_pgplex, short_dir):
    pgplex = make_pgplex(settings={"unix_socket_dir": short_dir, "unix_socket_mode": "0799"},
                         start=False)
    pgplex.write()
    result = subprocess.run([pgplex.binary, "--check", str(pgplex.config_path)],
                            capture_output=True, text=True, timeout=10, cwd=pgplex.dir)
    assert result.returncode == 1
    assert "unix_socket_mode" in result.stderr and "octal" in result.stderr, result.stderr


def test_hba_local_line_matches_unix_clients_and_host_line_tcp_clients(make_pgplex, short_dir,
                                                                       tmp_path):
    hba = tmp_path / "hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 reject\n")
    pgplex = make_pgplex(auth_type="hba", settings={"unix_socket_dir": short_dir,
                                                    "auth_hba_file": str(hba)})
    result = unix_psql(short_dir, pgplex.port, "SELECT 'trusted locally'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "trusted locally"
    with pytest.raises(psycopg.OperationalError, match="rejects connection for host"):
        psycopg.connect(host=HOST, port=pgplex.port, dbname="payam_db", user="payam",
                        password=PASSWORDS["payam"], connect_timeout=5)


def test_hba_peer_admits_the_os_user_of_the_same_name_only(make_pgplex, short_dir, tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    assert me != "payam"
    hba = tmp_path / "hba.conf"
    hba.write_text("local all all peer\n")
    pgplex = make_pgplex(auth_type="hba", settings={"unix_socket_dir": short_dir,
                                                    "auth_hba_file": str(hba)})
    result = unix_psql(short_dir, pgplex.port, "SELECT current_user", user=me)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "payam"   # the alias logs in to the server as payam
    result = unix_psql(short_dir, pgplex.port, "SELECT 1", user="payam")
    assert result.returncode != 0
    assert 'Peer authentication failed for user "payam"' in result.stderr, result.stderr


def test_tls_required_is_not_asked_of_unix_clients_as_with_pgbouncer(make_pgplex, short_dir,
                                                                    certs):  # noqa: F811
    pgplex = make_pgplex(settings={**tls_settings(certs, "require"),
                                   "unix_socket_dir": short_dir})
    result = unix_psql(short_dir, pgplex.port, "SELECT 'plain over unix'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plain over unix"
    with pytest.raises(psycopg.OperationalError, match="TLS is required"):
        psycopg.connect(host=HOST, port=pgplex.port, dbname="payam_db", user="payam",
                        password=PASSWORDS["payam"], sslmode="disable", connect_timeout=5)


def test_hba_without_a_local_line_refuses_a_unix_client_naming_it_local(make_pgplex, short_dir,
                                                                        tmp_path):
    hba = tmp_path / "hba.conf"
    hba.write_text("host all all 127.0.0.1/32 scram-sha-256\n")
    pgplex = make_pgplex(auth_type="hba", settings={"unix_socket_dir": short_dir,
                                                    "auth_hba_file": str(hba)})
    result = unix_psql(short_dir, pgplex.port, "SELECT 1")
    assert result.returncode != 0
    assert 'no pg_hba.conf entry for host "[local]", user "payam"' in result.stderr, \
        result.stderr


# ---------------------------------------------------------------------------------------
# Socket activation


def activated(instance, pairs):
    """Starts instance under systemd-socket-activate with the sockets [(address, name), ...].
    systemd-socket-activate starts pgplex at the first connection, as systemd would: one is
    made on the first address and served once pgplex runs."""
    launch(instance, socket_activate(pairs))
    address = pairs[0][0]
    for _ in range(100):
        try:
            if address.startswith("/"):
                first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                first.connect(address)
            else:
                host, port = address.rsplit(":", 1)
                first = socket.create_connection((host, int(port)), timeout=2)
            first.close()
            return instance
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"systemd-socket-activate did not listen on {address}")


def socket_activate(pairs):
    """systemd-socket-activate's arguments for [(address, name), ...]."""
    if shutil.which("systemd-socket-activate") is None:
        pytest.skip("systemd-socket-activate is not installed (package systemd)")
    arguments = ["systemd-socket-activate"]
    for address, _ in pairs:
        arguments += ["-l", address]
    arguments.append("--fdname=" + ":".join(name for _, name in pairs))
    return arguments


def test_socket_activation_serves_named_sockets_and_closes_the_unmatched_one(make_pgplex):
    main, service, stray = next_free_port(), next_free_port(), next_free_port()
    clusters = {"main": {"nodes": ["127.0.0.1:1"], "monitor_user": "postgres",
                         "services": {"replica": {"port": service}}}}
    pgplex = make_pgplex(start=False, clusters=clusters)
    pgplex.settings["listen"] = [f"{HOST}:{main}"]
    pgplex.port = main
    activated(pgplex, [(f"{HOST}:{main}", "pgplex"), (f"{HOST}:{service}", "main.replica"),
                       (f"{HOST}:{stray}", "nobody")])
    assert pgplex.wait_log(r"socket activation: pgplex on 127\.0\.0\.1:%d" % main,
                           START_TIMEOUT_SECONDS), pgplex.log()
    assert pgplex.wait_log(r"socket activation: main\.replica on 127\.0\.0\.1:%d" % service)
    assert pgplex.wait_log(r"socket activation: fd \d+ \(nobody, 127\.0\.0\.1:%d\) is neither"
                           % stray)
    result = subprocess.run([str(PG_BIN / "psql"), "-X", "-At",
                             f"host={HOST} port={main} dbname=payam_db user=payam",
                             "-c", "SELECT 'activated'"], capture_output=True, text=True,
                            timeout=30, env=clean_env(PGPASSWORD=PASSWORDS["payam"]))
    assert result.stdout.strip() == "activated", result.stderr + pgplex.log()
    assert answers_startup(service), pgplex.log()
    # The stray socket was closed: systemd-socket-activate's copy went with the exec.
    assert not wait_for_tcp(stray, 1), "the unmatched socket still accepts"


def test_socket_activation_matches_an_unnamed_socket_by_address_and_opens_nothing_else(
        make_pgplex):
    main, configured_only = next_free_port(), next_free_port()
    pgplex = make_pgplex(start=False)
    pgplex.settings["listen"] = [f"{HOST}:{main}", f"{HOST}:{configured_only}"]
    pgplex.port = main
    activated(pgplex, [(f"{HOST}:{main}", "pgplex.socket")])
    assert wait_for_tcp(main, START_TIMEOUT_SECONDS, pgplex.process), pgplex.log()
    assert pgplex.wait_log(r"socket activation: pgplex on 127\.0\.0\.1:%d "
                           r"\(FileDescriptorName=pgplex\.socket\)" % main), pgplex.log()
    assert pgplex.wait_log(r"no socket for listen 127\.0\.0\.1:%d; not listening on it"
                           % configured_only), pgplex.log()
    assert answers_startup(main)
    assert not wait_for_tcp(configured_only, 1), "pgplex opened an address of its own"


def test_socket_activation_with_a_unix_socket(make_pgplex, short_dir):
    main = next_free_port()
    path = os.path.join(short_dir, f".s.PGSQL.{main}")
    pgplex = make_pgplex(start=False, settings={"unix_socket_dir": short_dir})
    pgplex.settings["listen"] = [f"{HOST}:{main}"]
    pgplex.port = main
    activated(pgplex, [(f"{HOST}:{main}", "pgplex"), (path, "pgplex")])
    assert wait_for_tcp(main, START_TIMEOUT_SECONDS, pgplex.process), pgplex.log()
    assert pgplex.wait_log(r"socket activation: pgplex on %s" % re.escape(path)), pgplex.log()
    result = unix_psql(short_dir, main, "SELECT 'activated unix'")
    assert result.stdout.strip() == "activated unix", result.stderr + pgplex.log()


# ---------------------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    """The datagram socket systemd would listen on (NOTIFY_SOCKET); collects what pgplex
    says, one message per datagram."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, pattern, timeout=10):
        """The first message (so far or within timeout) that matches the regex."""
        deadline = time.monotonic() + timeout
        while True:
            for text in self.messages:
                if re.search(pattern, text):
                    return text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return None

    def collect(self, seconds):
        """Reads every message that arrives within seconds (datagrams wait in the socket
        until read, so clearing messages alone does not forget what was sent before)."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            self.wait_for(r"^$", timeout=0.2)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(short_dir):
    listener = NotifySocket(short_dir)
    yield listener
    listener.close()


def test_sd_notify_ready_status_reload_and_stopping(make_pgplex, notify):
    pgplex = make_pgplex(start=False)
    launch(pgplex, env={"NOTIFY_SOCKET": notify.path})
    assert notify.wait_for(r"^READY=1"), notify.messages
    assert wait_for_tcp(pgplex.port, 1), "READY=1 came before the listener was open"
    status = notify.wait_for(r"STATUS=serving: \d+ clients, \d+ servers, \d+ tps")
    assert status, notify.messages
    before = time.monotonic_ns() // 1000
    notify.messages.clear()
    pgplex.signal(signal.SIGHUP)
    reloading = notify.wait_for(r"RELOADING=1")
    assert reloading, notify.messages
    stamp = int(re.search(r"MONOTONIC_USEC=(\d+)", reloading).group(1))
    assert before <= stamp <= time.monotonic_ns() // 1000
    assert notify.wait_for(r"^READY=1"), notify.messages
    assert notify.messages.index(reloading) < next(
        i for i, text in enumerate(notify.messages) if text.startswith("READY=1"))
    pgplex.signal(signal.SIGINT)
    assert notify.wait_for(r"STOPPING=1"), notify.messages
    assert pgplex.wait_exit(10) == 0


def test_sd_notify_refused_reload_still_says_ready(make_pgplex, notify):
    pgplex = make_pgplex(start=False)
    launch(pgplex, env={"NOTIFY_SOCKET": notify.path})
    assert notify.wait_for(r"^READY=1"), notify.messages
    notify.messages.clear()
    pgplex.config_path.write_text("[pgplex]\nlisten = 42\n")
    pgplex.signal(signal.SIGHUP)
    assert notify.wait_for(r"RELOADING=1"), notify.messages
    assert notify.wait_for(r"READY=1\nSTATUS=reload refused"), notify.messages
    pgplex.write()


def test_sd_notify_watchdog_is_pinged_while_the_workers_tick(make_pgplex, notify):
    pgplex = make_pgplex(start=False, workers=2)
    # No WATCHDOG_PID: sd_watchdog_enabled() then takes the interval for this process.
    launch(pgplex, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    assert notify.wait_for(r"^READY=1"), notify.messages
    started = time.monotonic()
    notify.messages.clear()
    while time.monotonic() - started < 2.6:
        notify.wait_for(r"^$", timeout=0.2)
    pings = [text for text in notify.messages if text == "WATCHDOG=1"]
    assert 3 <= len(pings) <= 7, notify.messages  # every 500 ms


def worker_thread(pid, index=0):
    """The thread id of worker index of pgplex pid (its threads are named pgplex-wN)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/comm") as comm:
            if comm.read().strip() == f"pgplex-w{index}":
                return int(task)
    raise AssertionError(f"no thread pgplex-w{index} in {pid}")


class StoppedThread:
    """One thread held still with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT), the rest of the
    process running: a stuck worker, as the watchdog must see it."""

    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17

    def __init__(self, tid):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.tid = tid
        if self.libc.ptrace(self.SEIZE, tid, None, None) != 0:
            pytest.skip(f"ptrace is not allowed here (errno {ctypes.get_errno()})")
        assert self.libc.ptrace(self.INTERRUPT, tid, None, None) == 0
        os.waitpid(tid, 0x40000000)  # __WALL: the thread is stopped

    def release(self):
        self.libc.ptrace(self.DETACH, self.tid, None, None)


def test_sd_notify_watchdog_stops_while_a_worker_is_stuck_and_resumes_after(make_pgplex,
                                                                            notify):
    pgplex = make_pgplex(start=False, workers=2)
    launch(pgplex, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    assert notify.wait_for(r"^READY=1"), notify.messages
    assert notify.wait_for(r"^WATCHDOG=1$"), notify.messages
    stuck = StoppedThread(worker_thread(pgplex.process.pid, 1))
    try:
        # A ping already due may still go out: the last check before the stop may have seen
        # the worker's counter move, and the control loop looks every 200 ms (pings every
        # 500 ms here), so one can come up to 0.7 s later; more under load. One at most:
        # the next check sees the stuck worker's counter where the last one left it.
        notify.messages.clear()
        notify.collect(1.5)
        assert notify.messages.count("WATCHDOG=1") <= 1, notify.messages
        notify.messages.clear()
        notify.collect(2.6)
        assert "WATCHDOG=1" not in notify.messages, notify.messages
        assert any(text.startswith("STATUS=") for text in notify.messages), notify.messages
    finally:
        stuck.release()
    notify.messages.clear()
    assert notify.wait_for(r"^WATCHDOG=1$", timeout=3), notify.messages
