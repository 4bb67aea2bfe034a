"""Planning a query that prunes to 1 of N partitions (default 10,000) on S3.

Starts a local S3-compatible server (moto, as the tests do), writes one small
Parquet file per `day=` partition, creates an external table over it (its
partitions are discovered once), then times `EXPLAIN` (planning only) and the
query itself, cold (gateway just restarted: empty caches) and warm (caches
filled), with the object-store requests each made. Prints a Markdown table.

    /var/tmp/sluice-venv/bin/python bench/partitions.py [--partitions 10000] [--runs 5]
"""

import argparse
import concurrent.futures
import datetime
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from common import Gateway

from s3_fixtures import S3Server  # tests/python, on the path via common


def days(n):
    start = datetime.date(2000, 1, 1)
    return [(start + datetime.timedelta(days=i)).isoformat() for i in range(n)]


def fill(s3, n):
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array(range(100), pa.int64()), "v": pa.array([1.0] * 100)}), buf)
    body = buf.getvalue()
    client = s3.client()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda d: client.put_object(Bucket="bench", Key=f"events/day={d}/part-0.parquet", Body=body), days(n)))


def timed(conn, sql, gw):
    before = gw.store_requests()
    t = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    ms = (time.perf_counter() - t) * 1000
    after = gw.store_requests()
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in ("LIST", "GET", "HEAD")}
    return ms, delta, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d:
        base = Path(d)
        s3 = S3Server(base).start()
        try:
            s3.create_bucket("bench")
            t = time.perf_counter()
            fill(s3, args.partitions)
            print(f"wrote {args.partitions} partitions in {time.perf_counter() - t:.1f} s")
            os.environ.update(s3.env())
            target = days(args.partitions)[args.partitions // 2]
            explain = f"EXPLAIN SELECT sum(v) FROM ev WHERE day = DATE '{target}'"
            query = f"SELECT sum(v) FROM ev WHERE day = DATE '{target}'"
            results = []
            with Gateway(base / "gw") as gw, psycopg.connect(gw.dsn(), autocommit=True) as conn:
                t = time.perf_counter()
                conn.execute(
                    "CREATE EXTERNAL TABLE ev (id BIGINT, v DOUBLE, day DATE) STORED AS PARQUET "
                    "PARTITIONED BY (day) LOCATION 's3://bench/events/'"
                )
                create_ms = (time.perf_counter() - t) * 1000
            # Cold: a fresh gateway process on the same catalog.
            with Gateway(base / "gw") as gw, psycopg.connect(gw.dsn(), autocommit=True) as conn:
                ms, req, rows = timed(conn, explain, gw)
                scan = [r[1] for r in rows if r[0] == "lake_scan"]
                results.append(("EXPLAIN, cold", ms, req))
                warm = [timed(conn, explain, gw) for _ in range(args.runs)]
                results.append(("EXPLAIN, warm (median)", statistics.median(w[0] for w in warm), warm[-1][1]))
                ms, req, _ = timed(conn, query, gw)
                results.append(("query, first run", ms, req))
                warm = [timed(conn, query, gw) for _ in range(args.runs)]
                results.append(("query, warm (median)", statistics.median(w[0] for w in warm), warm[-1][1]))
        finally:
            s3.stop()
    print(f"\nCREATE EXTERNAL TABLE over {args.partitions} partitions (discovery): {create_ms:.0f} ms")
    print(f"scan: {scan[0] if scan else '?'}\n")
    print("| step | ms | LIST | GET | HEAD |")
    print("|---|---|---|---|---|")
    for name, ms, req in results:
        print(f"| {name} | {ms:.1f} | {req['LIST']} | {req['GET']} | {req['HEAD']} |")


if __name__ == "__main__":
    main()
