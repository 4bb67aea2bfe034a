"""Start-up and operations: bad flags stop with one line naming the flag,
loopback trust without a password, TLS, the demo data set, HTTP endpoints."""

import socket
import subprocess
import urllib.request

import psycopg
import pytest

from sluice_fixtures import BINARY, Gateway


def start_fails(tmp_path, *args, env_password=None):
    import os

    env = dict(os.environ)
    env.pop("SLUICE_ADMIN_PASSWORD", None)
    if env_password:
        env["SLUICE_ADMIN_PASSWORD"] = env_password
    r = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("sluice-gateway:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_port_in_use_names_the_flag(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        line = start_fails(tmp_path, "--data-dir", str(tmp_path / "d"), "--pg-listen", f"127.0.0.1:{port}", "--flight-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
        assert "--pg-listen" in line and "in use" in line.lower(), line
    finally:
        s.close()


def test_bad_urls_and_dirs_name_the_flag(tmp_path):
    line = start_fails(tmp_path, "--data-dir", str(tmp_path / "d"), "--catalog", "mysql://nope")
    assert "--catalog" in line, line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = start_fails(tmp_path, "--data-dir", str(blocker / "sub"))
    assert "--data-dir" in line, line
    line = start_fails(tmp_path, "--data-dir", str(tmp_path / "d"), "--warehouse", "s4://bucket/x")
    assert "--warehouse" in line, line


def test_no_password_refuses_non_loopback_listen(tmp_path):
    line = start_fails(tmp_path, "--data-dir", str(tmp_path / "d"), "--pg-listen", "0.0.0.0:0")
    assert "--pg-listen" in line and "SLUICE_ADMIN_PASSWORD" in line, line


def test_loopback_trust_without_password(workdir):
    g = Gateway(workdir / "trust", password=None).start()
    try:
        assert g.psql("select 1").strip() == "1"
        with psycopg.connect(g.dsn(), autocommit=True) as conn:
            assert conn.execute("select current_user").fetchone() is not None
        import adbc_driver_flightsql.dbapi as flight_sql

        with flight_sql.connect(g.flight_uri(), db_kwargs={"username": "sluice", "password": ""}, autocommit=True) as c, c.cursor() as cur:
            cur.execute("select 5 as five")
            assert cur.fetchone() == (5,)
        # only the bootstrap user is trusted
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(g.dsn(user="mallory"))
    finally:
        g.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_on_both_ports(workdir, tls_files):
    cert, key = tls_files
    g = Gateway(workdir / "tls", extra=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        with psycopg.connect(g.dsn(sslmode="require"), autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("select 3").fetchone() == (3,)
        with psycopg.connect(g.dsn(sslmode="verify-full", sslrootcert=str(cert), host="localhost"), autocommit=True) as conn:
            assert conn.execute("select 4").fetchone() == (4,)
        import adbc_driver_flightsql.dbapi as flight_sql

        with flight_sql.connect(
            f"grpc+tls://localhost:{g.flight_port}",
            db_kwargs={"username": "sluice", "password": g.password, "adbc.flight.sql.client_option.tls_root_certs": cert.read_text()},
            autocommit=True,
        ) as c, c.cursor() as cur:
            cur.execute("select 6 as six")
            assert cur.fetchone() == (6,)
    finally:
        g.stop()


def test_demo_data_and_http_endpoints(workdir):
    g = Gateway(workdir / "demo", extra=["--demo", "--demo-scale", "0.01"]).start(timeout=300)
    try:
        n = int(g.psql("select count(*) from tpch.lineitem").strip())
        assert 55_000 < n < 65_000, n
        q1 = g.psql(
            "select l_returnflag, l_linestatus, count(*) from tpch.lineitem where l_shipdate <= date '1998-09-02' "
            "group by l_returnflag, l_linestatus order by 1, 2"
        ).split()
        assert [r.split("|")[:2] for r in q1] == [["A", "F"], ["N", "F"], ["N", "O"], ["R", "F"]]
        assert sum(int(r.split("|")[2]) for r in q1) < n
        base = f"http://127.0.0.1:{g.http_port}"
        assert urllib.request.urlopen(base + "/healthz").status == 200
        assert urllib.request.urlopen(base + "/readyz").status == 200
        metrics = g.http("/metrics")
        assert "sluice_executors_alive 2" in metrics, metrics
        assert 'sluice_statements_total{outcome="ok",protocol="pg"}' in metrics, metrics
        import json

        listed = json.loads(g.http("/executors"))
        assert len(listed) == 2 and all(e["task_slots"] == 2 for e in listed), listed
        rows = g.psql("select executor_id, task_slots, last_heartbeat is not null from system.executors order by 1").split()
        assert sorted(r.split("|")[0] for r in rows) == sorted(e["id"] for e in listed)
        assert all(r.endswith("|2|t") for r in rows), rows
        # a restart does not write the demo data again
        g.stop()
        g.start()
        assert int(g.psql("select count(*) from tpch.lineitem").strip()) == n
    finally:
        g.stop()
