"""Chaos: TPC-H queries on a gateway with remote executors while a killer
takes executors down at random moments, every answer compared with the
fault-free one.

    python bench/chaos.py [--scale 1] [--executors 3] [--kills 100] [--queries 3,5,9,10,18,21]

The killer sleeps a random 0.5-4 s, then picks a random live executor and
SIGKILLs it (one time in five it sends SIGTERM instead: a drain); a new
executor replaces it `--restart-after` seconds later. Queries run one after
the other the whole time. Prints one Markdown table: kills, queries, queries
that lost an executor while they ran (and those that lost two), wrong
answers, failed queries, and the partitions the gateway ran again.
"""

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from cluster import SECRET, executor_binary, http_executors, job_work, register_tables
from common import Gateway, generate_tpch
from tpch_queries import QUERIES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from sluice_fixtures import Executor  # noqa: E402


class Killer(threading.Thread):
    """Kills a random live executor every 0.5-4 s; replaces it later."""

    def __init__(self, base, sched, count, restart_after, target, seed):
        super().__init__(daemon=True)
        self.base, self.sched, self.restart_after, self.target = base, sched, restart_after, target
        self.rng = random.Random(seed)
        self.execs, self.n = [], 0
        self.kills = self.terms = 0
        self.stop_at = count
        self.done = threading.Event()
        self.times = []  # when each kill landed
        self.lock = threading.Lock()

    def add(self):
        self.n += 1
        e = Executor(self.base, f"exec{self.n}", self.sched, SECRET,
                     extra=["--task-slots", "2", "--drain-timeout", "10", "--heartbeat-interval", "1"])
        e.start()
        with self.lock:
            self.execs.append(e)

    def live(self):
        with self.lock:
            return [e for e in self.execs if e.alive()]

    def run(self):
        pending = []  # (restart at, count)
        while self.kills + self.terms < self.stop_at:
            time.sleep(self.rng.uniform(0.5, 4.0))
            now = time.time()
            for due in [p for p in pending if p <= now]:
                pending.remove(due)
                self.add()
            live = self.live()
            if len(live) < 2:  # keep one executor to make progress
                continue
            victim = self.rng.choice(live)
            if self.rng.random() < 0.2:
                victim.signal(signal.SIGTERM)
                self.terms += 1
            else:
                victim.kill()
                self.kills += 1
            self.times.append(time.time())
            pending.append(time.time() + self.restart_after)
        while len(self.live()) < self.target:
            self.add()
        self.done.set()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--executors", type=int, default=3)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--queries", default="3,5,9,10,18,21")
    ap.add_argument("--restart-after", type=float, default=3.0)
    ap.add_argument("--executor-timeout", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a session setting for the queries' connection (repeatable)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, data); stop at the first wrong answer")
    args = ap.parse_args()
    import sluice_fixtures

    sluice_fixtures.EXECUTOR_BINARY = Path(executor_binary())
    queries = [int(q) for q in args.queries.split(",")]
    os.environ["SLUICE_CLUSTER_SECRET"] = SECRET

    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="sluice-chaos-")) as d:
        d = Path(d)
        paths = generate_tpch(args.scale, d / "data")
        gw = Gateway(
            d / "gw", "--local-executors", "0", "--scheduler-listen", "127.0.0.1:0",
            "--target-partitions", str(2 * args.executors),
            "--executor-timeout", str(args.executor_timeout), "--capacity-wait", "30",
        )
        with gw as g:
            sched = json.loads((d / "gw-listen.json").read_text())["scheduler"]
            killer = Killer(d, sched, args.kills, args.restart_after, args.executors, args.seed)
            for _ in range(args.executors):
                killer.add()
            while len(http_executors(g)) < args.executors:
                time.sleep(0.2)
            conn = psycopg.connect(g.dsn(), autocommit=True)
            register_tables(conn, paths)
            for setting in args.set:
                name, value = setting.split("=", 1)
                conn.execute(f"SET {name} = '{value}'")
            expected = {q: conn.execute(QUERIES[q]).fetchall() for q in queries}
            work0 = job_work(g)

            stats = {"queries": 0, "hit": 0, "hit twice": 0, "wrong": 0, "failed": 0}
            errors = []
            started = time.time()
            killer.start()
            i = 0
            while not killer.done.is_set():
                q = queries[i % len(queries)]
                i += 1
                t0 = time.time()
                try:
                    rows = conn.execute(QUERIES[q]).fetchall()
                    ok = True
                except psycopg.Error as e:
                    ok, rows = False, None
                    errors.append(f"Q{q}: {e}".splitlines()[0])
                    if conn.closed:
                        conn = psycopg.connect(g.dsn(), autocommit=True)
                        conn.execute("SET search_path TO 'bench'")
                t1 = time.time()
                hits = sum(1 for k in killer.times if t0 <= k <= t1)
                stats["queries"] += 1
                stats["hit"] += hits >= 1
                stats["hit twice"] += hits >= 2
                if not ok:
                    stats["failed"] += 1
                elif rows != expected[q]:
                    stats["wrong"] += 1
                    diff = next((i for i, (a, b) in enumerate(zip(rows, expected[q])) if a != b), min(len(rows), len(expected[q])))
                    got = rows[diff] if diff < len(rows) else None
                    want = expected[q][diff] if diff < len(expected[q]) else None
                    errors.append(f"Q{q}: wrong answer ({len(rows)} rows, expected {len(expected[q])}; {hits} kill(s) "
                                  f"during it; first difference at row {diff}: {got} instead of {want})")
                    if args.keep:
                        killer.stop_at = 0
                        break
            elapsed = time.time() - started
            parts, runs = (a - b for a, b in zip(job_work(g), work0))
            conn.close()  # the gateway's SIGTERM waits for pg sessions (issue 11)
            for e in killer.live():
                e.stop()

        print(f"\nChaos: TPC-H SF{args.scale} queries {args.queries} on {args.executors} remote executors "
              f"(2 slots each), seed {args.seed}, {elapsed:.0f} s.\n")
        print("| SIGKILL | SIGTERM | queries | hit by a kill | hit twice | wrong answers | failed | partitions run again |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {killer.kills} | {killer.terms} | {stats['queries']} | {stats['hit']} | {stats['hit twice']} | "
              f"{stats['wrong']} | {stats['failed']} | {runs - parts:.0f} of {parts:.0f} |")
        for e in errors[:10]:
            print(f"- {e}")
        if stats["wrong"] or stats["failed"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
