"""JWT bearer tokens of an identity provider: as the Flight bearer token and
as the Postgres password, with the key's algorithms pinned and exp, nbf,
iss and aud checked."""

import time

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluice_fixtures import Gateway, refusal_sqlstate

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
    g = Gateway(d / "data", extra=["--jwt-secret-file", str(d / "secret"), "--jwt-issuer", "https://idp.example",
                                   "--jwt-audience", "sluice", "--jwt-roles-claim", "groups"]).start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE TABLE t AS SELECT 1 AS x")
        c.execute("CREATE TABLE sales_claims AS SELECT 7 AS amount")
        c.execute("CREATE ROLE analysts")
        c.execute("GRANT SELECT ON sales_claims TO analysts")
        c.execute("CREATE ROLE root_group SUPERUSER")
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


def test_roles_claim_grants_the_catalogs_roles_for_the_session(hs):
    def token(groups=None):
        extra = {} if groups is None else {"groups": groups}
        return jwt.encode(claims("carol", **extra), SECRET, algorithm="HS256")

    listed = "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'sales_claims'"
    # carol is unknown to the catalog: the claim alone brings analysts' rights
    with pg_login(hs, "carol", token(["analysts"])) as c:
        assert c.execute("SELECT amount FROM sales_claims").fetchone() == (7,)
        assert c.execute(listed).fetchone() == (1,)
    assert flight_rows(hs, token("other analysts"), "SELECT amount FROM sales_claims") == [(7,)]
    # without the claim, or with roles the catalog does not know, nothing
    for groups in [None, [], ["nosuchrole"], "nosuchrole"]:
        with pg_login(hs, "carol", token(groups)) as c:
            with pytest.raises(psycopg.errors.UndefinedTable):
                c.execute("SELECT amount FROM sales_claims")
            assert c.execute(listed).fetchone() == (0,)
    # a claimed superuser role does not make a superuser (the attribute is
    # not inherited, as in PostgreSQL)
    with pg_login(hs, "carol", token(["root_group"])) as c:
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM system.executors")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE ROLE sneaky")


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


# --- JWK Set (--jwt-jwks-url) -------------------------------------------


def b64url_uint(n):
    return jwt.utils.base64url_encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def rsa_jwk(private, kid):
    numbers = private.public_key().public_numbers()
    return {"kty": "RSA", "use": "sig", "kid": kid, "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}


class JwksServer:
    """Serves a JWK Set on 127.0.0.1 and counts the requests."""

    def __init__(self, keys, status=200):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.keys, self.status, self.fetches = list(keys), status, 0
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    server.fetches += 1
                    status, body = server.status, json.dumps({"keys": server.keys}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def assert_flight_refused(g, token):
    with pytest.raises(Exception) as e:
        flight_rows(g, token, "SELECT 1")
    assert "nauthenticated" in str(e.value) or "UNAUTHENTICATED" in str(e.value), e.value


def test_jwks_keys_rotate_and_unknown_kids_refetch_rate_limited(tmp_path):
    import hashlib
    import hmac
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = JwksServer([rsa_jwk(k1, "k1")])
    g = Gateway(tmp_path / "data", extra=["--jwt-jwks-url", jwks.url]).start()
    try:
        assert jwks.fetches == 1, "fetched at start"
        token = jwt.encode(claims("carol"), k1, algorithm="RS256", headers={"kid": "k1"})
        assert flight_rows(g, token, "SELECT current_user AS u") == [("carol",)]
        with pg_login(g, "carol", token) as c:
            assert c.execute("SELECT current_user").fetchone() == ("carol",)
        assert jwks.fetches == 1, "a known kid needs no fetch"

        # rotation: a token naming the new key refetches the set
        jwks.keys.append(rsa_jwk(k2, "k2"))
        rotated = jwt.encode(claims("dave"), k2, algorithm="PS256", headers={"kid": "k2"})
        with pg_login(g, "dave", rotated) as c:
            assert c.execute("SELECT current_user").fetchone() == ("dave",)
        assert flight_rows(g, rotated, "SELECT current_user AS u") == [("dave",)]
        assert jwks.fetches == 2

        # a burst of unknown kids (one user each: pg throttles per user and address)
        before = jwks.fetches

        def unknown(i):
            t = jwt.encode(claims(f"u_burst_{i}"), k1, algorithm="RS256", headers={"kid": secrets.token_hex(8)})
            with pytest.raises(psycopg.OperationalError):
                pg_login(g, f"u_burst_{i}", t).close()

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(unknown, range(50)))
        assert jwks.fetches - before <= 2, jwks.fetches - before

        # a key outside the set, under a kid of the set and under its own
        for i, kid in enumerate(["k1", "k3"]):
            forged = jwt.encode(claims(f"u_outsider_{i}"), outsider, algorithm="RS256", headers={"kid": kid})
            assert refusal_sqlstate(g, f"u_outsider_{i}", forged) == "28P01"
        assert_flight_refused(g, jwt.encode(claims("eve"), outsider, algorithm="RS256", headers={"kid": "k1"}))

        # key confusion: HS256 under k1's kid, MACed with k1's public key PEM
        pem = k1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        head = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').decode()
        body = jwt.utils.base64url_encode(('{"sub":"carol","exp":%d}' % (time.time() + 300)).encode()).decode()
        sig = jwt.utils.base64url_encode(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()).decode()
        assert refusal_sqlstate(g, "carol", f"{head}.{body}.{sig}") == "28P01"
        assert_flight_refused(g, f"{head}.{body}.{sig}")
        # and the real key still works
        assert flight_rows(g, token, "SELECT current_user AS u") == [("carol",)]
    finally:
        g.stop()
        jwks.close()


def test_jwks_unreachable_at_start_is_fetched_later(tmp_path):
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = JwksServer([rsa_jwk(k1, "k1")], status=503)
    g = Gateway(tmp_path / "data", extra=["--jwt-jwks-url", jwks.url, "--jwt-jwks-ttl", "60"]).start()
    try:
        assert jwks.fetches == 1
        jwks.status = 200
        token = jwt.encode(claims("carol"), k1, algorithm="RS256", headers={"kid": "k1"})
        assert flight_rows(g, token, "SELECT current_user AS u") == [("carol",)]
        assert jwks.fetches == 2
    finally:
        g.stop()
        jwks.close()
    import subprocess

    from sluice_fixtures import BINARY

    r = subprocess.run([str(BINARY), "--data-dir", str(tmp_path / "d"), "--jwt-jwks-url", "ftp://idp/jwks"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--jwt-jwks-url" in r.stderr, r.stderr
