"""Fixtures that start a real sluice-gateway binary on port 0 and hand its
addresses to real clients (psql, psycopg, asyncpg, ADBC Flight SQL)."""

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/sluice-target"))
BINARY = Path(os.environ.get("SLUICE_GATEWAY_BIN", TARGET / "debug" / "sluice-gateway"))
PASSWORD = "test-password-Ω"
USER = "sluice"


def basic(user, password):
    """An HTTP Basic `Authorization` header value."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()


def http_get(url, authorization=None, context=None):
    """GET `url` (optionally with an `Authorization` value); the body as text."""
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    with urllib.request.urlopen(req, timeout=5, context=context) as r:
        return r.read().decode()


def refusal_sqlstate(g, user, password):
    """The SQLSTATE of a refused asyncpg login to gateway `g`."""
    import asyncio

    import asyncpg

    async def attempt():
        c = await asyncpg.connect(host="127.0.0.1", port=g.pg_port, user=user, password=password, database="sluice")
        await c.close()

    with pytest.raises(asyncpg.PostgresError) as e:
        asyncio.run(attempt())
    return e.value.sqlstate


def admin(g, *sql):
    """Runs `sql` statements on gateway `g` as the administrator (autocommit)."""
    import psycopg

    with psycopg.connect(g.dsn(), autocommit=True) as c:
        for s in sql:
            c.execute(s)


def scrape(addr, authorization=None):
    """Prometheus samples of http://addr/metrics: {"name{labels}": value}."""
    text = http_get(f"http://{addr}/metrics", authorization)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Gateway:
    """A gateway process; restartable on the same data dir."""

    def __init__(self, data_dir: Path, password: str | None = PASSWORD, extra=(), local_executors=2, env=None, gc_grace=0):
        self.data_dir = data_dir
        self.gc_grace = gc_grace
        self.password = password
        self.extra = list(extra)
        self.local_executors = local_executors
        self.env = dict(env or {})
        self.scheduler = None
        self.proc = None
        self.pg_port = self.flight_port = self.http_port = None
        self.log_path = data_dir.parent / f"{data_dir.name}-gateway.log"

    def start(self, timeout=120):
        listen = self.data_dir.parent / f"{self.data_dir.name}-listen.json"
        if listen.exists():
            listen.unlink()
        env = dict(os.environ)
        env.pop("SLUICE_ADMIN_PASSWORD", None)
        if self.password is not None:
            env["SLUICE_ADMIN_PASSWORD"] = self.password
        env.setdefault("SLUICE_LOG", "info")
        env.update(self.env)
        args = [
            str(BINARY),
            "--data-dir", str(self.data_dir),
            "--pg-listen", "127.0.0.1:0",
            "--flight-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--listen-file", str(listen),
            "--local-executors", str(self.local_executors),
            "--local-executor-slots", "2",
            "--gc-grace", str(self.gc_grace),
            *self.extra,
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if listen.exists():
                addrs = json.loads(listen.read_text())
                self.pg_port = int(addrs["pg"].rsplit(":", 1)[1])
                self.flight_port = int(addrs["flight"].rsplit(":", 1)[1])
                self.http_port = int(addrs["http"].rsplit(":", 1)[1])
                self.scheduler = addrs["scheduler"]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError("gateway did not start in time")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def dsn(self, **kw):
        parts = {"host": "127.0.0.1", "port": self.pg_port, "user": USER, "dbname": "sluice"}
        if self.password is not None:
            parts["password"] = self.password
        parts.update(kw)
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def psql(self, *sql_or_args, check=True, input=None):
        """Runs real psql against the gateway; returns stdout."""
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", USER, "-d", "sluice", "-A", "-t", "-F", "|"]
        for s in sql_or_args:
            cmd += ["-c", s]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, input=input, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"psql failed ({r.returncode}): {r.stderr}")
        return r if not check else r.stdout

    def flight_uri(self):
        return f"grpc://127.0.0.1:{self.flight_port}"

    def http(self, path):
        """GET `path` on the HTTP port as the administrator."""
        return http_get(f"http://127.0.0.1:{self.http_port}{path}", basic(USER, self.password))

    def metrics(self):
        """Prometheus samples of /metrics: {"name{labels}": value}."""
        return scrape(f"127.0.0.1:{self.http_port}", basic(USER, self.password))

    def store_requests(self, kind):
        """Object-store requests of `kind` (LIST, GET, HEAD, PUT, DELETE) so far."""
        return self.metrics().get(f'sluice_object_store_requests_total{{kind="{kind}"}}', 0.0)


