"""Gateway memory while many clients stream a large result at once (issue 12:
growth under 200 MB with 8 clients on each protocol).

Writes an n-row Parquet file (id, label, value) and, one protocol at a time,
has `--clients` clients read all of it at once, each consuming rows as they
arrive:
- pg text: `psql -c "COPY (SELECT ...) TO STDOUT"` into /dev/null;
- pg binary: the same COPY in binary format;
- pg extended protocol: psycopg's `cursor.stream` (single-row mode) — the
  slowest client, so it reads `--rows / 10` rows;
- Flight SQL: pyarrow's Flight client reading batch by batch.
Samples the gateway's RSS every 20 ms; prints baseline, peak and growth per
protocol, with rows/s over all clients.

    python bench/stream_memory.py [--rows 10000000] [--clients 8]
"""

import argparse
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from common import Gateway, RssPeak, write_wide

COLUMNS = "id, label, value"


def psql_copy(dsn, binary, limit):
    fmt = " (FORMAT binary)" if binary else ""
    sql = f"COPY (SELECT {COLUMNS} FROM wide LIMIT {limit}) TO STDOUT{fmt}"
    with open("/dev/null", "wb") as null:
        subprocess.run(["psql", "-X", "-q", "-d", dsn, "-c", sql], check=True, stdout=null)
    return limit


def psycopg_stream(dsn, _binary, limit):
    n = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for _ in cur.stream(f"SELECT {COLUMNS} FROM wide LIMIT {limit}"):
            n += 1
    return n


def flight(port, limit):
    import pyarrow.flight as fl

    def read(_dsn, _binary, _limit):
        client = fl.FlightClient(f"grpc://127.0.0.1:{port}")
        opts = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", "bench")])
        command = b"\x0a" + _varint(len(TYPE)) + TYPE
        sql = f"SELECT {COLUMNS} FROM wide LIMIT {limit}".encode()
        inner = b"\x0a" + _varint(len(sql)) + sql
        command += b"\x12" + _varint(len(inner)) + inner
        info = client.get_flight_info(fl.FlightDescriptor.for_command(command), opts)
        n = 0
        for endpoint in info.endpoints:
            reader = client.do_get(endpoint.ticket, opts)
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                n += chunk.data.num_rows
        return n

    return read


TYPE = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def _varint(n):
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def measure(g, clients, read, dsn, binary, limit):
    with RssPeak(g) as rss, ThreadPoolExecutor(clients) as pool:
        rows = sum(pool.map(lambda _: read(dsn, binary, limit), range(clients)))
    assert rows == clients * limit, rows
    return rows, rss.elapsed, rss.baseline, rss.peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d:
        d = Path(d)
        n = args.rows
        write_wide(d, n)
        mb = 1024 * 1024
        lines = []
        with Gateway(d / "gw") as g:
            with psycopg.connect(g.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE EXTERNAL TABLE wide STORED AS PARQUET LOCATION '{d}/wide/'")
                conn.execute("SELECT count(*) FROM wide").fetchone()
            import json

            port = int(json.loads((d / "gw-listen.json").read_text())["flight"].rsplit(":", 1)[1])
            paths = [
                ("pg text (COPY TO STDOUT)", psql_copy, False, n),
                ("pg binary (COPY TO STDOUT, binary)", psql_copy, True, n),
                ("pg extended (psycopg stream)", psycopg_stream, False, n // 10),
                ("Flight SQL (pyarrow)", flight(port, n), False, n),
            ]
            for label, read, binary, limit in paths:
                rows, elapsed, base, peak = measure(g, args.clients, read, g.dsn(), binary, limit)
                lines.append(
                    f"| {label} | {rows:,} | {rows / elapsed:,.0f} | {base / mb:.0f} MB | {peak / mb:.0f} MB "
                    f"| {(peak - base) / mb:.0f} MB |"
                )
        print(f"\n{args.clients} clients at once, each reading {n:,} rows (psycopg: {n // 10:,})\n")
        print("| path | rows | rows/s | RSS before | RSS peak | growth (target < 200 MB) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
