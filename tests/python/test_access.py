"""Users, roles and logins over the wire: the admin creates users in SQL,
they log in with SCRAM (psql, psycopg, asyncpg) and Flight basic auth, and
every refusal looks the same whether the user exists or not."""

import asyncio
import os
import subprocess
import time

import asyncpg
import psycopg
import pytest

from sluice_fixtures import Gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("access") / "data").start()
    yield g
    g.stop()


def admin(g, *sql):
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        for s in sql:
            c.execute(s)


def login(g, user, password, **kw):
    return psycopg.connect(g.dsn(user=user, password=password, **kw), autocommit=True)


def refusal(g, user, password):
    """The FATAL message of a refused psycopg login (libpq hides its SQLSTATE)."""
    with pytest.raises(psycopg.OperationalError) as e:
        login(g, user, password).close()
    return str(e.value).split("FATAL:", 1)[-1].strip()


def refusal_sqlstate(g, user, password):
    """The SQLSTATE of a refused asyncpg login."""

    async def attempt():
        c = await asyncpg.connect(host="127.0.0.1", port=g.pg_port, user=user, password=password, database="sluice")
        await c.close()

    with pytest.raises(asyncpg.PostgresError) as e:
        asyncio.run(attempt())
    return e.value.sqlstate


def test_created_user_logs_in_with_scram_on_every_client(gw):
    admin(gw, "CREATE USER alice WITH PASSWORD 'wonder-land'")
    with login(gw, "alice", "wonder-land") as c:
        assert c.execute("select current_user").fetchone() == ("alice",)
    env = dict(os.environ, PGPASSWORD="wonder-land")
    r = subprocess.run(
        ["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(gw.pg_port), "-U", "alice", "-d", "sluice", "-c", "select 40 + 2"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr

    async def via_asyncpg():
        c = await asyncpg.connect(host="127.0.0.1", port=gw.pg_port, user="alice", password="wonder-land", database="sluice")
        try:
            return await c.fetchval("select current_user")
        finally:
            await c.close()

    assert asyncio.run(via_asyncpg()) == "alice"

    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(gw.flight_uri(), db_kwargs={"username": "alice", "password": "wonder-land"}, autocommit=True) as c, c.cursor() as cur:
        cur.execute("select current_user as u")
        assert cur.fetchone() == ("alice",)
    with pytest.raises(Exception) as e:
        flight_sql.connect(gw.flight_uri(), db_kwargs={"username": "alice", "password": "nope"}, autocommit=True).cursor().execute("select 1")
    assert "UNAUTHENTICATED" in str(e.value) or "Unauthenticated" in str(e.value), e.value


def test_wrong_password_and_unknown_user_read_the_same(gw):
    admin(gw, "CREATE USER bob PASSWORD 'builder'")
    wrong = refusal(gw, "bob", "not-it")
    unknown = refusal(gw, "nobody-here", "not-it")
    assert wrong == 'password authentication failed for user "bob"', wrong
    assert unknown == 'password authentication failed for user "nobody-here"', unknown
    assert refusal_sqlstate(gw, "bob", "not-it") == refusal_sqlstate(gw, "nobody-here", "x") == "28P01"


def test_nologin_role_cannot_log_in_and_password_changes_apply(gw):
    admin(gw, "CREATE ROLE auditors", "CREATE USER carol PASSWORD 'first'")
    assert refusal_sqlstate(gw, "auditors", "x") == "28P01"
    with login(gw, "carol", "first"):
        pass
    admin(gw, "ALTER USER carol PASSWORD 'second'")
    assert "password authentication failed" in refusal(gw, "carol", "first")
    with login(gw, "carol", "second"):
        pass
    admin(gw, "DROP USER carol")
    assert "password authentication failed" in refusal(gw, "carol", "second")


def test_passwords_are_stored_as_scram_verifiers_only(gw):
    admin(gw, "CREATE USER dave PASSWORD 'plain-text-secret-123'")
    blobs = b""
    for root, _, files in os.walk(gw.data_dir):
        for f in files:
            blobs += open(os.path.join(root, f), "rb").read()
    assert b"plain-text-secret-123" not in blobs
    assert b"plain-text-secret-123" not in gw.log_path.read_bytes()


def test_failures_are_throttled_for_that_user_only(gw):
    admin(gw, "CREATE USER erin PASSWORD 'right'")
    for _ in range(5):
        refusal(gw, "erin", "wrong")
    # five failures in a row: the next answer for erin from this address
    # waits 1.6 s, even for the right password (a right guess must not
    # answer sooner than a wrong one) ...
    t = time.monotonic()
    with login(gw, "erin", "right"):
        pass
    assert time.monotonic() - t > 1.0
    # ... and the success forgets the failures; other users are not slowed.
    t = time.monotonic()
    with login(gw, "erin", "right"), login(gw, "alice", "wonder-land"):
        pass
    assert time.monotonic() - t < 1.0
    log = gw.log_path.read_text()
    failures = [l for l in log.splitlines() if "authentication failed" in l and "erin" in l]
    assert len(failures) == 5 and "127.0.0.1" in failures[0], log[-2000:]
    assert "wrong" not in "".join(failures)


def test_only_superusers_manage_roles(gw):
    admin(gw, "CREATE USER frank PASSWORD 'f'")
    with login(gw, "frank", "f") as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE USER mallory PASSWORD 'm'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DROP USER alice")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("GRANT auditors TO frank")
        c.execute("ALTER USER frank PASSWORD 'g'")  # one's own password: allowed
    with login(gw, "frank", "g"):
        pass
