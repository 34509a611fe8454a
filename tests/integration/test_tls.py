"""TLS toward clients (client_tls_*): SSLRequest answered 'S', direct TLS with ALPN, every
sslmode of libpq against every client_tls_sslmode that matters, client certificates, and
the injection of bytes between SSLRequest and the handshake (CVE-2021-3935). Certificates
are made here by openssl: a CA, a server certificate for localhost/127.0.0.1, a client
certificate with CN=payam, and a second CA that signed nothing of ours."""

import base64
import os
from pathlib import Path
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import psycopg
import pytest

from conftest import PASSWORDS, PROTOCOL_3_0, RawClient, ServerError, message
from test_admin_clusters import ADMIN, show
from test_reload import run_check

SSL_REQUEST_CODE = 80877103


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Files of a test PKI, by name: ca.crt, server.crt/key, server_dns.crt/key (localhost
    only, no IP address), client.crt/key (CN=payam), stranger.crt/key (CN=analyst),
    other_ca.crt and server2.crt/key that it signed."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other_ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN=pgplex test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn, ext in (("server", "localhost", ["-extfile", "san.ext"]),
                          ("client", "payam", []), ("stranger", "analyst", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)
    # server_dns: a server certificate for the name localhost only (no IP address).
    (d / "dns.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server_dns.key", "-out", "server_dns.csr", cwd=d)
    openssl("x509", "-req", "-in", "server_dns.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "server_dns.crt", "-extfile", "dns.ext",
            cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server2.key", "-out", "server2.csr", cwd=d)
    openssl("x509", "-req", "-in", "server2.csr", "-CA", "other_ca.crt", "-CAkey", "other_ca.key",
            "-CAcreateserial", "-days", "2", "-out", "server2.crt", "-extfile", "san.ext", cwd=d)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return {path.name: str(path) for path in d.iterdir()}


def tls_settings(certs, mode="require", **extra):
    settings = {"client_tls_sslmode": mode, "client_tls_cert_file": certs["server.crt"],
                "client_tls_key_file": certs["server.key"]}
    settings.update(extra)
    return settings


def tls_connect(port, sslmode, certs=None, host="127.0.0.1", user="payam", dbname="payam_db",
                **kwargs):
    args = {"sslmode": sslmode}
    if certs is not None:
        args["sslrootcert"] = certs["ca.crt"]
    return psycopg.connect(host=host, port=port, dbname=dbname, user=user,
                           password=PASSWORDS[user], autocommit=True, connect_timeout=10,
                           **args, **kwargs)


def ssl_in_use(conn):
    return conn.pgconn.ssl_in_use


def test_sslmode_require_gets_tls_and_queries_work(make_pgplex, certs):
    pgplex = make_pgplex(settings=tls_settings(certs))
    with tls_connect(pgplex.port, "require") as conn:
        assert ssl_in_use(conn)
        assert conn.execute("SELECT 'over tls', 40 + 2").fetchone() == ("over tls", 42)
    assert " tls=TLSv1." in pgplex.log()


def test_verify_full_checks_the_name_pgplex_presents(make_pgplex, certs):
    pgplex = make_pgplex(settings=tls_settings(certs))
    with tls_connect(pgplex.port, "verify-full", certs, host="localhost",
                     hostaddr="127.0.0.1") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with tls_connect(pgplex.port, "verify-full", certs, host="127.0.0.1") as conn:
        assert ssl_in_use(conn)  # 127.0.0.1 is in the certificate's subjectAltName too
    wrong = {"ca.crt": certs["other_ca.crt"]}
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        tls_connect(pgplex.port, "verify-ca", wrong)
    # A name the certificate does not carry: libpq refuses it.
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        tls_connect(pgplex.port, "verify-full", certs, host="elsewhere.invalid",
                    hostaddr="127.0.0.1")


def test_every_libpq_sslmode_against_require_and_prefer(make_pgplex, certs):
    for mode in ("require", "prefer"):
        pgplex = make_pgplex(settings=tls_settings(certs, mode))
        for sslmode in ("allow", "prefer", "require"):
            with tls_connect(pgplex.port, sslmode) as conn:
                # allow tries in clear first: only "require" makes it come back with TLS.
                assert ssl_in_use(conn) == (sslmode != "allow" or mode == "require")
                assert conn.execute("SELECT 7").fetchone() == (7,)
        if mode == "prefer":
            with tls_connect(pgplex.port, "disable") as conn:
                assert not ssl_in_use(conn)
                assert conn.execute("SELECT 8").fetchone() == (8,)
        else:
            with pytest.raises(psycopg.OperationalError, match="TLS is required"):
                tls_connect(pgplex.port, "disable")


def test_plaintext_is_refused_with_28000_when_tls_is_required(make_pgplex, certs):
    pgplex = make_pgplex(settings=tls_settings(certs, "require"))
    with RawClient(pgplex.port) as client:
        with pytest.raises(ServerError) as raised:
            client.login("payam", "payam_db", PASSWORDS["payam"])
        assert raised.value.sqlstate == "28000"


def test_disable_answers_n_and_plaintext_works(make_pgplex, certs):
    pgplex = make_pgplex(settings={"client_tls_sslmode": "disable"})
    with pytest.raises(psycopg.OperationalError, match="does not support SSL|server does not"):
        tls_connect(pgplex.port, "require")
    with tls_connect(pgplex.port, "prefer") as conn:
        assert not ssl_in_use(conn)


def test_client_certificates_verify_ca_and_verify_full(make_pgplex, certs):
    pgplex = make_pgplex(settings=tls_settings(certs, "verify-full",
                                               client_tls_ca_file=certs["ca.crt"]))
    with tls_connect(pgplex.port, "require", sslcert=certs["client.crt"],
                     sslkey=certs["client.key"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("payam",)
    # No certificate: the handshake fails (the client sees the connection end).
    with pytest.raises(psycopg.OperationalError):
        tls_connect(pgplex.port, "require")
    # A certificate of the right CA for another name: verify-full refuses it (28000).
    with pytest.raises(psycopg.OperationalError, match="does not match user"):
        tls_connect(pgplex.port, "require", sslcert=certs["stranger.crt"],
                    sslkey=certs["stranger.key"])
    pgplex_ca = make_pgplex(settings=tls_settings(certs, "verify-ca",
                                                  client_tls_ca_file=certs["ca.crt"]))
    with tls_connect(pgplex_ca.port, "require", sslcert=certs["stranger.crt"],
                     sslkey=certs["stranger.key"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("payam",)


def test_bytes_after_sslrequest_before_the_handshake_are_never_read(make_pgplex, certs):
    """CVE-2021-3935: a man in the middle appends a StartupMessage (or a query) to the
    client's SSLRequest. pgplex must not read it as plaintext: the connection is closed."""
    pgplex = make_pgplex(settings=tls_settings(certs, "prefer"))
    startup = struct.pack("!I", PROTOCOL_3_0) + b"user\0payam\0database\0payam_db\0\0"
    startup = struct.pack("!I", len(startup) + 4) + startup
    with RawClient(pgplex.port) as client:
        client.send(struct.pack("!II", 8, SSL_REQUEST_CODE) + startup)
        assert client.recv_exactly(1) == b"S"
        assert client.is_closed()
    assert "received unencrypted data after SSL request" in pgplex.log()
    with tls_connect(pgplex.port, "require") as conn:  # the daemon goes on
        assert conn.execute("SELECT 1").fetchone() == (1,)


def direct_tls(port, certs, alpn=("postgresql",)):
    context = ssl.create_default_context(cafile=certs["ca.crt"])
    if alpn:
        context.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def startup_message(user, database):
    body = struct.pack("!I", PROTOCOL_3_0) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def read_message(sock):
    header = b""
    while len(header) < 5:
        chunk = sock.recv(5 - len(header))
        if not chunk:
            return None, None
        header += chunk
    length = struct.unpack("!I", header[1:])[0] - 4
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None, None
        body += chunk
    return header[:1], body


def test_direct_tls_with_alpn_postgresql(make_pgplex, certs):
    """PostgreSQL 17's sslnegotiation=direct: the ClientHello comes first, no SSLRequest;
    ALPN "postgresql" is required."""
    pgplex = make_pgplex(settings=tls_settings(certs), auth_type="trust")
    with direct_tls(pgplex.port, certs) as sock:
        assert sock.selected_alpn_protocol() == "postgresql"
        sock.sendall(startup_message("payam", "payam_db"))
        kinds = []
        while True:
            kind, _ = read_message(sock)
            assert kind is not None, kinds
            kinds.append(kind)
            if kind == b"Z":
                break
        assert b"R" in kinds and b"K" in kinds
        sock.sendall(message(b"Q", b"SELECT 'direct'\0"))
        rows = []
        while True:
            kind, body = read_message(sock)
            if kind == b"D":
                rows.append(body)
            if kind in (b"Z", None):
                break
        assert len(rows) == 1 and rows[0].endswith(b"direct")
    with direct_tls(pgplex.port, certs, alpn=None) as sock:  # no ALPN: refused
        sock.sendall(startup_message("payam", "payam_db"))
        kind, body = read_message(sock)
        assert kind == b"E" and b"ALPN" in body
    with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
        direct_tls(pgplex.port, certs, alpn=("http/1.1",))


def test_large_values_and_many_clients_over_tls(make_pgplex, certs):
    pgplex = make_pgplex(settings={**tls_settings(certs), "pool_mode": "transaction"})
    payload = os.urandom(8 << 20)
    with tls_connect(pgplex.port, "require") as conn:
        back = conn.execute("SELECT %s::bytea", (payload,)).fetchone()[0]
        assert back == payload
        rows = conn.execute("SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g")
        assert sum(1 for _ in rows) == 20000
    conns = [tls_connect(pgplex.port, "require") for _ in range(30)]
    try:
        for index, conn in enumerate(conns):
            assert conn.execute("SELECT %s::int", (index,)).fetchone() == (index,)
    finally:
        for conn in conns:
            conn.close()


def test_show_clients_tells_the_tls_version_and_cipher(make_pgplex, certs):
    pgplex = make_pgplex(settings={**tls_settings(certs, "prefer"), **ADMIN})
    with tls_connect(pgplex.port, "require") as conn:
        conn.execute("SELECT 1")
        rows = show(pgplex.port, "SHOW CLIENTS")  # psql over TLS too (sslmode=prefer)
    values = [row["tls"] for row in rows]
    assert len([v for v in values if v.startswith("TLSv1.") and "/" in v]) == 2, values


def test_sighup_takes_a_new_certificate_for_new_clients_only(make_pgplex, certs):
    pgplex = make_pgplex(settings=tls_settings(certs))
    old = tls_connect(pgplex.port, "verify-ca", certs)
    try:
        pgplex.settings["client_tls_cert_file"] = certs["server2.crt"]
        pgplex.settings["client_tls_key_file"] = certs["server2.key"]
        pgplex.reload()
        other = {"ca.crt": certs["other_ca.crt"]}
        with tls_connect(pgplex.port, "verify-ca", other) as conn:
            assert conn.execute("SELECT 'new cert'").fetchone() == ("new cert",)
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            tls_connect(pgplex.port, "verify-ca", certs)
        assert old.execute("SELECT 'old session'").fetchone() == ("old session",)
    finally:
        old.close()


def test_a_bad_certificate_is_refused_with_file_and_reason(make_pgplex, certs, tmp_path):
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    pgplex = make_pgplex(settings=tls_settings(certs, client_tls_cert_file=str(broken)),
                         start=False)
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r"config\.toml:\d+: client_tls_sslmode", result.stderr), result.stderr
    assert "broken.crt" in result.stderr, result.stderr
    wrong_key = make_pgplex(settings=tls_settings(certs, client_tls_key_file=certs["client.key"]),
                            start=False)
    wrong_key.write()
    result = run_check(wrong_key.config_path)
    assert result.returncode == 1 and "mismatch" in result.stderr, result.stderr


def test_scram_channel_binding_over_tls(make_pgplex, certs):
    """Over TLS pgplex offers SCRAM-SHA-256-PLUS (tls-server-end-point): libpq's
    channel_binding=require works, and binds to the certificate pgplex presented."""
    pgplex = make_pgplex(settings=tls_settings(certs, "prefer"))
    with tls_connect(pgplex.port, "require", channel_binding="require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("payam",)
    with tls_connect(pgplex.port, "require", channel_binding="prefer") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # Without TLS there is nothing to bind to: libpq refuses before sending a password.
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        tls_connect(pgplex.port, "disable", channel_binding="require")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_db", user="payam",
                        password="wrong", sslmode="require", channel_binding="require",
                        connect_timeout=10)


def test_a_sasl_plus_exchange_with_a_wrong_binding_is_refused(make_pgplex, certs):
    """A client-final-message whose c= does not carry pgplex's certificate hash (a man in
    the middle relaying the exchange over its own TLS) fails, whatever the proof."""
    pgplex = make_pgplex(settings=tls_settings(certs), auth_type="scram-sha-256")
    with direct_tls(pgplex.port, certs) as sock:
        sock.sendall(startup_message("payam", "payam_db"))
        kind, body = read_message(sock)
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 10
        assert b"SCRAM-SHA-256-PLUS\0" in body[4:]
        first = b"p=tls-server-end-point,,n=,r=clientnonce"
        sock.sendall(message(b"p", b"SCRAM-SHA-256-PLUS\0" + struct.pack("!I", len(first)) +
                             first))
        kind, body = read_message(sock)
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 11
        server_first = body[4:].decode()
        nonce = dict(part.split("=", 1) for part in server_first.split(","))["r"]

        wrong = base64.b64encode(b"p=tls-server-end-point,," + b"\0" * 32).decode()
        final = f"c={wrong},r={nonce},p={base64.b64encode(b'x' * 32).decode()}"
        sock.sendall(message(b"p", final.encode()))
        kind, body = read_message(sock)
        assert kind == b"E" and b"channel binding" in body, body


# ---------------------------------------------------------------------------------------
# TLS toward servers (server_tls_*): the shared test cluster's primary turns ssl on for
# these tests with the test PKI's server certificate (CN=localhost, SAN 127.0.0.1).


def ssl_on(cluster, certs, identity):
    """ssl = on on the cluster's primary with identity.crt/key; off again after it."""
    directory = Path(cluster.dir)
    for name in ("server.crt", "server.key"):
        shutil.copy(certs[name.replace("server", identity)], directory / f"tls_{name}")
        shutil.chown(directory / f"tls_{name}", "postgres", "postgres")
        (directory / f"tls_{name}").chmod(0o600)
    cluster.admin_psql(f"ALTER SYSTEM SET ssl_cert_file = '{directory / 'tls_server.crt'}'")
    cluster.admin_psql(f"ALTER SYSTEM SET ssl_key_file = '{directory / 'tls_server.key'}'")
    cluster.admin_psql("ALTER SYSTEM SET ssl = on")
    cluster.admin_psql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    yield cluster
    for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
        cluster.admin_psql(f"ALTER SYSTEM RESET {setting}")
    cluster.admin_psql("SELECT pg_reload_conf()")
    time.sleep(0.3)


@pytest.fixture
def server_ssl(cluster, certs):
    """ssl = on on the cluster's primary (server.crt: localhost and 127.0.0.1)."""
    yield from ssl_on(cluster, certs, "server")


@pytest.fixture
def server_ssl_dns(cluster, certs):
    """ssl = on on the cluster's primary with server_dns.crt: the name localhost only, so
    verify-full toward 127.0.0.1 fails."""
    yield from ssl_on(cluster, certs, "server_dns")


def server_ssl_in_use(port, **kwargs):
    with connect_through(port, **kwargs) as conn:
        return conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid()").fetchone()


def connect_through(port, **kwargs):
    return psycopg.connect(host="127.0.0.1", port=port, dbname="payam_db", user="payam",
                           password=PASSWORDS["payam"], autocommit=True, connect_timeout=10,
                           sslmode="disable", **kwargs)


def test_server_tls_require_encrypts_pgplexs_server_connections(make_pgplex, server_ssl):
    pgplex = make_pgplex(settings={"server_tls_sslmode": "require"})
    ssl_on, version = server_ssl_in_use(pgplex.port)
    assert ssl_on is True and version.startswith("TLSv1.")
    plain = make_pgplex(settings={"server_tls_sslmode": "disable"})
    assert server_ssl_in_use(plain.port)[0] is False


def test_server_tls_verify_full_checks_the_servers_certificate(make_pgplex, server_ssl, certs):
    good = make_pgplex(settings={"server_tls_sslmode": "verify-full",
                                 "server_tls_ca_file": certs["ca.crt"]})
    assert server_ssl_in_use(good.port)[0] is True  # 127.0.0.1 is in its subjectAltName
    wrong_ca = make_pgplex(settings={"server_tls_sslmode": "verify-ca",
                                     "server_tls_ca_file": certs["other_ca.crt"]})
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        server_ssl_in_use(wrong_ca.port)
    assert "certificate verify failed" in wrong_ca.log()


def test_server_tls_require_against_a_server_without_ssl_fails_clearly(make_pgplex, cluster):
    pgplex = make_pgplex(settings={"server_tls_sslmode": "require"})
    with pytest.raises(psycopg.OperationalError, match="does not accept TLS"):
        server_ssl_in_use(pgplex.port)
    prefer = make_pgplex(settings={"server_tls_sslmode": "prefer"})
    assert server_ssl_in_use(prefer.port)[0] is False  # prefer goes on in clear


def test_tls_on_both_sides_in_transaction_pooling_under_pgbench(make_pgplex, server_ssl, certs):
    """Both sides encrypted, two workers (idle servers move between them with their TLS
    sessions), 16 clients over 4 servers; and a large value through both."""
    from conftest import assert_pgbench_clean, pgbench_command, pgbench_env
    pgplex = make_pgplex(pool_size=4, workers=2,
                         settings={**tls_settings(certs), "pool_mode": "transaction",
                                   "server_tls_sslmode": "require"})
    result = subprocess.run(
        pgbench_command(pgplex.port, ["-n", "-S", "-t", "200", "-c", "16", "-j", "2"], "appdb",
                        "app"),
        capture_output=True, text=True, timeout=120,
        env={**pgbench_env("app"), "PGSSLMODE": "require"})
    assert_pgbench_clean(result)
    payload = os.urandom(4 << 20)
    with tls_connect(pgplex.port, "require") as conn:
        assert conn.execute("SELECT %s::bytea", (payload,)).fetchone()[0] == payload
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone() == (True,)
    conns = [tls_connect(pgplex.port, "require") for _ in range(16)]
    try:
        for round_ in range(20):
            for index, conn in enumerate(conns):
                assert conn.execute("SELECT %s::int + %s", (index, round_)).fetchone() == (
                    index + round_,)
    finally:
        for conn in conns:
            conn.close()


class TlsRelay:
    """A man in the middle between pgplex and PostgreSQL: it answers pgplex's SSLRequest
    with 'S' and its own certificate (server2.crt, of another CA), opens its own TLS session
    to PostgreSQL and relays the plaintext. Only channel binding can tell it is there."""

    def __init__(self, certs, server_port):
        import threading
        self.server_port = server_port
        self.inbound = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.inbound.load_cert_chain(certs["server2.crt"], certs["server2.key"])
        self.outbound = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.outbound.check_hostname = False
        self.outbound.verify_mode = ssl.CERT_NONE
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.relayed = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(near,), daemon=True).start()

    def relay(self, near):
        import threading
        try:
            assert near.recv(8) == struct.pack("!II", 8, SSL_REQUEST_CODE)
            near.sendall(b"S")
            near = self.inbound.wrap_socket(near, server_side=True)
            far = socket.create_connection(("127.0.0.1", self.server_port))
            far.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
            assert far.recv(1) == b"S"
            far = self.outbound.wrap_socket(far)
        except (OSError, AssertionError):
            near.close()
            return
        self.relayed += 1

        def pump(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(far, near), daemon=True).start()
        pump(near, far)

    def close(self):
        self.listener.close()


def relayed_pgplex(make_pgplex, relay, **settings):
    """pgplex whose payam_db alias reaches PostgreSQL through the relay."""
    return make_pgplex(databases={"payam_db": {"port": relay.port}},
                       settings={"server_tls_sslmode": "require", **settings})


def test_server_channel_binding_require_logs_in_with_scram_sha_256_plus(make_pgplex, server_ssl):
    pgplex = make_pgplex(settings={"server_tls_sslmode": "require",
                                   "server_channel_binding": "require"})
    ssl_on, _ = server_ssl_in_use(pgplex.port)
    assert ssl_on is True
    assert re.search(r"logged in \(backend pid \d+, worker \d+, TLSv1\.\d, "
                     r"SCRAM-SHA-256-PLUS\)", pgplex.log()), pgplex.log()[-2000:]
    disabled = make_pgplex(settings={"server_tls_sslmode": "require",
                                     "server_channel_binding": "disable"})
    assert server_ssl_in_use(disabled.port)[0] is True
    assert re.search(r"logged in \(.*TLSv1\.\d, SCRAM-SHA-256\)", disabled.log())


def test_server_channel_binding_with_keys_from_a_clients_scram_exchange(make_pgplex, server_ssl):
    """An auth file with only SCRAM secrets: pgplex logs in with the keys of the client's
    own exchange, bound to the server's certificate."""
    pgplex = make_pgplex(secrets="scram", settings={"server_tls_sslmode": "require",
                                                    "server_channel_binding": "require"})
    assert server_ssl_in_use(pgplex.port)[0] is True
    assert re.search(r"logged in \(.*SCRAM-SHA-256-PLUS\)", pgplex.log()), pgplex.log()[-2000:]


def test_server_channel_binding_catches_a_relay_with_another_certificate(
        make_pgplex, server_ssl, certs):
    """Through a relay that terminates TLS, PostgreSQL hashes its own certificate and
    pgplex the relay's: with binding the login fails on PostgreSQL's side, which shows the
    hash was sent and checked; without binding the same relay goes unnoticed."""
    relay = TlsRelay(certs, server_ssl.port)
    try:
        unbound = relayed_pgplex(make_pgplex, relay, server_channel_binding="disable")
        with connect_through(unbound.port) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("payam",)
        assert relay.relayed >= 1
        for policy in ("prefer", "require"):
            bound = relayed_pgplex(make_pgplex, relay, server_channel_binding=policy)
            with pytest.raises(psycopg.OperationalError, match="channel binding"):
                server_ssl_in_use(bound.port)
            assert "SCRAM channel binding check failed" in bound.log(), bound.log()[-2000:]
    finally:
        relay.close()


def test_server_channel_binding_require_refuses_a_server_without_tls(make_pgplex, cluster):
    pgplex = make_pgplex(settings={"server_tls_sslmode": "prefer",
                                   "server_channel_binding": "require"})
    with pytest.raises(psycopg.OperationalError,
                       match='server_channel_binding = "require", and the connection to the '
                             'server is not encrypted'):
        server_ssl_in_use(pgplex.port)
    assert 'login failed: server_channel_binding = "require"' in pgplex.log()
    prefer = make_pgplex(settings={"server_tls_sslmode": "prefer"})
    assert server_ssl_in_use(prefer.port)[0] is False  # prefer: SCRAM without binding


def test_server_channel_binding_require_without_tls_is_refused_at_load(make_pgplex):
    pgplex = make_pgplex(settings={"server_channel_binding": "require"}, start=False)
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r'config\.toml:\d+: server_channel_binding = "require" needs TLS, and '
                     r'server_tls_sslmode is "disable"', result.stderr), result.stderr


# With server_ssl_dns, a host the server's certificate does not name.
WRONG_NAME = "127.0.0.1"


def verify_full(certs, **extra):
    return {"server_tls_sslmode": "verify-full", "server_tls_ca_file": certs["ca.crt"], **extra}


def test_server_tls_per_alias_verify_full_checks_each_aliases_host(
        make_pgplex, server_ssl_dns, certs):
    """[pgplex] says disable; payam_db (host localhost) and payam_dw (host 127.0.0.1) each
    say verify-full: the first is encrypted and verified, the second refused for its
    name, and the "*" alias keeps [pgplex]'s plaintext."""
    pgplex = make_pgplex(databases={
        "payam_db": {"host": "localhost", **verify_full(certs)},
        "payam_dw": {"host": WRONG_NAME, **verify_full(certs)},
    })
    assert server_ssl_in_use(pgplex.port)[0] is True
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_dw", user="payam",
                        password=PASSWORDS["payam"], sslmode="disable", connect_timeout=10)
    assert re.search(r"login failed: TLS: .*certificate verify failed", pgplex.log())
    with psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_archive",
                         user="payam", password=PASSWORDS["payam"], sslmode="disable",
                         autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone() == (False,)


def monitor_ssl(cluster):
    """ssl of each monitor connection PostgreSQL sees, by the node it came in for."""
    rows = cluster.admin_psql(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = 'pgplex monitor'")
    return rows.split()


def tls_cluster(cluster, nodes, **settings):
    from conftest import FAST_CHECKS, next_free_port
    return {"nodes": nodes, "monitor_user": "payam", "monitor_dbname": "payam_db",
            **FAST_CHECKS, "services": {"primary": {"port": next_free_port()}}, **settings}


def test_server_tls_per_cluster_and_node_most_specific_wins(
        make_pgplex, server_ssl_dns, certs):
    """c1 verifies its node by name; c2 says verify-full too, but its node (127.0.0.1, a
    name the certificate does not carry) says require in node_options, which wins; c3 is c2
    without that node entry, so its node fails verify-full, in the monitor and for clients
    alike."""
    server_ssl = server_ssl_dns
    port = server_ssl.port
    wrong = f"{WRONG_NAME}:{port}"
    pgplex = make_pgplex(settings={"server_tls_sslmode": "disable"}, clusters={
        "c1": tls_cluster(server_ssl, [f"localhost:{port}"], **verify_full(certs)),
        "c2": tls_cluster(server_ssl, [wrong], **verify_full(certs),
                          node_options={wrong: {"server_tls_sslmode": "require"}}),
        "c3": tls_cluster(server_ssl, [wrong], **verify_full(certs)),
    })
    for name in ("c1", "c2"):
        assert pgplex.wait_log(rf"cluster {name}: primary is ", timeout=10), pgplex.log()
        ssl_on, _ = server_ssl_in_use(pgplex.service_port("primary", name))
        assert ssl_on is True
    assert pgplex.wait_log(r"cluster c3: node 127\.0\.0\.1:\d+ is down: .*does not match",
                           timeout=10), pgplex.log()[-3000:]
    assert monitor_ssl(server_ssl).count("t") >= 2
    with pytest.raises(psycopg.OperationalError):
        server_ssl_in_use(pgplex.service_port("primary", "c3"))


def test_server_tls_settings_an_alias_of_a_cluster_may_not_set(make_pgplex, certs):
    pgplex = make_pgplex(databases={"routed": {"cluster": "c1", "server_tls_sslmode": "require",
                                               "host": None}},
                         clusters={"c1": {"nodes": ["127.0.0.1:5432"]}}, start=False)
    del pgplex.databases["routed"]["host"]
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r"config\.toml:\d+: \[databases\.routed\] names a cluster: set its server "
                     r"TLS settings in \[clusters\.c1\]", result.stderr), result.stderr
    bad = make_pgplex(databases={"payam_db": {"server_tls_sslmode": "verify-ca"}}, start=False)
    bad.write()
    result = run_check(bad.config_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r'config\.toml:\d+: \[databases\.payam_db\]: server_tls_sslmode = '
                     r'"verify-ca": .*needs server_tls_ca_file', result.stderr), result.stderr


class Sniffer:
    """A plain TCP relay to 127.0.0.1:port that keeps the first bytes of each connection."""

    def __init__(self, port):
        import threading
        self.port_to = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.openings = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.port_to))
            threading.Thread(target=self.pump, args=(near, far, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(far, near, False), daemon=True).start()

    def pump(self, source, sink, record):
        try:
            first = True
            while data := source.recv(65536):
                if record and first:
                    self.openings.append(data[:8])
                first = False
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


def direct_to(port, certs, **extra):
    return {"host": "localhost", "port": port, **verify_full(certs),
            "server_tls_negotiation": "direct", **extra}


def test_server_tls_negotiation_direct_through_a_second_pgplex(make_pgplex, certs):
    """pgplex B's payam_db is pgplex A, which takes direct TLS from clients (PostgreSQL 15
    cannot): B opens with a ClientHello, not an SSLRequest, verifies A's certificate and
    name, and logs in with SCRAM bound to it."""
    upstream = make_pgplex(settings=tls_settings(certs))
    sniffer = Sniffer(upstream.port)
    try:
        chained = make_pgplex(databases={"payam_db": direct_to(sniffer.port, certs)})
        with connect_through(chained.port) as conn:
            assert conn.execute("SELECT current_user, 'chained'").fetchone() == (
                "payam", "chained")
        assert sniffer.openings and all(opening[0] == 0x16 for opening in sniffer.openings), \
            sniffer.openings  # a TLS handshake record; an SSLRequest starts 00 00 00 08
        assert re.search(r"server=localhost:\d+ pool=payam_db/payam backend_pid=\d+: logged in "
                         r"\(.*TLSv1\.3, SCRAM-SHA-256-PLUS\)", chained.log()), \
            chained.log()[-2000:]
        assert " tls=TLSv1.3" in upstream.log()
    finally:
        sniffer.close()


def test_server_tls_negotiation_direct_against_postgresql_15_fails(make_pgplex, server_ssl,
                                                                   certs):
    """PostgreSQL 15 reads the ClientHello as a startup packet and refuses it: direct TLS
    really is what pgplex sends (the same alias with "postgres" negotiation works)."""
    direct = make_pgplex(databases={"payam_db": direct_to(server_ssl.port, certs)})
    with pytest.raises(psycopg.OperationalError):
        server_ssl_in_use(direct.port)
    assert "login failed" in direct.log()
    negotiated = make_pgplex(databases={
        "payam_db": direct_to(server_ssl.port, certs, server_tls_negotiation="postgres")})
    assert server_ssl_in_use(negotiated.port)[0] is True


def test_server_tls_negotiation_direct_requires_alpn_postgresql(make_pgplex, certs):
    """A server that completes the handshake without choosing ALPN "postgresql" is not
    taken for PostgreSQL."""
    import threading
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["server.crt"], certs["server.key"])  # no ALPN
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        try:
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as sock:
                sock.recv(65536)  # the StartupMessage
                sock.sendall(message(b"R", struct.pack("!I", 0)))
                time.sleep(1)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        pgplex = make_pgplex(databases={
            "payam_db": direct_to(listener.getsockname()[1], certs)})
        with pytest.raises(psycopg.OperationalError,
                           match='did not choose ALPN "postgresql"'):
            server_ssl_in_use(pgplex.port)
    finally:
        listener.close()


