"""Drives the docker-compose cluster brought up by tests/compose.sh: data on
its S3 store, queried through psql-compatible psycopg via the gateway
container and its two executor containers, answered exactly even when one
executor container is SIGKILLed mid-query. Exits non-zero on any failure."""

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COMPOSE = json.loads(os.environ["COMPOSE_CMD"])
PG = dict(host="127.0.0.1", port=25432, user="sluice", dbname="sluice", password=os.environ["SLUICE_ADMIN_PASSWORD"])
S3 = "http://127.0.0.1:29000"
ROWS, FILES = 3_000_000, 6
SQL = "select a.k, count(*) as n, sum(b.v) as total from lake.facts a join lake.facts b on a.id = b.id group by a.k order by a.k"


def say(*a):
    print("compose:", *a, flush=True)


def wait_ready(timeout=180):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:28080/readyz", timeout=2) as r:
                return r.read().decode().strip()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(1)
    raise SystemExit(f"gateway not ready after {timeout}s: {last}")


def alive_executors(conn):
    return conn.execute("select count(*) from system.executors").fetchone()[0]


def wait_executors(conn, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if alive_executors(conn) == n:
            return
        time.sleep(1)
    raise SystemExit(f"expected {n} executors, have {alive_executors(conn)}")


def upload():
    s3 = boto3.client("s3", endpoint_url=S3, region_name="us-east-1", aws_access_key_id="sluice", aws_secret_access_key="sluice-secret")
    per = ROWS // FILES
    tables = []
    for f in range(FILES):
        ids = pa.array(range(f * per, (f + 1) * per), pa.int64())
        t = pa.table({"id": ids, "k": pc.cast(pc.divide(ids, 100_000), pa.int32()), "v": pc.multiply(pc.cast(ids, pa.float64()), 0.5)})
        buf = io.BytesIO()
        pq.write_table(t, buf, compression="zstd")
        s3.put_object(Bucket="lake", Key=f"facts/part-{f}.parquet", Body=buf.getvalue())
        tables.append(t)
    t = pa.concat_tables(tables)
    g = t.group_by("k").aggregate([("id", "count"), ("v", "sum")]).sort_by("k")
    return [(k, n, s) for k, n, s in zip(g["k"].to_pylist(), g["id_count"].to_pylist(), g["v_sum"].to_pylist())]


def rows(conn):
    return [(k, n, float(s)) for k, n, s in conn.execute(SQL).fetchall()]


def tables_survive():
    """After the gateway container was replaced: the tables are in the
    PostgreSQL catalog, not in the old container."""
    say(wait_ready())
    conn = psycopg.connect(**PG, autocommit=True)
    n, total = conn.execute("select count(*), sum(n) from lake.summary").fetchone()
    assert total == ROWS, (n, total)
    say(f"a new gateway container reads lake.summary ({n} rows) from the PostgreSQL catalog")
    say("ok")


def main():
    if "--tables-only" in sys.argv:
        return tables_survive()
    say(wait_ready())
    expected = upload()
    say(f"uploaded {ROWS} rows in {FILES} Parquet files to s3://lake/facts/")
    conn = psycopg.connect(**PG, autocommit=True)
    wait_executors(conn, 2)
    conn.execute("create schema if not exists lake")
    conn.execute("create external table lake.facts stored as parquet location 's3://lake/facts/'")
    t0 = time.time()
    assert rows(conn) == expected, "clean answer differs"
    took = time.time() - t0
    say(f"query through 2 remote executors: {len(expected)} groups in {took:.2f}s")
    # a managed table written to the warehouse bucket and read back
    conn.execute("create table lake.summary as " + SQL)
    assert conn.execute("select count(*), sum(n) from lake.summary").fetchone() == (len(expected), ROWS)

    for fraction in (0.4, 0.2, 0.1):
        box = {}

        def run():
            c = psycopg.connect(**PG, autocommit=True)
            try:
                box["rows"] = rows(c)
            except Exception as e:  # noqa: BLE001 - reported below
                box["error"] = e
            box["ended"] = time.time()

        th = threading.Thread(target=run)
        started = time.time()
        th.start()
        time.sleep(took * fraction)
        subprocess.run([*COMPOSE, "kill", "-s", "SIGKILL", "executor-1"], check=True, capture_output=True)
        killed = time.time()
        th.join(300)
        assert "error" not in box, f"query failed after the kill: {box['error']}"
        assert box["rows"] == expected, "answer changed after an executor was killed"
        subprocess.run([*COMPOSE, "start", "executor-1"], check=True, capture_output=True)
        wait_executors(conn, 2)
        if box["ended"] > killed:
            say(f"executor-1 SIGKILLed {killed - started:.1f}s into the run ({fraction:.0%} of a clean run); answer exact")
            break
        say(f"the query ended before the kill at {fraction:.0%}; again, earlier")
    else:
        raise SystemExit("the kill never landed while the query ran")
    say("ok")


if __name__ == "__main__":
    sys.exit(main())
