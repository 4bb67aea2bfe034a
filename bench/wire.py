"""Results at wire speed (issue 12): PostgreSQL 15 and Sluice side by side on
the same TPC-H `lineitem`, one run, one machine.

Generates `lineitem` (tpchgen-cli), loads it into a throw-away PostgreSQL 15
(ADBC bulk ingest) and registers the same Parquet file in a gateway, then
measures on both:
- `psql -c "select * from lineitem"` (text protocol) into /dev/null;
- `COPY (select * from lineitem) TO STDOUT` through psql, text and binary;
- psycopg with binary results;
- the ADBC PostgreSQL driver (binary COPY under the hood);
- Flight SQL (Sluice only) through ADBC and through pyarrow's C++ client:
  one stream, LZ4-compressed, and up to 4 endpoints read at once; rows/s
  and GB/s of Arrow data (the received table's bytes);
- `COPY lineitem FROM STDIN` (text, psql's `\\copy` of PostgreSQL's own dump)
  into an empty table.
- `pgbench` of `SELECT 1`, extended protocol, 16 clients, 10 s: TPS and
  average latency.
Prints one Markdown table (rows/s unless marked). For each Sluice path it
also prints the CPU the client (this process and the programs it ran) and
the gateway used, in cores (CPU seconds per second of the path): a client
near 1.0 is the limit of a single-threaded client, not of the server. Use a
release build.

    /var/tmp/sluice-venv/bin/python bench/wire.py [--scale 1] [--pgbench-seconds 10]
"""

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq

from common import Gateway, gateway_binary, generate_tpch, pgbench

import reference_pg  # tests/python, on the path via common


# pyarrow's Flight client, one stream or several endpoints read at once.
FLIGHT_VARIANTS = [
    ("Flight SQL (pyarrow)", {}),
    ("Flight SQL (pyarrow, lz4_frame)", {"compression": "lz4_frame"}),
    ("Flight SQL (pyarrow, up to 4 endpoints)", {"endpoints": 4}),
]


def rate(rows, seconds):
    return f"{rows / seconds / 1000:,.0f}k"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def psql(dsn, sql, env=None):
    """Runs psql with `sql`, output to /dev/null; returns seconds."""
    with open("/dev/null", "wb") as null:
        t = time.perf_counter()
        subprocess.run(["psql", "-X", "-q", "-d", dsn, "-c", sql], check=True, stdout=null, env=env)
        return time.perf_counter() - t


def psycopg_binary(dsn):
    n = 0
    with psycopg.connect(dsn) as conn, conn.cursor(binary=True) as cur:
        cur.execute("select * from lineitem")
        while rows := cur.fetchmany(50_000):
            n += len(rows)
    return n


def adbc_postgres(uri):
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("select * from lineitem")
        table = cur.fetch_arrow_table()
    return table.num_rows


def flight_sql(port, password):
    import adbc_driver_flightsql.dbapi as flight
    from adbc_driver_flightsql import DatabaseOptions

    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: "Basic " + _basic("sluice", password)}
    with flight.connect(f"grpc://127.0.0.1:{port}", db_kwargs=options) as conn, conn.cursor() as cur:
        cur.execute("select * from lineitem")
        table = cur.fetch_arrow_table()
    return table.num_rows, table.nbytes