def test_server_tls_negotiation_direct_needs_require_or_stronger(make_pgplex):
    pgplex = make_pgplex(databases={"payam_db": {"server_tls_sslmode": "prefer",
                                                 "server_tls_negotiation": "direct"}},
                         start=False)
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r'config\.toml:\d+: \[databases\.payam_db\]: server_tls_negotiation = '
                     r'"direct" needs server_tls_sslmode require', result.stderr), result.stderr


def test_psql_psycopg2_jdbc_and_node_postgres_over_tls(make_pgplex, certs):
    """Each client library's own TLS stack against pgplex: libpq (psql, psycopg2), Java's
    JSSE (JDBC) and Node's OpenSSL binding (node-postgres, verifying the certificate)."""
    from conftest import clean_env
    from test_drivers import HERE, JDBC_JAR, node_path
    pgplex = make_pgplex(settings=tls_settings(certs))
    args = ["127.0.0.1", str(pgplex.port), "payam", PASSWORDS["payam"], "payam_db"]
    psql = subprocess.run(
        ["psql", "-X", "-At", "-c", "SELECT 'psql over tls'",
         f"host=localhost hostaddr=127.0.0.1 port={pgplex.port} dbname=payam_db user=payam "
         f"sslmode=verify-full sslrootcert={certs['ca.crt']}"],
        capture_output=True, text=True, timeout=30,
        env=clean_env(PGPASSWORD=PASSWORDS["payam"]))
    assert psql.stdout.strip() == "psql over tls", psql.stderr
    import psycopg2
    conn = psycopg2.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_db",
                            user="payam", password=PASSWORDS["payam"], sslmode="require")
    try:
        cur = conn.cursor()
        cur.execute("SELECT 'psycopg2 over tls'")
        assert cur.fetchone() == ("psycopg2 over tls",)
    finally:
        conn.close()
    ran = ["psql", "psycopg2"]
    if JDBC_JAR.exists() and shutil.which("javac"):
        jdbc = subprocess.run(["java", "-cp", str(JDBC_JAR), str(HERE / "TlsCheck.java"), *args,
                               "require"], capture_output=True, text=True, timeout=120,
                              env=clean_env())
        assert jdbc.stdout.strip() == "jdbc over tls", jdbc.stderr
        ran.append("jdbc")
    path = node_path()
    if path:
        node = subprocess.run(["node", str(HERE / "tls_check.js"), *args, certs["ca.crt"]],
                              capture_output=True, text=True, timeout=60,
                              env=clean_env(NODE_PATH=path))
        assert node.stdout.strip() == "node over tls", node.stderr
        ran.append("node-postgres")
    assert len(re.findall(r" tls=TLSv1\.", pgplex.log())) >= len(ran), pgplex.log()[-2000:]
    if len(ran) < 4:
        pytest.skip(f"ran {ran}; the others are not installed here (scripts/deps.sh)")


