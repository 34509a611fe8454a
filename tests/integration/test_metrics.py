"""The admin HTTP port ([pgplex] metrics_listen): /metrics in Prometheus' text format
0.0.4, read here by a strict parser of that format (tests/integration has no
prometheus_client), values that move with real clients, /health going 503 when shutdown
begins, HEAD and OPTIONS without a body, and garbage answered 400 while pgplex keeps
serving."""

import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (HOST, assert_pgbench_clean, connect, next_free_port, pgbench_command,
                      pgbench_env)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def family_of(name, types):
    """The family a sample belongs to: its own name, or for a histogram's _bucket, _sum and
    _count series the histogram's."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return name


def parse_exposition(text):
    """{(name, ((label, value), ...)): float}, refusing anything the format does not allow:
    a sample before its family's TYPE, a family typed twice, a repeated series, a bad
    label or value, a missing final newline, a histogram bucket without `le`."""
    assert text.endswith("\n"), "the body must end with a newline"
    types, samples = {}, {}
    for line in text[:-1].split("\n"):
        if line.startswith("# "):
            kind, name, rest = (line[2:].split(" ", 2) + [""])[:3]
            assert kind in ("HELP", "TYPE"), line
            if kind == "TYPE":
                assert name not in types, f"{name} typed twice"
                assert rest in TYPES, line
                types[name] = rest
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, labels_text, value = match[1], match[3] or "", match[4]
        family = family_of(name, types)
        assert family in types, f"{name} has no TYPE before it"
        labels, at = [], 0
        while at < len(labels_text):
            label = LABEL.match(labels_text, at)
            assert label, f"bad labels: {line!r}"
            labels.append((label[1], label[2]))
            at = label.end()
        if types[family] == "histogram":
            assert name.endswith(HISTOGRAM_SUFFIXES) and name != family, line
            assert ("le" in dict(labels)) == name.endswith("_bucket"), line
        key = (name, tuple(sorted(labels)))
        assert key not in samples, f"series twice: {line!r}"
        samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, labels[k]) in ls for k in labels))


def histograms(samples, family, **labels):
    """{labels without le: {"buckets": [(le, cumulative count)], "sum": s, "count": n}} of
    one histogram family, for the series whose labels include `labels`; asserts what the
    format promises: buckets ascend by le and never decrease, the last is +Inf, and _count
    equals it."""
    series = {}
    for (name, ls), v in samples.items():
        if not name.startswith(family + "_") or \
                not all((k, labels[k]) in ls for k in labels):
            continue
        rest = tuple(kv for kv in ls if kv[0] != "le")
        entry = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == family + "_bucket":
            entry["buckets"].append((float(dict(ls)["le"]), v))
        elif name == family + "_sum":
            entry["sum"] = v
        elif name == family + "_count":
            entry["count"] = v
    for rest, entry in series.items():
        entry["buckets"].sort()
        les = [le for le, _ in entry["buckets"]]
        counts = [n for _, n in entry["buckets"]]
        assert les and les[-1] == float("inf"), (family, rest, les)
        assert counts == sorted(counts), f"{family}{rest} is not cumulative: {counts}"
        assert entry["count"] == counts[-1], (family, rest, entry["count"], counts[-1])
        assert entry["sum"] is not None and entry["sum"] >= 0, (family, rest)
    return series


def above(entry, bound):
    """Observations of one histogram series greater than `bound` seconds."""
    return entry["count"] - max((n for le, n in entry["buckets"] if le <= bound), default=0)


def http(port, request, timeout=5):
    """Sends raw bytes, returns everything read until the server closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(request)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def get(port, path, method="GET", timeout=5):
    """(status, headers dict, body) of one request with Connection: close."""
    raw = http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
               .encode(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, body


@pytest.fixture
def metrics_pgplex(make_pgplex):
    def start(**options):
        port = next_free_port()
        settings = {"metrics_listen": f"{HOST}:{port}", **options.pop("settings", {})}
        pgplex = make_pgplex(settings=settings, **options)
        pgplex.metrics_port = port
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if get(port, "/health")[0] == 200:
                    return pgplex
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"no /health on {port}:\n{pgplex.log()}")
    return start


def scrape(port):
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(body.decode())


