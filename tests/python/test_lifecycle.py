"""Server lifecycle over real clients: SIGTERM drains (idle pg sessions get
57P01, running statements finish, /readyz turns unready, exit 0), the
shutdown timeout cancels what still runs, Flight's connection cap answers
RESOURCE_EXHAUSTED, and a listener that cannot start stops start-up."""

import socket
import subprocess
import threading
import time
import urllib.error

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest

from sluice_fixtures import BINARY, PASSWORD, USER, Gateway, http_get


def readyz(g):
    try:
        return http_get(f"http://127.0.0.1:{g.http_port}/readyz")
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode()}"


def run_in_thread(fn):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_sigterm_finishes_running_statements_and_closes_idle_sessions(workdir):
    g = Gateway(workdir / "life-drain", extra=["--shutdown-timeout", "20"]).start()
    try:
        idle = psycopg.connect(g.dsn(), autocommit=True)
        assert idle.execute("select 1").fetchone() == (1,)
        busy = psycopg.connect(g.dsn(), autocommit=True)
        assert readyz(g).startswith("ready")

        t, box = run_in_thread(lambda: busy.execute("select pg_sleep(3), 42 as answer").fetchone())
        time.sleep(1.0)
        started = time.monotonic()
        g.proc.terminate()

        # unready at once, while the statement still runs
        deadline = time.monotonic() + 2
        while not readyz(g).startswith("503") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readyz(g) == "503 not ready: shutting down\n"
        # no new sessions
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(g.dsn(), connect_timeout=3)
        # the idle session was told why it ends
        with pytest.raises(psycopg.Error) as e:
            idle.execute("select 1")
        assert "terminating connection due to administrator command" in str(e.value)

        t.join(30)
        assert "error" not in box, box.get("error")
        assert box["value"] == (None, 42), "the running statement finished"
        assert g.proc.wait(30) == 0
        assert time.monotonic() - started < 10
        # the session that ran it is closed after its statement
        with pytest.raises(psycopg.Error):
            busy.execute("select 1")
    finally:
        g.stop()


def test_shutdown_timeout_cancels_statements_still_running(workdir):
    g = Gateway(workdir / "life-timeout", extra=["--shutdown-timeout", "1"]).start()
    try:
        busy = psycopg.connect(g.dsn(), autocommit=True)
        t, box = run_in_thread(lambda: busy.execute("select pg_sleep(60)").fetchone())
        time.sleep(1.0)
        started = time.monotonic()
        g.proc.terminate()
        t.join(30)
        # cancelled as PostgreSQL's fast shutdown does: FATAL 57P01
        assert isinstance(box.get("error"), psycopg.errors.AdminShutdown), box
        assert g.proc.wait(30) == 0
        assert time.monotonic() - started < 8
    finally:
        g.stop()


def test_idle_session_sees_57p01(workdir):
    g = Gateway(workdir / "life-57p01").start()
    try:
        c = psycopg.connect(g.dsn(), autocommit=True)
        assert c.execute("select 7").fetchone() == (7,)
        g.proc.terminate()
        assert g.proc.wait(30) == 0
        with pytest.raises(psycopg.Error) as e:
            c.execute("select 1")
        assert e.value.sqlstate == "57P01", (type(e.value), e.value.sqlstate, str(e.value))
        assert isinstance(e.value, psycopg.errors.AdminShutdown)
    finally:
        g.stop()


def test_flight_connection_cap_answers_resource_exhausted(workdir):
    g = Gateway(workdir / "life-flight-cap", extra=["--flight-max-connections", "1"]).start()
    try:
        kw = {"db_kwargs": {"username": USER, "password": PASSWORD}, "autocommit": True}
        first = flight_sql.connect(g.flight_uri(), **kw)
        with first.cursor() as c:
            c.execute("select 1 as x")
            assert c.fetchall() == [(1,)]
        with pytest.raises(Exception) as e:
            second = flight_sql.connect(g.flight_uri(), **kw)
            with second.cursor() as c:
                c.execute("select 1")
        assert "too many connections" in str(e.value)
        assert "ResourceExhausted" in str(e.value)  # ADBC names the gRPC code so
        first.close()
        # the place is free again
        time.sleep(0.5)
        third = flight_sql.connect(g.flight_uri(), **kw)
        with third.cursor() as c:
            c.execute("select 2 as x")
            assert c.fetchall() == [(2,)]
        third.close()
    finally:
        g.stop()


def test_a_listener_that_cannot_start_stops_start_up(workdir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        r = subprocess.run(
            [str(BINARY), "--data-dir", str(workdir / "life-bind"), "--pg-listen", "127.0.0.1:0",
             "--flight-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, env={"SLUICE_ADMIN_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
        )
    finally:
        taken.close()
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"sluice-gateway: --flight-listen: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)", r.stderr


def test_json_logs_are_one_object_per_line(workdir):
    import json

    g = Gateway(workdir / "life-json", extra=["--log-format", "json"]).start()
    try:
        g.psql("select 1")
    finally:
        g.stop()
    lines = [l for l in g.log_path.read_text().splitlines() if l.strip()]
    records = [json.loads(l) for l in lines]
    assert any("sluice gateway ready" in r.get("message", "") for r in records)
    assert all({"timestamp", "level"} <= r.keys() for r in records)
    # statement lines carry the connection span (user, session id)
    spans = [r["span"] for r in records if "span" in r]
    assert any(s.get("name") == "pg_connection" and s.get("user") == USER for s in spans), spans[:5]
