"""Small statements, side by side with PostgreSQL 15 on the same machine:
pgbench `SELECT 1` (extended protocol, 16 clients: TPS, average and p99
latency from pgbench's per-transaction log) and every BI client start-up
and metadata query of conformance/test_bi_replays.py (psycopg, one
connection; it sends parameterless queries over the simple protocol, which
the plan cache does not serve yet): first run, then median and p99 of
--repeat runs. Use a release build.

    /var/tmp/sluice-venv/bin/python bench/small.py [--pgbench-seconds 10] [--repeat 50]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from common import ROOT, Gateway, gateway_binary, pgbench

sys.path.insert(0, str(ROOT / "conformance"))
import reference_pg  # noqa: E402
from test_bi_replays import REPLAYS, TABLE  # noqa: E402


def replays(dsn, repeat):
    """{(tool, feature): (first ms, median ms, p99 ms)}."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tool, feature, sql, _check in REPLAYS:
            times = []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                try:
                    cur = conn.execute(sql)
                    if cur.description is not None:
                        cur.fetchall()
                except psycopg.Error:
                    times = None
                    break
                times.append((time.perf_counter() - t0) * 1e3)
            if times is None:
                out[(tool, feature)] = None
                continue
            first, rest = times[0], sorted(times[1:])
            out[(tool, feature)] = (first, statistics.median(rest), rest[min(len(rest) - 1, int(len(rest) * 0.99))])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-small-") as d:
        d = Path(d)
        os.chmod(d, 0o777)  # pgbench runs as this user; the log dir must be writable
        server = reference_pg.ReferencePostgres(options="-c max_connections=100").start()
        try:
            pg = pgbench("127.0.0.1", server.port, "postgres", "postgres", args.pgbench_seconds, d)
        finally:
            server.stop()
        lake = d / "lake" / "sales"
        lake.mkdir(parents=True)
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": list(range(100)), "store_id": [i % 7 for i in range(100)],
                                 "amount": [i * 1.5 for i in range(100)], "item": [f"i{i}" for i in range(100)]}),
                       lake / "part-0.parquet")
        with Gateway(d / "gw") as g:
            with psycopg.connect(g.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE EXTERNAL TABLE {TABLE} STORED AS PARQUET LOCATION '{lake}/'")
            sluice = pgbench("127.0.0.1", g.pg_port, "sluice", "sluice", args.pgbench_seconds, d, password="bench")
            queries = replays(g.dsn(), args.repeat)

    print(f"\nSmall statements; one run; gateway {gateway_binary()}\n")
    print("| pgbench SELECT 1, extended, 16 clients | TPS | avg ms | p99 ms |")
    print("|---|---|---|---|")
    for name, (tps, avg, p99) in (("PostgreSQL 15", pg), ("Sluice", sluice)):
        print(f"| {name} | {tps:,.0f} | {avg:.2f} | {p99:.2f} |")
    print(f"\nSluice: {sluice[0] / pg[0]:.0%} of PostgreSQL's TPS\n")
    print(f"| client query (psycopg, simple protocol: no plan cache) | first ms | median ms (of {args.repeat}) | p99 ms |")
    print("|---|---|---|---|")
    for (tool, feature), t in queries.items():
        cells = "fails | | " if t is None else f"{t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f}"
        print(f"| {tool}: {feature} | {cells} |")


if __name__ == "__main__":
    main()