EXECUTOR_BINARY = Path(os.environ.get("SLUICE_EXECUTOR_BIN", TARGET / "debug" / "sluice-executor"))


class Executor:
    """A sluice-executor process on loopback, registered with `scheduler`."""

    def __init__(self, base: Path, name: str, scheduler: str, secret: str | None, extra=(), env=None):
        self.base = base
        self.env = dict(env or {})
        self.name = name
        self.scheduler = scheduler
        self.secret = secret
        self.extra = list(extra)
        self.proc = None
        self.id = self.flight_port = self.http_port = None
        self.log_path = base / f"{name}.log"

    def start(self, wait=True, timeout=60):
        listen = self.base / f"{self.name}-listen.json"
        listen.unlink(missing_ok=True)
        env = dict(os.environ)
        env.pop("SLUICE_CLUSTER_SECRET", None)
        if self.secret is not None:
            env["SLUICE_CLUSTER_SECRET"] = self.secret
        env.setdefault("SLUICE_LOG", "info")
        env.update(self.env)
        args = [
            str(EXECUTOR_BINARY),
            "--scheduler", self.scheduler,
            "--bind", "127.0.0.1",
            "--port", "0",
            "--http-listen", "127.0.0.1:0",
            "--work-dir", str(self.base / f"{self.name}-work"),
            "--listen-file", str(listen),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        if not wait:
            return self
        deadline = time.time() + timeout
        while time.time() < deadline:
            if listen.exists():
                info = json.loads(listen.read_text())
                self.id, self.flight_port, self.http_port = info["id"], info["flight"], info["http"]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"executor exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError("executor did not start in time")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def metrics(self):
        """Samples of /metrics by name, summed over their labels."""
        out = {}
        for name, value in scrape(f"127.0.0.1:{self.http_port}").items():
            key = name.split("{", 1)[0]
            out[key] = out.get(key, 0.0) + value
        return out


@pytest.fixture(scope="session")
def workdir():
    keep = os.environ.get("SLUICE_TEST_KEEP")
    if keep:
        # Debugging: keep logs and data of the run in this directory.
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="sluice-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def gateway(workdir):
    g = Gateway(workdir / "gw").start()
    yield g
    g.stop()
    if os.environ.get("SLUICE_TEST_SHOW_LOG"):
        print(g.log_path.read_text()[-20000:])


@pytest.fixture(scope="session")
def lake(workdir):
    """Parquet and CSV files with known contents."""
    base = workdir / "lake"
    (base / "sales").mkdir(parents=True)
    (base / "stores").mkdir(parents=True)
    (base / "events").mkdir(parents=True)
    # sales: two parquet files, 1000 rows
    for part in range(2):
        n = 500
        ids = list(range(part * n, (part + 1) * n))
        t = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "store_id": pa.array([i % 5 for i in ids], pa.int32()),
                "amount": pa.array([round(i * 1.5, 2) for i in ids], pa.float64()),
                "item": pa.array([f"item-{i % 7}" for i in ids], pa.string()),
            }
        )
        pq.write_table(t, base / "sales" / f"part-{part}.parquet")
    stores = pa.table({"store_id": pa.array(range(5), pa.int32()), "city": ["Oslo", "Lima", "Pune", "Kyiv", "Faro"]})
    pacsv.write_csv(stores, base / "stores" / "stores.csv")
    # hive-partitioned parquet written by another engine
    for day in ("2026-01-01", "2026-01-02"):
        d = base / "events" / f"day={day}"
        d.mkdir()
        pq.write_table(pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "kind": ["a", "b", "a"]}), d / "data.parquet")
    return base