# ---------------------------------------------------------------------------------------
# auth_type = "hba" (auth_hba_file in pg_hba.conf's syntax)


def hba_pgplex(make_pgplex, tmp_path, rules, **settings):
    hba = tmp_path / "pgplex_hba.conf"
    hba.write_text(rules)
    return make_pgplex(auth_type="hba", settings={"auth_hba_file": str(hba), **settings})


def login_error(port, user="payam", dbname="payam_db", password_override=None, **kwargs):
    password = password_override if password_override is not None else PASSWORDS.get(user, "x")
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user=user,
                        password=password, connect_timeout=10, **kwargs)
    return str(raised.value)


def test_hba_rules_decide_each_login_first_match_wins(make_pgplex, tmp_path, certs):
    pgplex = hba_pgplex(make_pgplex, tmp_path, """
# TYPE     DATABASE  USER     ADDRESS        METHOD
host       all       analyst  127.0.0.1/32   reject
hostssl    payam_dw  payam    127.0.0.1/32   cert
host       payam_dw  all      127.0.0.0/8    password
host       payam_db  payam    127.0.0.1 255.255.255.255  scram-sha-256
host       all       all      10.0.0.0/8     trust
""", **tls_settings(certs, "prefer", client_tls_ca_file=certs["ca.crt"]))
    assert "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"analyst\"" in \
        login_error(pgplex.port, user="analyst", dbname="payam_db", sslmode="disable")
    with connect_through(pgplex.port) as conn:  # scram-sha-256
        assert conn.execute("SELECT current_user").fetchone() == ("payam",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_db", user="payam",
                        password="wrong", sslmode="disable", connect_timeout=10)
    # payam_dw over TLS with a certificate for CN=payam: cert.
    with tls_connect(pgplex.port, "require", sslcert=certs["client.crt"],
                     sslkey=certs["client.key"], dbname="payam_dw") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # ... with a certificate for another name: refused, not passed on to the next line.
    assert "certificate authentication failed for user \"payam\"" in login_error(
        pgplex.port, dbname="payam_dw", sslmode="require", sslcert=certs["stranger.crt"],
        sslkey=certs["stranger.key"])
    # payam_dw in clear: the hostssl line does not apply; cleartext password.
    with psycopg.connect(host="127.0.0.1", port=pgplex.port, dbname="payam_dw", user="payam",
                         password=PASSWORDS["payam"], sslmode="disable",
                         connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "no pg_hba.conf entry for host \"127.0.0.1\", user \"payam\", database \"other\"," \
           " no encryption" in login_error(pgplex.port, dbname="other", sslmode="disable")


def test_show_clients_gives_each_clients_address_and_port(make_pgplex):
    pgplex = make_pgplex(settings=ADMIN)
    with connect_through(pgplex.port) as conn:
        conn.execute("SELECT 1")
        rows = show(pgplex.port, "SHOW CLIENTS")
    mine = [row for row in rows if row["database"] == "payam_db"]
    assert len(mine) == 1, rows
    assert mine[0]["addr"] == "127.0.0.1" and int(mine[0]["port"]) > 0, mine
    assert mine[0]["local_addr"] == "127.0.0.1" and int(mine[0]["local_port"]) == pgplex.port


def test_a_bad_hba_line_is_refused_with_file_line_and_reason(make_pgplex, tmp_path):
    hba = tmp_path / "pgplex_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\nhost all all 10.0.0.0/33 trust\n")
    pgplex = make_pgplex(auth_type="hba", settings={"auth_hba_file": str(hba)}, start=False)
    pgplex.write()
    result = run_check(pgplex.config_path)
    assert result.returncode == 1, result.stderr
    assert "pgplex_hba.conf:2: invalid IP address \"10.0.0.0/33\"" in result.stderr, result.stderr