def _pb(field, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    n, head = len(payload), bytes([field << 3 | 2])
    while True:
        head += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return head + payload


def pyarrow_flight(port, password, endpoints=1, compression=None):
    """pyarrow's Flight client (C++): GetFlightInfo, then every endpoint read
    at once, each on its own connection. Session options are set with
    SetSessionOptions (the gateway keeps them by bearer token)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.flight as fl

    uri = f"grpc://127.0.0.1:{port}"
    client = fl.FlightClient(uri)
    opts = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", password)])
    options = {"endpoints": str(endpoints), "compression": compression or "none"}
    body = b"".join(_pb(1, _pb(1, k.encode()) + _pb(2, _pb(1, v.encode()))) for k, v in options.items())
    list(client.do_action(fl.Action("SetSessionOptions", body), opts))
    command = _pb(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _pb(
        2, _pb(1, b"select * from lineitem")
    )
    info = client.get_flight_info(fl.FlightDescriptor.for_command(command), opts)

    def read(endpoint):
        return fl.FlightClient(uri).do_get(endpoint.ticket, opts).read_all()

    with ThreadPoolExecutor(len(info.endpoints)) as pool:
        table = pa.concat_tables(pool.map(read, info.endpoints))
    return table.num_rows, table.nbytes, len(info.endpoints)


def _basic(user, password):
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    args = ap.parse_args()
    results = {}
    cpu = {}
    with tempfile.TemporaryDirectory(prefix="sluice-wire-") as d:
        d = Path(d)
        paths = generate_tpch(args.scale, d / "data")
        lineitem = paths["lineitem"]
        files = sorted(lineitem.glob("*.parquet")) if lineitem.is_dir() else [lineitem]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

        server = reference_pg.ReferencePostgres(options="-c shared_buffers=1GB -c max_connections=100").start()
        try:
            import adbc_driver_postgresql.dbapi as pg

            uri = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
            with pg.connect(uri) as conn, conn.cursor() as cur:
                for f in files:
                    cur.adbc_ingest("lineitem", pq.read_table(f), mode="create_append")
                conn.commit()
            pg_dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
            psql(pg_dsn, "select count(*) from lineitem")  # warm the buffer cache
            results["psql select * (text)"] = [rate(rows, psql(pg_dsn, "select * from lineitem"))]
            results["COPY (select *) TO STDOUT, text"] = [rate(rows, psql(pg_dsn, "copy (select * from lineitem) to stdout"))]
            results["COPY (select *) TO STDOUT, binary"] = [
                rate(rows, psql(pg_dsn, "copy (select * from lineitem) to stdout (format binary)"))
            ]
            # COPY FROM STDIN: PostgreSQL's own text dump of the table, loaded
            # by psql into an empty copy of it (the same file for Sluice below).
            dump = d / "lineitem.copy"
            psql(pg_dsn, f"\\copy lineitem to '{dump}'")
            psql(pg_dsn, "create table lineitem_in (like lineitem)")
            results["COPY lineitem FROM STDIN, text"] = [rate(rows, psql(pg_dsn, f"\\copy lineitem_in from '{dump}'"))]
            s, n = timed(lambda: psycopg_binary(pg_dsn))
            results["psycopg, binary results"] = [rate(n, s)]
            s, n = timed(lambda: adbc_postgres(uri))
            results["ADBC PostgreSQL driver"] = [rate(n, s)]
            results["Flight SQL (ADBC)"] = ["—"]
            for label, _ in FLIGHT_VARIANTS:
                results[label] = ["—"]
            tps, ms, p99 = pgbench("127.0.0.1", server.port, "postgres", "postgres", args.pgbench_seconds, d)
            results["pgbench SELECT 1, extended, 16 clients"] = [f"{tps:,.0f} TPS ({ms:.2f} ms, p99 {p99:.2f} ms)"]
        finally:
            server.stop()

        with Gateway(d / "gw") as g:
            with psycopg.connect(g.dsn(), autocommit=True) as conn:
                loc = f"{lineitem}/" if lineitem.is_dir() else str(lineitem)
                conn.execute(f"CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{loc}'")
                conn.execute("select count(*) from lineitem").fetchall()
            dsn = g.dsn()

            def cpu_now():
                """(wall, client CPU s, gateway CPU s)."""
                me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                stat = Path(f"/proc/{g.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                gateway = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
                client = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
                return time.perf_counter(), client, gateway

            def attempt(label, fn):
                before = cpu_now()
                try:
                    results[label].append(fn())
                except Exception as e:  # a path Sluice does not serve yet
                    results[label].append(f"fails: {str(e).splitlines()[0][:60]}")
                wall, client, gateway = (b - a for a, b in zip(before, cpu_now()))
                cpu[label] = f"{client / wall:.2f} / {gateway / wall:.2f}"

            attempt("psql select * (text)", lambda: rate(rows, psql(dsn, "select * from lineitem")))
            attempt("COPY (select *) TO STDOUT, text",
                    lambda: rate(rows, psql(dsn, "copy (select * from lineitem) to stdout")))
            attempt("COPY (select *) TO STDOUT, binary",
                    lambda: rate(rows, psql(dsn, "copy (select * from lineitem) to stdout (format binary)")))

            def copy_in_rate():
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("create table lineitem_in as select * from lineitem where false")
                return rate(rows, psql(dsn, f"\\copy lineitem_in from '{dump}'"))

            attempt("COPY lineitem FROM STDIN, text", copy_in_rate)

            def psycopg_rate():
                s, n = timed(lambda: psycopg_binary(dsn))
                return rate(n, s)

            attempt("psycopg, binary results", psycopg_rate)

            def adbc_rate():
                s, n = timed(lambda: adbc_postgres(f"postgresql://sluice:bench@127.0.0.1:{g.pg_port}/sluice"))
                return rate(n, s)

            attempt("ADBC PostgreSQL driver", adbc_rate)

            listen = json.loads((d / "gw-listen.json").read_text())
            flight_port = int(listen["flight"].rsplit(":", 1)[1])

            def flight_rate():
                s, (n, nbytes) = timed(lambda: flight_sql(flight_port, "bench"))
                return f"{rate(n, s)} ({nbytes / s / 1e9:.2f} GB/s)"

            attempt("Flight SQL (ADBC)", flight_rate)
            for label, kwargs in FLIGHT_VARIANTS:
                def pyarrow_rate(kwargs=kwargs):
                    s, (n, nbytes, parts) = timed(lambda: pyarrow_flight(flight_port, "bench", **kwargs))
                    return f"{rate(n, s)} ({nbytes / s / 1e9:.2f} GB/s, {parts} endpoint{'s' if parts > 1 else ''})"

                attempt(label, pyarrow_rate)

            def bench_rate():
                tps, ms, p99 = pgbench("127.0.0.1", g.pg_port, "sluice", "sluice", args.pgbench_seconds, d, password="bench")
                return f"{tps:,.0f} TPS ({ms:.2f} ms, p99 {p99:.2f} ms)"

            attempt("pgbench SELECT 1, extended, 16 clients", bench_rate)

    print(f"\nTPC-H SF{args.scale:g} lineitem, {rows:,} rows; one run; gateway {gateway_binary()}\n")
    print("| path | PostgreSQL 15 | Sluice | Sluice: client / gateway CPU (cores) |")
    print("|---|---|---|---|")
    for label, (pg_value, *sluice) in results.items():
        print(f"| {label} | {pg_value} | {sluice[0] if sluice else '—'} | {cpu.get(label, '—')} |")


if __name__ == "__main__":
    main()
