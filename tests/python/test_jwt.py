"""JWT bearer tokens of an identity provider: as the Flight bearer token and
as the Postgres password, with the key's algorithms pinned and exp, nbf,
iss and aud checked."""

import time

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluice_fixtures import Gateway

SECRET = b"a-shared-secret-of-at-least-32-bytes!"


def claims(user="alice", **kw):
    now = int(time.time())
    c = {"sub": user, "iss": "https://idp.example", "aud": "sluice", "exp": now + 300, "iat": now}
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def hs(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt-hs")
    (d / "secret").write_bytes(SECRET + b"\n")
    g = Gateway(d / "data", extra=["--jwt-secret-file", str(d / "secret"), "--jwt-issuer", "https://idp.example", "--jwt-audience", "sluice"]).start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE TABLE t AS SELECT 1 AS x")
        c.execute("CREATE USER alice PASSWORD 'pw'")
        c.execute("GRANT SELECT ON t TO alice")
        c.execute("CREATE ROLE nologin")
    yield g
    g.stop()


def pg_login(g, user, password):
    return psycopg.connect(g.dsn(user=user, password=password), autocommit=True)


def flight_rows(g, token, sql):
    import adbc_driver_flightsql.dbapi as flight_sql
    from adbc_driver_flightsql import DatabaseOptions

    with flight_sql.connect(g.flight_uri(), db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + token}, autocommit=True) as c, c.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_jwt_is_a_postgres_password_and_a_flight_bearer(hs):
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pg_login(hs, "alice", token) as c:
        assert c.execute("SELECT current_user, x FROM t").fetchone() == ("alice", 1)
    # the stored password still works on the same port
    with pg_login(hs, "alice", "pw") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert flight_rows(hs, token, "SELECT current_user AS u, x FROM t") == [("alice", 1)]
    # a user the catalog does not know logs in with PUBLIC's rights
    other = jwt.encode(claims("bob"), SECRET, algorithm="HS384")
    with pg_login(hs, "bob", other) as c:
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM t")


@pytest.mark.parametrize(
    "case",
    ["expired", "not_yet", "issuer", "audience", "other_user", "alg_none", "tampered", "wrong_key", "nologin"],
)
def test_bad_tokens_are_refused(hs, case):
    # One user per case: failures of one (user, address) pair slow that
    # pair's next attempts down.
    user = f"u_{case}"
    with psycopg.connect(hs.dsn(), autocommit=True) as c:
        c.execute(f"CREATE USER {user}")
    good = claims(user)
    if case == "expired":
        token = jwt.encode(claims(user, exp=int(time.time()) - 600), SECRET, algorithm="HS256")
    elif case == "not_yet":
        token = jwt.encode(claims(user, nbf=int(time.time()) + 600), SECRET, algorithm="HS256")
    elif case == "issuer":
        token = jwt.encode(claims(user, iss="https://evil.example"), SECRET, algorithm="HS256")
    elif case == "audience":
        token = jwt.encode(claims(user, aud="other"), SECRET, algorithm="HS256")
    elif case == "other_user":
        token = jwt.encode(claims("mallory"), SECRET, algorithm="HS256")
    elif case == "alg_none":
        token = jwt.encode(good, None, algorithm="none")
    elif case == "tampered":
        head, _, sig = jwt.encode(good, SECRET, algorithm="HS256").split(".")
        body = jwt.utils.base64url_encode(('{"sub":"%s","iss":"https://idp.example","aud":"sluice","exp":9999999999}' % user).encode()).decode()
        token = f"{head}.{body}.{sig}"
    elif case == "wrong_key":
        token = jwt.encode(good, b"another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    else:
        user = "nologin"
        token = jwt.encode(claims("nologin"), SECRET, algorithm="HS256")
    with pytest.raises(psycopg.OperationalError) as e:
        pg_login(hs, user, token).close()
    assert "password authentication failed" in str(e.value)
    # Flight failures are throttled by address alone (the user is in the
    # token): a few cases suffice there.
    if case in ("expired", "alg_none", "tampered"):
        with pytest.raises(Exception) as e:
            flight_rows(hs, token, "SELECT 1")
        assert "nauthenticated" in str(e.value) or "UNAUTHENTICATED" in str(e.value), e.value


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_public_keys_pin_their_algorithms(tmp_path, kind):
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alg = "RS256"
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        alg = "ES256"
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "key.pem").write_bytes(pem)
    g = Gateway(tmp_path / "data", extra=["--jwt-public-key-file", str(tmp_path / "key.pem")]).start()
    try:
        token = jwt.encode(claims("carol"), private, algorithm=alg)
        assert flight_rows(g, token, "SELECT current_user AS u") == [("carol",)]
        with pg_login(g, "carol", token) as c:
            assert c.execute("SELECT current_user").fetchone() == ("carol",)
        # key confusion: the public key's bytes used as an HMAC secret
        import hashlib
        import hmac

        head = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
        body = jwt.utils.base64url_encode(('{"sub":"carol","exp":%d}' % (time.time() + 300)).encode()).decode()
        sig = jwt.utils.base64url_encode(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()).decode()
        with pytest.raises(psycopg.OperationalError):
            pg_login(g, "carol", f"{head}.{body}.{sig}").close()
    finally:
        g.stop()


def test_bad_key_files_stop_start_up(tmp_path):
    import subprocess

    from sluice_fixtures import BINARY

    (tmp_path / "short").write_bytes(b"too-short")
    r = subprocess.run([str(BINARY), "--data-dir", str(tmp_path / "d"), "--jwt-secret-file", str(tmp_path / "short")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--jwt-secret-file" in r.stderr and "32 bytes" in r.stderr, r.stderr
    (tmp_path / "bad.pem").write_text("not a key")
    r = subprocess.run([str(BINARY), "--data-dir", str(tmp_path / "d"), "--jwt-public-key-file", str(tmp_path / "bad.pem")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--jwt-public-key-file" in r.stderr, r.stderr
