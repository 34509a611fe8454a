"""psycopg2: the sequence of pgplex's stall regression (test_drivers.py). Connects, cancels a
pg_sleep(30) with connection.cancel() from another thread, then writes a 64 MB bytea into a
plain table and reads it back. Prints "ok"; a failure exits 1.
Usage: stall_psycopg2.py HOST PORT USER PASSWORD DBNAME TABLE"""

import sys
import threading

import psycopg2
import psycopg2.errors

SIZE = 64 * 1024 * 1024


def payload():
    pattern = bytes((i * 7) & 0xff for i in range(256))
    return (pattern * (SIZE // 256))


def main(host, port, user, password, dbname, table):
    conn = psycopg2.connect(host=host, port=port, user=user, password=password, dbname=dbname)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT 1")
    canceller = threading.Timer(0.5, conn.cancel)
    canceller.start()
    try:
        cur.execute("SELECT pg_sleep(30)")
        raise SystemExit("psycopg2: the sleep was not cancelled")
    except psycopg2.errors.QueryCanceled:
        pass
    canceller.join(5)
    data = payload()
    cur.execute(f"INSERT INTO {table} VALUES (3, %s)", (psycopg2.Binary(data),))
    cur.execute(f"SELECT b FROM {table} WHERE id = 3")
    back = cur.fetchone()[0]
    if bytes(back) != data:
        raise SystemExit("psycopg2: the value came back different")
    conn.close()
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:7])