def test_metrics_parse_and_follow_clients_and_pools(metrics_pgplex):
    pgplex = metrics_pgplex()
    before = scrape(pgplex.metrics_port)
    assert value(before, "pgplex_clients", state="active") == 0
    assert value(before, "pgplex_workers") == 2
    assert value(before, "pgbouncer_up") == 1
    clients = [connect(pgplex.port) for _ in range(3)]
    try:
        for conn in clients:
            conn.execute("SELECT 1")
        # Workers publish their counts every tick (200 ms).
        deadline = time.monotonic() + 5
        while value(during := scrape(pgplex.metrics_port), "pgplex_clients",
                    state="active") != 3:
            assert time.monotonic() < deadline, during
            time.sleep(0.1)
        assert value(during, "pgplex_client_connections") == 3
        assert value(during, "pgplex_pool_servers", database="payam_db", user="payam") == 3
        assert value(during, "pgplex_pool_size", database="payam_db", user="payam") == 20
        assert ("pgbouncer_pools_client_waiting_connections",
                (("database", "payam_db"), ("user", "payam"))) in during
    finally:
        for conn in clients:
            conn.close()
    deadline = time.monotonic() + 5
    while value(scrape(pgplex.metrics_port), "pgplex_clients", state="active") != 0:
        assert time.monotonic() < deadline, "clients still counted after they left"
        time.sleep(0.1)


def test_pool_metrics_move_under_pgbench_while_scraped(metrics_pgplex):
    pgplex = metrics_pgplex(settings={"pool_mode": "transaction"}, default_pool_size=3)
    bench = subprocess.Popen(pgbench_command(pgplex.port, ["-n", "-S", "-c", "8", "-T", "4"]),
                             env=pgbench_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    seen_servers = seen_clients = 0
    while bench.poll() is None:
        samples = scrape(pgplex.metrics_port)
        seen_servers = max(seen_servers, value(samples, "pgplex_pool_servers", database="appdb",
                                               user="app"))
        seen_clients = max(seen_clients, value(samples, "pgplex_client_connections"))
        time.sleep(0.2)
    out, err = bench.communicate()
    assert_pgbench_clean(subprocess.CompletedProcess(bench.args, bench.returncode, out, err))
    assert seen_clients == 8
    assert 1 <= seen_servers <= 3  # transaction pooling: 8 clients over at most pool_size
    # SHOW STATS' counters: every transaction pgbench reports went through the pool.
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out)[1])
    samples = scrape(pgplex.metrics_port)
    transactions = value(samples, "pgplex_pool_transactions_total", database="appdb", user="app")
    assert transactions >= processed > 0
    assert value(samples, "pgplex_pool_queries_total", database="appdb") >= processed
    assert value(samples, "pgplex_pool_received_bytes_total", database="appdb") > 0
    assert value(samples, "pgplex_pool_sent_bytes_total", database="appdb") > 0
    assert value(samples, "pgplex_pool_query_seconds_total", database="appdb") > 0
    # pgbouncer_exporter's names, per database, say the same.
    assert value(samples, "pgbouncer_stats_sql_transactions_pooled_total",
                 database="appdb") == transactions
    assert value(samples, "pgbouncer_stats_queries_pooled_total", database="appdb") == \
        value(samples, "pgplex_pool_queries_total", database="appdb")


def pool_histogram(samples, family):
    """The one series of `family` for payam_db / payam, checked by histograms()."""
    series = histograms(samples, family, database="payam_db", user="payam")
    assert len(series) <= 1, series
    return next(iter(series.values()), {"buckets": [], "sum": 0, "count": 0})


