"""Shared helpers for the benchmark scripts: start a gateway binary on port 0."""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/sluice-target"))


def generate_tpch(scale, data: Path):
    """Writes TPC-H Parquet files with tpchgen-cli; returns {table: path}."""
    from tpch_queries import TABLES

    subprocess.run([str(Path(sys.executable).parent / "tpchgen-cli"), "parquet", "-s", str(scale), "--output-dir", str(data)], check=True)
    paths = {}
    for t in TABLES:
        p = data / f"{t}.parquet"
        paths[t] = p if p.exists() else data / t
    return paths


def datafusion_context(paths):
    """DataFusion embedded (PyPI `datafusion`) over the same files."""
    import datafusion

    ctx = datafusion.SessionContext()
    for t, p in paths.items():
        ctx.register_parquet(t, str(p))
    return ctx


def gateway_binary():
    explicit = os.environ.get("SLUICE_GATEWAY_BIN")
    if explicit:
        return Path(explicit)
    for profile in ("release", "debug"):
        p = TARGET / profile / "sluice-gateway"
        if p.exists():
            return p
    raise SystemExit("build the gateway first: cargo build --release -p sluice-gateway")


def write_wide(d: Path, n: int):
    """`d/wide/data.parquet`: n rows of (id, label, value), zstd, 1M-row groups."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (d / "wide").mkdir()
    chunk = 1_000_000
    schema = pa.schema([("id", pa.int64()), ("label", pa.string()), ("value", pa.float64())])
    with pq.ParquetWriter(d / "wide" / "data.parquet", schema, compression="zstd") as w:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            ids = pa.array(range(start, stop), pa.int64())
            labels = pa.array([f"label-{i % 1000:04d}-xxxxxxxx" for i in range(start, stop)])
            w.write_table(pa.table({"id": ids, "label": labels, "value": pc.multiply(ids.cast(pa.float64()), 0.5)}))


class RssPeak:
    """The gateway's RSS sampled every 20 ms inside the block: `baseline`
    (after a second's rest, on entry), `peak` and `elapsed` seconds."""

    def __init__(self, gateway):
        self.gateway = gateway

    def __enter__(self):
        time.sleep(1)
        self.baseline = self.peak = self.gateway.rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        self._t0 = time.monotonic()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.gateway.rss_bytes())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self._t0
        self._stop.set()
        self._thread.join()
        return False


class Gateway:
    def __init__(self, data_dir: Path, *extra):
        self.data_dir = data_dir
        self.extra = list(extra)
        self.proc = None

    def __enter__(self):
        listen = self.data_dir.parent / (self.data_dir.name + "-listen.json")
        listen.unlink(missing_ok=True)
        env = dict(os.environ, SLUICE_ADMIN_PASSWORD="bench", SLUICE_LOG=os.environ.get("SLUICE_BENCH_LOG", "warn"))
        self.proc = subprocess.Popen(
            [str(gateway_binary()), "--data-dir", str(self.data_dir), "--pg-listen", "127.0.0.1:0",
             "--flight-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--listen-file", str(listen), *self.extra],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.data_dir.parent / "gateway.log", "ab"),
        )
        for _ in range(1200):
            if listen.exists():
                addrs = json.loads(listen.read_text())
                self.pg_port = int(addrs["pg"].rsplit(":", 1)[1])
                self.http_port = int(addrs["http"].rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                raise SystemExit("gateway exited during start-up")
            time.sleep(0.1)
        raise SystemExit("gateway did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def dsn(self):
        return f"host=127.0.0.1 port={self.pg_port} user=sluice password=bench dbname=sluice"

    def http(self, path):
        """GET `path` on the HTTP port as the administrator (text)."""
        from sluice_fixtures import basic, http_get

        return http_get(f"http://127.0.0.1:{self.http_port}{path}", basic("sluice", "bench"))

    def store_requests(self):
        """Object-store requests so far, by kind (from /metrics)."""
        import re

        text = self.http("/metrics")
        out = {}
        for m in re.finditer(r'sluice_object_store_requests_total\{kind="(\w+)"\} (\S+)', text):
            out[m.group(1)] = float(m.group(2))
        return out

    def rss_bytes(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def pgbench(host, port, user, dbname, seconds, logdir: Path, password=None):
    """(TPS, average ms, p99 ms) of `SELECT 1`, extended protocol, 16 clients."""
    script = logdir / "select1.sql"
    script.write_text("SELECT 1;\n")
    env = dict(os.environ, PGPASSWORD=password or "")
    for old in logdir.glob("pgbench_log*"):
        old.unlink()
    out = subprocess.run(
        ["pgbench", "-n", "-M", "extended", "-c", "16", "-j", "2", "-T", str(seconds), "-f", str(script),
         "-l", "--log-prefix", str(logdir / "pgbench_log"), "-h", host, "-p", str(port), "-U", user, dbname],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    tps = float(next(line for line in out.splitlines() if line.startswith("tps = ")).split()[2])
    # Per-transaction log lines: client_id transaction_no time_us script_no time_epoch time_us_part
    latencies = sorted(
        int(line.split()[2]) / 1000
        for f in logdir.glob("pgbench_log*")
        for line in f.read_text().splitlines()
    )
    p99 = latencies[int(len(latencies) * 0.99)]
    return tps, statistics.fmean(latencies), p99
