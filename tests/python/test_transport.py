"""Transport over the wire: --require-tls refuses plaintext on every port,
the HTTP port answers only probes without credentials, and a certificate
swapped under a running gateway is presented to new connections after
SIGHUP while open sessions carry on."""

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error

import psycopg
import pytest

from sluice_fixtures import USER, Gateway, basic, http_get


def make_cert(d, name):
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def presented(port):
    """The certificate (DER) a TLS handshake on `port` presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(s) as t:
        return t.getpeercert(binary_form=True)


def der(cert_path):
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def http_status(url, authorization=None, context=None):
    try:
        http_get(url, authorization, context)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = tmp_path_factory.mktemp("transport")
    first, second = make_cert(d, "first"), make_cert(d, "second")
    live_cert, live_key = d / "live.crt", d / "live.key"
    shutil.copy(first[0], live_cert)
    shutil.copy(first[1], live_key)
    token = d / "metrics-token"
    token.write_text("prometheus-scrape-token-0123456789\n")
    g = Gateway(
        d / "data",
        extra=["--tls-cert", str(live_cert), "--tls-key", str(live_key), "--require-tls",
               "--metrics-token-file", str(token)],
    ).start()
    with psycopg.connect(g.dsn(sslmode="require"), autocommit=True) as c:
        c.execute("CREATE USER plain PASSWORD 'plain-pw'")
    g.files = {"first": first, "second": second, "live": (live_cert, live_key), "dir": d}
    yield g
    g.stop()


def test_plaintext_is_refused_on_every_port(secure):
    g = secure
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(g.dsn(sslmode="disable"))
    assert "requires TLS" in str(e.value), e.value
    import asyncio

    import asyncpg

    async def plain():
        await asyncpg.connect(host="127.0.0.1", port=g.pg_port, user=USER, password=g.password,
                              database="sluice", ssl=False)

    with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError) as e:
        asyncio.run(plain())
    assert e.value.sqlstate == "28000" and "TLS" in str(e.value)
    # the refusal comes before any password is asked for: nothing was sent in clear
    with psycopg.connect(g.dsn(sslmode="require"), autocommit=True) as c:
        assert c.pgconn.ssl_in_use and c.execute("SELECT 1").fetchone() == (1,)
    # Flight without TLS gets no gRPC answer at all
    import pyarrow.flight as fl

    client = fl.FlightClient(f"grpc://127.0.0.1:{g.flight_port}")
    with pytest.raises(fl.FlightError):
        client.authenticate_basic_token(USER, g.password, fl.FlightCallOptions(timeout=5))
    # HTTP without TLS likewise
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        http_get(f"http://127.0.0.1:{g.http_port}/healthz")


def test_http_port_answers_probes_only_without_credentials(secure):
    g = secure
    # whichever certificate is live now
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    base = f"https://127.0.0.1:{g.http_port}"
    assert http_get(base + "/healthz", context=ctx) == "ok\n"
    assert http_status(base + "/readyz", context=ctx) == 200
    for path in ["/metrics", "/executors"]:
        assert http_status(base + path, context=ctx) == 401, path
        assert http_status(base + path, "Bearer not-the-token", ctx) == 401, path
        assert http_status(base + path, basic(USER, "wrong"), ctx) == 401, path
        assert http_status(base + path, basic("plain", "plain-pw"), ctx) == 403, path
        assert http_status(base + path, "Bearer prometheus-scrape-token-0123456789", ctx) == 200, path
        assert http_status(base + path, basic(USER, g.password), ctx) == 200, path
    assert "sluice_statements_total" in http_get(base + "/metrics", basic(USER, g.password), ctx)


def test_certificate_reloads_on_sighup_without_dropping_sessions(secure):
    g = secure
    (first_cert, _), (second_cert, second_key) = g.files["first"], g.files["second"]
    live_cert, live_key = g.files["live"]
    old = psycopg.connect(g.dsn(sslmode="verify-full", sslrootcert=str(first_cert), host="localhost"), autocommit=True)
    assert old.execute("SELECT 1").fetchone() == (1,)
    assert presented(g.flight_port) == der(first_cert)
    assert presented(g.http_port) == der(first_cert)
    shutil.copy(second_cert, live_cert)
    shutil.copy(second_key, live_key)
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while presented(g.flight_port) != der(second_cert) and time.time() < deadline:
        time.sleep(0.1)
    assert presented(g.flight_port) == der(second_cert)
    assert presented(g.http_port) == der(second_cert)
    # the open session carries on, on its old certificate
    assert old.execute("SELECT 2").fetchone() == (2,)
    old.close()
    # new pg sessions get the new certificate: the old root no longer verifies it
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(g.dsn(sslmode="verify-full", sslrootcert=str(first_cert), host="localhost"))
    with psycopg.connect(g.dsn(sslmode="verify-full", sslrootcert=str(second_cert), host="localhost"),
                         autocommit=True) as c:
        assert c.execute("SELECT 3").fetchone() == (3,)
    # a broken file on the next SIGHUP leaves the current certificate serving
    live_key.write_text("not a key")
    g.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert g.alive() and presented(g.flight_port) == der(second_cert)
    with psycopg.connect(g.dsn(sslmode="verify-full", sslrootcert=str(second_cert), host="localhost"),
                         autocommit=True) as c:
        assert c.execute("SELECT 4").fetchone() == (4,)
    shutil.copy(second_key, live_key)
    assert "not reloaded" in g.log_path.read_text()


def test_plain_gateway_guards_metrics_and_executors(workdir):
    g = Gateway(workdir / "plainhttp").start()
    try:
        base = f"http://127.0.0.1:{g.http_port}"
        assert http_status(base + "/healthz") == 200 and http_status(base + "/readyz") == 200
        for path in ["/metrics", "/executors"]:
            assert http_status(base + path) == 401, path
            assert http_status(base + path, basic(USER, "wrong")) == 401, path
        assert "sluice_executors_alive" in g.http("/metrics")
    finally:
        g.stop()


def test_require_tls_without_a_certificate_does_not_start(tmp_path):
    from test_startup import start_fails

    line = start_fails(tmp_path, "--data-dir", str(tmp_path / "d"), "--require-tls", env_password="pw")
    assert "--require-tls" in line and "--tls-cert" in line, line


def test_connections_over_the_cap_are_told_53300(tmp_path):
    cert, key = make_cert(tmp_path, "cap")
    g = Gateway(tmp_path / "data", extra=["--max-connections", "2", "--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        held = [psycopg.connect(g.dsn(sslmode="disable"), autocommit=True) for _ in range(2)]
        for mode in ["disable", "require"]:
            with pytest.raises(psycopg.OperationalError) as e:
                psycopg.connect(g.dsn(sslmode=mode))
            assert "too many clients" in str(e.value), (mode, e.value)
        import asyncio

        import asyncpg

        async def third():
            await asyncpg.connect(host="127.0.0.1", port=g.pg_port, user=USER, password=g.password, database="sluice")

        with pytest.raises(asyncpg.exceptions.TooManyConnectionsError) as e:
            asyncio.run(third())
        assert e.value.sqlstate == "53300"
        # the held sessions keep working, and a slot freed is a slot usable
        assert held[0].execute("SELECT 1").fetchone() == (1,)
        held.pop().close()
        deadline = time.time() + 10
        while True:
            try:
                with psycopg.connect(g.dsn(sslmode="require"), autocommit=True) as c:
                    assert c.execute("SELECT 2").fetchone() == (2,)
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        for c in held:
            c.close()
    finally:
        g.stop()