@pytest.mark.parametrize("secrets", ["plain", "md5", "scram"])
def test_hba_password_checks_a_cleartext_password_against_any_kind_of_secret(
        make_pgplex, tmp_path, secrets):
    hba = tmp_path / "pgplex_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 password\n")
    pgplex = make_pgplex(auth_type="hba", secrets=secrets,
                         settings={"auth_hba_file": str(hba), "auth_failure_delay": "0"})
    with connect_through(pgplex.port) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("payam",)
    assert "password authentication failed" in login_error(
        pgplex.port, sslmode="disable", password_override="nope")


def test_cancel_requests_to_servers_go_under_tls_too(make_pgplex, server_ssl):
    """With server_tls_sslmode = "require", the CancelRequest pgplex sends a server goes
    after an SSLRequest, in TLS, like its other connections: the cancel key never crosses
    the network in clear. The cancel still works."""
    import threading
    sniffer = Sniffer(server_ssl.port)
    try:
        pgplex = make_pgplex(settings={"server_tls_sslmode": "require"},
                             databases={"payam_db": {"port": sniffer.port}})
        with connect_through(pgplex.port) as conn:
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
            assert time.monotonic() - started < 10
            timer.join()
        ssl_request = struct.pack("!II", 8, 80877103)
        assert len(sniffer.openings) >= 2, sniffer.openings  # the session's, the cancel's
        assert all(opening == ssl_request for opening in sniffer.openings), sniffer.openings
    finally:
        sniffer.close()
