"""Gateway memory while streaming a large result through the Postgres wire.

Writes a 5-million-row Parquet file, streams `SELECT *` of it with psycopg
(rows consumed as they arrive), samples the gateway's RSS every 20 ms and
prints baseline, peak and growth. Target (issue 2): growth < 200 MB.

    python bench/stream_memory.py [--rows 5000000]
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from common import Gateway, write_wide


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d:
        d = Path(d)
        n = args.rows
        write_wide(d, n)
        with Gateway(d / "gw") as g, psycopg.connect(g.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE EXTERNAL TABLE wide STORED AS PARQUET LOCATION '{d}/wide/'")
            conn.execute("SELECT count(*) FROM wide").fetchone()
            time.sleep(1)
            baseline = g.rss_bytes()
            peak = [baseline]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], g.rss_bytes())
                    time.sleep(0.02)

            t = threading.Thread(target=sample)
            t.start()
            t0 = time.monotonic()
            rows = 0
            cur = conn.cursor()
            for _ in cur.stream("SELECT id, label, value FROM wide"):
                rows += 1
            elapsed = time.monotonic() - t0
            stop.set()
            t.join()
            assert rows == n, rows
        mb = 1024 * 1024
        print("| metric | value |")
        print("|---|---|")
        print(f"| rows streamed | {rows:,} |")
        print(f"| elapsed | {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s) |")
        print(f"| gateway RSS before | {baseline / mb:.0f} MB |")
        print(f"| gateway RSS peak | {peak[0] / mb:.0f} MB |")
        print(f"| growth | {(peak[0] - baseline) / mb:.0f} MB (target < 200 MB) |")


if __name__ == "__main__":
    main()
