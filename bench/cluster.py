"""TPC-H through a gateway with remote executors vs in-process executors vs
DataFusion embedded, on the same Parquet files in one run; then the cost of
losing an executor half-way through a query.

    python bench/cluster.py [--scale 1] [--executors 3] [--runs 3] [--executor-timeout 15] [--kill-queries 5,9,18]

Prints two Markdown tables:
1. per-query and total times: gateway + N remote `sluice-executor`s (--slots
   each), gateway with 2 in-process executors (--slots each), DataFusion
   embedded (PyPI `datafusion`), with ratios against DataFusion;
2. for each kill query: fault-free time, time with one of the N remote
   executors SIGKILLed at half-way, the slowdown ratio, seconds from the
   kill until the gateway saw the executor leave, and how many of the job's
   partitions ran again (the job recovers inside itself: only lost work is
   redone).
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from common import TARGET, Gateway, datafusion_context, generate_tpch
from tpch_queries import QUERIES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from sluice_fixtures import Executor, basic, scrape  # noqa: E402

SECRET = "bench-cluster-secret-0123456789abcdef"


def executor_binary():
    explicit = os.environ.get("SLUICE_EXECUTOR_BIN")
    if explicit:
        return explicit
    for profile in ("release", "debug"):
        p = TARGET / profile / "sluice-executor"
        if p.exists():
            return str(p)
    raise SystemExit("build the executor first: cargo build --release -p sluice-executor")


def timed(conn, sql):
    t0 = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return time.perf_counter() - t0, rows


def best(conn, sql, runs):
    """The best time of `runs` runs, and the rows of the last."""
    times = []
    for _ in range(runs):
        t, rows = timed(conn, sql)
        times.append(t)
    return min(times), rows


def connect(g):
    conn = psycopg.connect(g.dsn(), autocommit=True)
    return conn


def register_tables(conn, paths):
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    conn.execute("SET search_path TO 'bench'")
    for t, p in paths.items():
        loc = f"{p}/" if p.is_dir() else str(p)
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS {t} STORED AS PARQUET LOCATION '{loc}'")


def http_executors(g):
    return {e["id"] for e in json.loads(g.http("/executors"))}


def job_work(g):
    """(partitions, partition runs) of the gateway's finished jobs so far."""
    out = scrape(f"127.0.0.1:{g.http_port}", basic("sluice", "bench"))
    return out.get("sluice_job_partitions_total", 0.0), out.get("sluice_job_partition_runs_total", 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--executors", type=int, default=3)
    ap.add_argument("--executor-timeout", type=int, default=15)
    ap.add_argument("--kill-queries", default="5,9,18")
    ap.add_argument("--slots", type=int, default=2, help="task slots of each executor, remote and in-process")
    ap.add_argument("--runs", type=int, default=3, help="timings are the best of this many runs")
    args = ap.parse_args()
    import sluice_fixtures

    # Executor.start reads this module global (release binary if built).
    sluice_fixtures.EXECUTOR_BINARY = Path(executor_binary())

    with tempfile.TemporaryDirectory(prefix="sluice-cluster-bench-") as d:
        d = Path(d)
        data = d / "data"
        paths = generate_tpch(args.scale, data)
        import datafusion

        ctx = datafusion_context(paths)

        results = {q: {} for q in QUERIES}
        answers = {}

        # 1. Remote executors.
        os.environ["SLUICE_CLUSTER_SECRET"] = SECRET
        remote = Gateway(
            d / "gw-remote", "--local-executors", "0", "--scheduler-listen", "127.0.0.1:0",
            "--target-partitions", str(args.slots * args.executors), "--executor-timeout", str(args.executor_timeout),
        )
        with remote as g:
            sched = json.loads((d / "gw-remote-listen.json").read_text())["scheduler"]
            execs = []

            def add_executor(n):
                e = Executor(d, f"exec{n}", sched, SECRET, extra=["--task-slots", str(args.slots)])
                e.start()
                execs.append(e)
                return e

            for n in range(1, args.executors + 1):
                add_executor(n)
            while len(http_executors(g)) < args.executors:
                time.sleep(0.2)
            with connect(g) as conn:
                register_tables(conn, paths)
                for q, sql in QUERIES.items():
                    t, rows = best(conn, sql, args.runs)
                    results[q]["remote"] = t
                    answers[q] = rows

                kills = []
                n = args.executors
                for q in [int(x) for x in args.kill_queries.split(",")]:
                    sql = QUERIES[q]
                    base, expected = timed(conn, sql)
                    live = [e for e in execs if e.alive()]
                    before = http_executors(g)
                    work_before = job_work(g)
                    out = {}

                    def run():
                        out["t"], out["rows"] = timed(conn2, sql)

                    with connect(g) as conn2:
                        conn2.execute("SET search_path TO 'bench'")
                        th = threading.Thread(target=run)
                        th.start()
                        time.sleep(base / 2)
                        victim = max(live, key=lambda e: e.metrics().get("sluice_executor_tasks_running", 0))
                        victim.kill()
                        killed = time.perf_counter()
                        seen = None
                        while th.is_alive() or seen is None:
                            if seen is None and victim.id not in http_executors(g):
                                seen = time.perf_counter() - killed
                            if not th.is_alive() and seen is None and time.perf_counter() - killed > 120:
                                break
                            time.sleep(0.1)
                        th.join()
                    same = out["rows"] == expected
                    parts, runs = (a - b for a, b in zip(job_work(g), work_before))
                    kills.append((q, base, out["t"], seen, same, parts, runs))
                    n += 1
                    add_executor(n)
                    while len(http_executors(g)) < args.executors:
                        time.sleep(0.2)
            for e in execs:
                e.stop()
        os.environ.pop("SLUICE_CLUSTER_SECRET", None)

        # 2. In-process executors.
        with Gateway(d / "gw-local", "--local-executors", "2", "--local-executor-slots", str(args.slots)) as g, connect(g) as conn:
            register_tables(conn, paths)
            for q, sql in QUERIES.items():
                t, rows = best(conn, sql, args.runs)
                results[q]["local"] = t
                results[q]["same"] = rows == answers[q]

        # 3. DataFusion embedded.
        for q, sql in QUERIES.items():
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                ctx.sql(sql).collect()
                times.append(time.perf_counter() - t0)
            results[q]["df"] = min(times)

        print(f"\nTPC-H SF{args.scale}, best of {args.runs} runs each, same files. Remote: gateway + {args.executors} sluice-executor ({args.slots} slots each); "
              f"local: gateway with 2 in-process executors ({args.slots} slots each); DataFusion {datafusion.__version__} embedded.\n")
        print("| query | remote ms | in-process ms | DataFusion ms | remote/in-process | remote/DataFusion | same rows |")
        print("|---|---|---|---|---|---|---|")
        tr = tl = td = 0.0
        for q, r in results.items():
            tr, tl, td = tr + r["remote"], tl + r["local"], td + r["df"]
            print(f"| Q{q} | {r['remote'] * 1000:.0f} | {r['local'] * 1000:.0f} | {r['df'] * 1000:.0f} | "
                  f"{r['remote'] / r['local']:.2f} | {r['remote'] / r['df']:.2f} | {'yes' if r['same'] else 'NO'} |")
        print(f"| total | {tr * 1000:.0f} | {tl * 1000:.0f} | {td * 1000:.0f} | {tr / tl:.2f} | {tr / td:.2f} | |")

        print(f"\nOne of {args.executors} remote executors SIGKILLed at half-way (--executor-timeout {args.executor_timeout}).\n")
        print("| query | fault-free s | with kill s | slowdown | kill → loss seen s | partitions run again | identical result |")
        print("|---|---|---|---|---|---|---|")
        for q, base, t, seen, same, parts, runs in kills:
            seen_s = f"{seen:.1f}" if seen is not None else "n/a"
            print(f"| Q{q} | {base:.2f} | {t:.2f} | {t / base:.2f} | {seen_s} | {runs - parts:.0f} of {parts:.0f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
