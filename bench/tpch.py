"""TPC-H through the Postgres wire vs DataFusion embedded, same Parquet files,
measured side by side in one run; plus `SELECT 1` round-trip latency.

    python bench/tpch.py [--scale 0.1] [--runs 3] [--set ballista.planner.adaptive.enabled=true]

Prints one table; the ratio column is Sluice time / DataFusion time (best of
--runs each). DuckDB on the same files is printed as a third column.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from common import Gateway, datafusion_context, generate_tpch
from tpch_queries import QUERIES


def best(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--executors", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a session setting for Sluice's connection (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-tpch-") as d:
        d = Path(d)
        data = d / "data"
        paths = generate_tpch(args.scale, data)
        import duckdb

        ctx = datafusion_context(paths)
        duck = duckdb.connect()
        for t, p in paths.items():
            src = f"{p}/*.parquet" if p.is_dir() else str(p)
            duck.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src}')")

        with Gateway(d / "gw", "--local-executors", str(args.executors)) as g, psycopg.connect(g.dsn(), autocommit=True) as conn:
            for t, p in paths.items():
                loc = f"{p}/" if p.is_dir() else str(p)
                conn.execute(f"CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{loc}'")
            for setting in args.set:
                name, value = setting.split("=", 1)
                conn.execute(f"SET {name} = '{value}'")
            # SELECT 1 latency
            for _ in range(50):
                conn.execute("SELECT 1").fetchone()
            lat = []
            for _ in range(1000):
                t0 = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            print(f"SELECT 1 round trip over 1000 runs: p50 {statistics.median(lat):.3f} ms, p99 {lat[int(len(lat) * 0.99)]:.3f} ms\n")

            settings = f" ({', '.join(args.set)})" if args.set else ""
            print(f"TPC-H SF{args.scale}, best of {args.runs}, {args.executors} in-process executors{settings}")
            print("| query | sluice (pg wire) ms | datafusion embedded ms | ratio | duckdb ms | rows |")
            print("|---|---|---|---|---|---|")
            tot_s = tot_d = tot_k = 0.0
            for q, sql in QUERIES.items():
                rows = []

                def run_sluice():
                    rows[:] = conn.execute(sql).fetchall()

                s = best(run_sluice, args.runs)
                df = best(lambda: ctx.sql(sql).collect(), args.runs)
                dk = best(lambda: duck.execute(sql).fetchall(), args.runs)
                tot_s, tot_d, tot_k = tot_s + s, tot_d + df, tot_k + dk
                print(f"| Q{q} | {s * 1000:.0f} | {df * 1000:.0f} | {s / df:.2f} | {dk * 1000:.0f} | {len(rows)} |")
            print(f"| total | {tot_s * 1000:.0f} | {tot_d * 1000:.0f} | {tot_s / tot_d:.2f} | {tot_k * 1000:.0f} | |")


if __name__ == "__main__":
    main()