def test_query_and_wait_time_histograms_follow_transactions(metrics_pgplex):
    # One server for two clients: while one sleeps in a transaction, the other waits.
    pgplex = metrics_pgplex(settings={"pool_mode": "transaction"}, pool_size=1)
    port = pgplex.metrics_port
    families = ("pgplex_pool_query_duration_seconds", "pgplex_pool_transaction_duration_seconds",
                "pgplex_pool_wait_duration_seconds")
    samples = scrape(port)
    before = {family: pool_histogram(samples, family) for family in families}
    rounds = 5
    clients = [connect(pgplex.port, autocommit=True) for _ in range(2)]
    try:
        def run(conn):
            for _ in range(rounds):
                with conn.transaction():
                    conn.execute("SELECT pg_sleep(0.05)")
        threads = [threading.Thread(target=run, args=(conn,)) for conn in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for conn in clients:
            conn.close()
    transactions = 2 * rounds
    # The histograms say what SHOW STATS' totals say, one by one (polled: the last
    # ReadyForQuery may reach the client just before its worker counts it).
    deadline = time.monotonic() + 5
    while True:
        samples = scrape(port)
        after = {family: pool_histogram(samples, family) for family in families}
        totals = [value(samples, name, database="payam_db", user="payam") for name in (
            "pgplex_pool_queries_total", "pgplex_pool_transactions_total",
            "pgplex_pool_server_assignments_total")]
        if [after[family]["count"] for family in families] == totals:
            break
        assert time.monotonic() < deadline, (totals, after)
        time.sleep(0.1)
    grown = {family: after[family]["count"] - before[family]["count"] for family in families}
    # BEGIN, the SELECT and COMMIT: three queries, one transaction and one lending each.
    assert grown["pgplex_pool_query_duration_seconds"] >= 3 * transactions, grown
    assert grown["pgplex_pool_transaction_duration_seconds"] >= transactions, grown
    assert grown["pgplex_pool_wait_duration_seconds"] >= transactions, grown
    # Each pg_sleep(0.05) is one query and one transaction above 25 ms, even on a clock that
    # ticks every 10 ms; and with one server, someone waited.
    for family in families[:2]:
        assert above(after[family], 0.025) - above(before[family], 0.025) >= transactions, \
            after[family]
        assert after[family]["sum"] - before[family]["sum"] >= 0.025 * transactions, \
            after[family]
    wait = after["pgplex_pool_wait_duration_seconds"]
    assert wait["sum"] > before["pgplex_pool_wait_duration_seconds"]["sum"], wait
    assert wait["sum"] == pytest.approx(value(samples, "pgplex_pool_wait_seconds_total",
                                              database="payam_db", user="payam"))
    assert after["pgplex_pool_query_duration_seconds"]["sum"] == pytest.approx(
        value(samples, "pgplex_pool_query_seconds_total", database="payam_db", user="payam"))


def test_failed_logins_are_counted(metrics_pgplex):
    pgplex = metrics_pgplex()
    with pytest.raises(Exception):
        connect(pgplex.port, password="wrong")
    deadline = time.monotonic() + 5
    while value(scrape(pgplex.metrics_port), "pgplex_auth_failures_total") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_health_is_200_then_503_once_shutdown_begins(metrics_pgplex):
    pgplex = metrics_pgplex(shutdown_timeout="20s")
    assert get(pgplex.metrics_port, "/health")[:3:2] == (200, b"serving\n")
    conn = connect(pgplex.port)
    conn.execute("BEGIN")
    conn.execute("SELECT 1")
    pgplex.signal(signal.SIGTERM)  # the open transaction holds the shutdown
    deadline = time.monotonic() + 5
    while get(pgplex.metrics_port, "/health")[0] != 503:
        assert time.monotonic() < deadline, "/health still 200 while shutting down"
        time.sleep(0.05)
    assert get(pgplex.metrics_port, "/health")[2] == b"shutting down\n"
    assert value(scrape(pgplex.metrics_port), "pgplex_shutting_down") == 1
    conn.execute("COMMIT")
    conn.close()
    assert pgplex.wait_exit(15) == 0


def test_head_and_options_have_no_body(metrics_pgplex):
    pgplex = metrics_pgplex()
    status, headers, body = get(pgplex.metrics_port, "/health", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(b"serving\n"))
    status, headers, body = get(pgplex.metrics_port, "/metrics", "OPTIONS")
    assert (status, body) == (204, b"")
    assert headers["Allow"] == "GET, HEAD, OPTIONS"
    assert get(pgplex.metrics_port, "/metrics", "DELETE")[0] == 405
    assert get(pgplex.metrics_port, "/nothing")[0] == 404


def test_keep_alive_serves_several_requests_on_one_connection(metrics_pgplex):
    pgplex = metrics_pgplex()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = http(pgplex.metrics_port,
               request + request + b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 3


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
    b"GET /metrics HTTP/1.1\r\nbad header line\r\n\r\n",
    b"\x00" * 100 + b"\r\n\r\n",
])
def test_garbage_gets_400_and_pgplex_keeps_serving(metrics_pgplex, garbage):
    pgplex = metrics_pgplex()
    raw = http(pgplex.metrics_port, garbage)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw[:100]
    assert get(pgplex.metrics_port, "/health")[0] == 200
    with connect(pgplex.port) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_an_oversized_head_gets_431_and_a_silent_client_is_dropped(metrics_pgplex):
    pgplex = metrics_pgplex()
    raw = http(pgplex.metrics_port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")
    # Sixteen silent connections (every slot) do not stop a checker for long: each is
    # dropped after the request timeout, and the checker's connection waits in the backlog.
    silent = [socket.create_connection((HOST, pgplex.metrics_port)) for _ in range(16)]
    try:
        started = time.monotonic()
        assert get(pgplex.metrics_port, "/health", timeout=10)[0] == 200
        assert time.monotonic() - started < 8
    finally:
        for conn in silent:
            conn.close()
    assert pgplex.running()


def test_the_grafana_dashboard_uses_only_exported_metrics(metrics_pgplex):
    import json
    from conftest import REPO
    dashboard = json.loads((REPO / "examples" / "grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= set(re.findall(r"\bpgplex_[a-z_]+", target["expr"]))
    assert used
    # Every family is declared even with no sample (no clusters here): read the TYPE lines.
    body = get(metrics_pgplex().metrics_port, "/metrics")[2].decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    used = {family_of(name, types) for name in used}
    assert used <= set(types), used - set(types)


def wait_status(port, path, status, seconds=10):
    """Waits until path answers status (the port opens once the workers are up)."""
    deadline = time.monotonic() + seconds
    got = None
    while True:
        try:
            got = get(port, path)[0]
        except OSError as error:
            got = error
        if got == status:
            return
        assert time.monotonic() < deadline, f"{path} is {got}, not {status}"
        time.sleep(0.1)


def cluster_metrics_pgplex(make_cluster_pgplex, nodes):
    port = next_free_port()
    pgplex = make_cluster_pgplex(nodes, settings={"metrics_listen": f"{HOST}:{port}"})
    pgplex.metrics_port = port
    return pgplex


def test_primary_and_replica_paths_and_node_metrics_follow_the_monitors(
        replicated, make_cluster_pgplex):
    pgplex = cluster_metrics_pgplex(make_cluster_pgplex, replicated)
    for path in ("/primary", "/primary/c1", "/replica/c1", "/service/c1/primary",
                 "/service/c1/replica"):
        wait_status(pgplex.metrics_port, path, 200)
    assert get(pgplex.metrics_port, "/service/c1/nothing")[0] == 404
    assert get(pgplex.metrics_port, "/primary/elsewhere")[0] == 404
    samples = scrape(pgplex.metrics_port)
    primary = replicated.addr("primary")
    assert value(samples, "pgplex_cluster_primary_known", cluster="c1") == 1
    assert value(samples, "pgplex_node_is_primary", cluster="c1", node=primary) == 1
    assert value(samples, "pgplex_node_up", cluster="c1", role="primary") == 1
    assert value(samples, "pgplex_node_up", cluster="c1", role="replica") == 2
    assert value(samples, "pgplex_node_lag_bytes", cluster="c1", node=primary) == 0
    assert value(samples, "pgplex_service_nodes", cluster="c1", service="primary") == 1
    assert value(samples, "pgplex_service_nodes", cluster="c1", service="replica") == 1


def test_primary_path_is_503_while_the_cluster_has_no_primary(failover_cluster,
                                                               make_cluster_pgplex):
    pgplex = cluster_metrics_pgplex(make_cluster_pgplex, failover_cluster)
    wait_status(pgplex.metrics_port, "/primary/c1", 200)
    failover_cluster.stop("primary")
    wait_status(pgplex.metrics_port, "/primary/c1", 503)
    wait_status(pgplex.metrics_port, "/service/c1/primary", 503)
    assert get(pgplex.metrics_port, "/health")[0] == 200  # the appliance itself serves on
    assert get(pgplex.metrics_port, "/replica/c1")[0] == 200
    samples = scrape(pgplex.metrics_port)
    assert value(samples, "pgplex_cluster_primary_known", cluster="c1") == 0


def test_a_metrics_port_in_use_is_logged_and_pgplex_serves_without_it(make_pgplex):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        pgplex = make_pgplex(settings={"metrics_listen": f"{HOST}:{port}"})
        assert pgplex.wait_log(r"metrics_listen: cannot listen on 127\.0\.0\.1:\d+"), pgplex.log()
        with connect(pgplex.port) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
