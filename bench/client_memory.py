"""Gateway memory while real clients page through a large result.

Writes a 5-million-row Parquet file and reads all of it through: psycopg
(`cursor.stream`), pgjdbc with `setFetchSize(1000)` in a transaction (named
portal, Execute with max_rows), and psqlODBC with `UseDeclareFetch=1`
(DECLARE ... CURSOR WITH HOLD / FETCH 10000, Tableau's setting). Samples the
gateway's RSS every 20 ms and prints baseline, peak and growth per client.
Target (issue 8): growth < 200 MB for each.

    python bench/client_memory.py [--rows 5000000]
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

import psycopg

from common import Gateway, RssPeak, write_wide

HERE = Path(__file__).resolve().parent
SQL = "SELECT id, label, value FROM wide"


def psycopg_stream(g):
    with psycopg.connect(g.dsn(), autocommit=True) as conn:
        return sum(1 for _ in conn.cursor().stream(SQL))


def jdbc_fetch_size(g):
    url = f"jdbc:postgresql://127.0.0.1:{g.pg_port}/sluice"
    r = subprocess.run(
        ["java", "-cp", "/usr/share/java/postgresql.jar", str(HERE / "jdbc" / "FetchSizeStream.java"), url, "sluice", "bench", SQL, "1000"],
        capture_output=True, text=True, check=True,
    )
    return int(r.stdout.strip())


def odbc_declare_fetch(g):
    import pyodbc

    conn = pyodbc.connect(
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={g.pg_port};DATABASE=sluice;UID=sluice;PWD=bench;"
        "UseDeclareFetch=1;Fetch=10000"
    )
    cur = conn.cursor()
    cur.execute(SQL)
    n = 0
    while True:
        rows = cur.fetchmany(10000)
        if not rows:
            break
        n += len(rows)
    conn.commit()
    conn.close()
    return n


CLIENTS = [
    ("psycopg cursor.stream", psycopg_stream),
    ("pgjdbc setFetchSize(1000)", jdbc_fetch_size),
    ("psqlODBC UseDeclareFetch=1", odbc_declare_fetch),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    args = ap.parse_args()
    mb = 1024 * 1024
    print("| client | rows | elapsed | rows/s | RSS before | RSS peak | growth (target < 200 MB) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d:
        d = Path(d)
        write_wide(d, args.rows)
        for name, run in CLIENTS:
            # A fresh gateway per client: one client's high-water mark does not hide another's.
            with Gateway(d / f"gw-{name.split()[0]}") as g, psycopg.connect(g.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE EXTERNAL TABLE wide STORED AS PARQUET LOCATION '{d}/wide/'")
                conn.execute("SELECT count(*) FROM wide").fetchone()
                with RssPeak(g) as rss:
                    rows = run(g)
                baseline, peak, elapsed = rss.baseline, rss.peak, rss.elapsed
                assert rows == args.rows, (name, rows)
                print(
                    f"| {name} | {rows:,} | {elapsed:.1f} s | {rows / elapsed:,.0f} | {baseline / mb:.0f} MB | "
                    f"{peak / mb:.0f} MB | {(peak - baseline) / mb:.0f} MB |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
