"""The payam_db / payam_dw aliases: one database, a read-write and a read-only door.

payam_db logs in as payam; payam_dw logs in to the same database as dataplatform_ro with
application_name=readonly_client and default_transaction_read_only=on (docs' PgBouncer
example that pgplex's [databases] tables follow).
"""

import uuid

import pytest
from psycopg import errors

from conftest import connect, psql


def unique_table():
    return "t_" + uuid.uuid4().hex[:12]


@pytest.mark.smoke
def test_create_table_through_payam_dw_fails_read_only_25006(pgplex):
    with connect(pgplex.port, dbname="payam_dw", user="analyst", autocommit=True) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction) as raised:
            conn.execute(f"CREATE TABLE {unique_table()} (x int)")
        assert raised.value.sqlstate == "25006"
        # The session is still usable after the refusal.
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (100,)


def test_insert_through_payam_dw_fails_read_only_25006(pgplex):
    with connect(pgplex.port, dbname="payam_dw", user="analyst", autocommit=True) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO orders VALUES (100001, 'forbidden')")
    assert psql(pgplex.port, "SELECT count(*) FROM orders WHERE id = 100001") == "0"


def test_create_table_and_insert_through_payam_db_succeed(pgplex):
    table = unique_table()
    with connect(pgplex.port, dbname="payam_db", user="payam", autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (x int)")
        conn.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
        assert conn.execute(f"SELECT sum(x) FROM {table}").fetchone() == (6,)
        conn.execute(f"DROP TABLE {table}")


def test_payam_dw_reads_what_payam_db_wrote(pgplex):
    with connect(pgplex.port, dbname="payam_db", user="payam", autocommit=True) as conn:
        conn.execute("INSERT INTO orders VALUES (5001, 'visible to dw')")
    try:
        item = psql(pgplex.port, "SELECT item FROM orders WHERE id = 5001",
                    dbname="payam_dw", user="analyst")
        assert item == "visible to dw"
    finally:
        psql(pgplex.port, "DELETE FROM orders WHERE id = 5001")


def test_payam_dw_sets_application_name_when_client_sets_none(pgplex):
    # psycopg (libpq) sends no application_name unless asked to.
    with connect(pgplex.port, dbname="payam_dw", user="analyst") as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("readonly_client",)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_payam_db_is_not_read_only(pgplex):
    with connect(pgplex.port, dbname="payam_db", user="payam") as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)


@pytest.mark.parametrize("alias", ["payam_db", "payam_dw"])
def test_datestyle_is_iso(pgplex, alias):
    with connect(pgplex.port, dbname=alias, user="analyst") as conn:
        datestyle = conn.execute("SHOW DateStyle").fetchone()[0]
        assert datestyle.startswith("ISO"), datestyle
        assert conn.info.parameter_status("DateStyle").startswith("ISO")
        text = conn.execute("SELECT DATE '2024-03-01'::text").fetchone()[0]
        assert text == "2024-03-01"


@pytest.mark.parametrize("alias", ["payam_db", "payam_dw"])
def test_client_encoding_is_utf8(pgplex, alias):
    with connect(pgplex.port, dbname=alias, user="analyst") as conn:
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
        assert conn.execute("SELECT 'grüße ✓'").fetchone() == ("grüße ✓",)



def test_client_encoding_unicode_as_in_pgbouncer_config_works_for_psql(make_pgplex):
    pgplex = make_pgplex(databases={"payam_db": {"client_encoding": "UNICODE"}})
    assert psql(pgplex.port, "SELECT 'grüße ✓'") == "grüße ✓"


def test_client_encoding_unicode_as_in_pgbouncer_config_works_for_psycopg(make_pgplex):
    # PostgreSQL echoes a requested "UNICODE" verbatim in ParameterStatus, which psycopg 3
    # cannot decode; a config copied from pgbouncer.ini must still serve psycopg clients.
    pgplex = make_pgplex(databases={"payam_db": {"client_encoding": "UNICODE"}})
    with connect(pgplex.port) as conn:
        assert conn.info.encoding == "utf-8"
        assert conn.execute("SELECT 'grüße ✓'").fetchone() == ("grüße ✓",)
