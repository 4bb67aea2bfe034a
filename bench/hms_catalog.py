"""A Hive Metastore as the catalog: what a query on a metastore table costs.

Starts a real Hive Metastore 2.3 (tests/python/hive_metastore.py: pyspark's
jars, Derby, in a network namespace: needs root), creates an external table
with N partitions through the metastore (hmsclient), and times on one gateway
with `--catalog thrift://...`:
- a query pruned to 1 partition by the metastore (`k = v`: pushed down to
  get_partitions_by_filter), and one it cannot push (`k + 0 = v`: all N
  partitions fetched, pruned by Sluice), each cold (the partition cache of
  `--catalog-poll` expired) and warm;
- how long a table another client creates takes to become queryable.
Beside it, the same table in the default SQLite catalog (partitions found at
CREATE). Prints a Markdown table.

    /var/tmp/sluice-venv/bin/python bench/hms_catalog.py [--partitions 1000] [--runs 10]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from common import Gateway

import hive_metastore  # tests/python, on the path via common
from hmsclient.genthrift.hive_metastore import ttypes

POLL = 0.2


def storage(location):
    return hive_metastore.parquet_storage(location, [("id", "bigint"), ("v", "double")])


def create(c, name, data, n):
    c.create_table(
        ttypes.Table(
            tableName=name,
            dbName="default",
            owner="bench",
            sd=storage(data.as_uri()),
            partitionKeys=[ttypes.FieldSchema(name="k", type="int")],
            parameters={"EXTERNAL": "TRUE"},
            tableType="EXTERNAL_TABLE",
        )
    )
    for start in range(0, n, 500):
        parts = [
            ttypes.Partition(dbName="default", tableName=name, values=[str(k)], sd=storage((data / f"k={k}").as_uri()))
            for k in range(start, min(n, start + 500))
        ]
        c.add_partitions(parts)


def median_ms(conn, sql, runs, wait):
    times = []
    for _ in range(runs):
        if wait:
            time.sleep(wait)
        t = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    n = args.partitions
    with tempfile.TemporaryDirectory(prefix="sluice-bench-hms-") as d:
        d = Path(d)
        data = d / "events"
        table = pa.table({"id": pa.array(range(100), pa.int64()), "v": pa.array([1.0] * 100)})
        for k in range(n):
            (data / f"k={k}").mkdir(parents=True)
            pq.write_table(table, data / f"k={k}" / "part-0.parquet")
        hms = hive_metastore.HiveMetastore().start()
        try:
            with hms.client() as c:
                create(c, "events", data, n)
            rows = []
            probe = n // 2
            with Gateway(d / "hms", "--catalog", hms.uri, "--catalog-poll", str(POLL)) as g, psycopg.connect(
                g.dsn(), autocommit=True
            ) as conn:
                for _ in range(200):
                    try:
                        conn.execute("SELECT count(*) FROM default.events WHERE k = 0").fetchall()
                        break
                    except psycopg.Error:
                        time.sleep(0.1)
                for label, sql in (
                    ("pushed to the metastore (`k = v`)", f"SELECT count(*) FROM default.events WHERE k = {probe}"),
                    ("pruned by Sluice (`k + 0 = v`)", f"SELECT count(*) FROM default.events WHERE k + 0 = {probe}"),
                ):
                    cold = median_ms(conn, sql, args.runs, POLL + 0.05)
                    warm = median_ms(conn, sql, args.runs, 0)
                    rows.append((f"Hive Metastore, {label}", cold, warm))
                # Another client creates a table: how long until it answers here.
                with hms.client() as c:
                    t = time.perf_counter()
                    create(c, "late", data, 1)
                while True:
                    try:
                        conn.execute("SELECT count(*) FROM default.late").fetchall()
                        break
                    except psycopg.Error:
                        time.sleep(0.01)
                seen_ms = (time.perf_counter() - t) * 1000
            with Gateway(d / "sqlite") as g, psycopg.connect(g.dsn(), autocommit=True) as conn:
                conn.execute(
                    "CREATE EXTERNAL TABLE events (id BIGINT, v DOUBLE, k INT) STORED AS PARQUET "
                    f"PARTITIONED BY (k) LOCATION '{data.as_uri()}/'"
                )
                sql = f"SELECT count(*) FROM events WHERE k = {probe}"
                rows.append(("SQLite catalog, same files (`k = v`)", median_ms(conn, sql, args.runs, POLL + 0.05), median_ms(conn, sql, args.runs, 0)))
        finally:
            hms.stop()
    print(f"\n{n} partitions, 1 Parquet file each; medians of {args.runs} runs; `--catalog-poll {POLL}`")
    print("(the SQLite catalog keeps a table's partitions until it changes: its pause column is warm too)\n")
    print("| catalog and filter | after a pause past --catalog-poll (metastore asked again) ms | back to back ms |")
    print("|---|---|---|")
    for label, cold, warm in rows:
        print(f"| {label} | {cold:.1f} | {warm:.1f} |")
    print(f"\nA table another metastore client created answered a query here after {seen_ms:.0f} ms.")


if __name__ == "__main__":
    main()
