"""Logging in through pgplex and reaching the right database as the right user."""

import pytest

import struct

from conftest import (PASSWORDS, SSL_REQUEST_CODE, RawClient, ServerError, login_error, psql,
                      run_psql)


@pytest.mark.smoke
def test_select_1_through_pgplex(pgplex):
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_every_client_gets_a_nonzero_process_id(make_pgplex):
    """libpq reads a process id of 0 as "unknown" (and pgplex's own server log leaves it out):
    the first client of worker 0, whose slot is 0, must get a real one too."""
    pgplex = make_pgplex(workers=1)
    for _ in range(3):
        with RawClient(pgplex.port) as client:
            client.login("payam", "payam_db", PASSWORDS["payam"])
            assert client.backend_key[0] != 0, client.backend_key


def test_alias_connects_as_its_configured_user_and_database(pgplex):
    # analyst exists only in pgplex's auth file; payam_dw logs in to the server as
    # dataplatform_ro, to payam_db.
    row = psql(pgplex.port, "SELECT current_user, current_database()",
               dbname="payam_dw", user="analyst")
    assert row == "dataplatform_ro|payam_db"
    row = psql(pgplex.port, "SELECT current_user, current_database()",
               dbname="payam_db", user="analyst")
    assert row == "payam|payam_db"


def test_ssl_request_is_declined_then_plain_login_works(pgplex):
    with RawClient(pgplex.port) as client:
        client.send(struct.pack("!II", 8, SSL_REQUEST_CODE))
        assert client.recv_exactly(1) == b"N"
        client.login("payam", "payam_db")
        assert client.query("SELECT 41 + 1") == [["42"]]


def test_psql_with_sslmode_prefer_logs_in_without_tls(pgplex):
    row = psql(pgplex.port, "SELECT 1", sslmode="prefer")
    assert row == "1"


def test_psql_with_sslmode_require_is_refused(pgplex):
    result = run_psql(pgplex.port, "SELECT 1", sslmode="require")
    assert result.returncode != 0
    assert "SSL" in result.stderr, result.stderr


@pytest.mark.parametrize("auth_type, secrets", [
    ("md5", "plain"),
    ("md5", "md5"),
    ("scram-sha-256", "plain"),
    ("scram-sha-256", "scram"),
])
def test_client_logs_in_with_auth_type_and_stored_secret(make_pgplex, auth_type, secrets):
    pgplex = make_pgplex(auth_type=auth_type, secrets=secrets)
    assert psql(pgplex.port, "SELECT current_user") == "payam"
    assert psql(pgplex.port, "SELECT current_user", dbname="payam_dw",
                user="analyst") == "dataplatform_ro"


@pytest.mark.parametrize("auth_type, secrets", [
    ("md5", "plain"),
    ("md5", "md5"),
    ("scram-sha-256", "plain"),
    ("scram-sha-256", "scram"),
])
def test_raw_client_sees_the_auth_method_of_auth_type(make_pgplex, auth_type, secrets):
    pgplex = make_pgplex(auth_type=auth_type, secrets=secrets)
    expected_request = {"md5": 5, "scram-sha-256": 10}[auth_type]
    with RawClient(pgplex.port) as client:
        client.startup("payam", "payam_db")
        kind, body = client.read_message()
        assert kind == b"R", (kind, body)
        assert struct.unpack("!I", body[:4])[0] == expected_request
    with RawClient(pgplex.port) as client:
        client.login("payam", "payam_db")
        assert client.query("SELECT current_user") == [["payam"]]


def test_trust_auth_logs_in_without_a_password(make_pgplex):
    pgplex = make_pgplex(auth_type="trust")
    assert psql(pgplex.port, "SELECT current_user", password="not-the-password") == "payam"
    with RawClient(pgplex.port) as client:
        client.startup("payam", "payam_db")
        kind, body = client.read_message()
        assert (kind, struct.unpack("!I", body[:4])[0]) == (b"R", 0)  # AuthenticationOk


@pytest.mark.smoke
@pytest.mark.parametrize("auth_type", ["md5", "scram-sha-256"])
def test_wrong_password_is_refused_with_28P01(make_pgplex, auth_type):
    pgplex = make_pgplex(auth_type=auth_type)
    error = login_error(pgplex.port, "payam", "payam_db", password="wrong")
    assert error is not None and error.sqlstate == "28P01", error
    result = run_psql(pgplex.port, "SELECT 1", password="wrong")
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr, result.stderr


def test_user_missing_from_auth_file_is_refused_with_28P01(pgplex):
    error = login_error(pgplex.port, "nobody", "payam_db", password="whatever")
    assert error is not None and error.sqlstate == "28P01", error


def test_unknown_database_is_refused_with_3D000(make_pgplex):
    pgplex = make_pgplex(fallback=False)
    error = login_error(pgplex.port, "payam", "no_such_db")
    assert error is not None and error.sqlstate == "3D000", error
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_star_alias_reaches_same_named_database_with_clients_own_credentials(pgplex):
    row = psql(pgplex.port, "SELECT current_user, current_database()",
               dbname="appdb", user="app")
    assert row == "app|appdb"
    assert psql(pgplex.port, "SELECT count(*) FROM pgbench_branches",
                dbname="appdb", user="app") == "1"


def test_server_refusing_the_forwarded_password_gives_the_client_an_error(make_pgplex):
    # pgplex accepts the client against its auth file, then the server refuses the
    # password pgplex forwards: the client must see an ErrorResponse, not a hang.
    users = dict(PASSWORDS, app="not-apps-server-password")
    pgplex = make_pgplex(users=users)
    with RawClient(pgplex.port) as client:
        with pytest.raises(ServerError):
            client.login("app", "appdb", password="not-apps-server-password")
            client.query("SELECT 1")
    assert psql(pgplex.port, "SELECT 1") == "1"


def test_log_lines_name_the_client_by_address_user_and_database_as_key_value(pgplex):
    assert psql(pgplex.port, "SELECT 1") == "1"
    context = r"<6>\S+ \S+ UTC LOG client=\d+\.\d+ addr=127\.0\.0\.1:(\d+) user=payam db=payam_db"
    login = pgplex.wait_log(context + r": login: alias=payam_db server=127\.0\.0\.1:\d+\n")
    assert login, pgplex.log()
    closing = pgplex.wait_log(context + r": closing: client sent Terminate \(age=\d+s\)\n")
    assert closing, pgplex.log()
    assert login.group(1) == closing.group(1)  # the same client, by its port
    server = pgplex.wait_log(r"LOG server=127\.0\.0\.1:\d+ pool=payam_db/payam backend_pid=\d+: "
                             r"logged in \(backend pid \d+")
    assert server, pgplex.log()
