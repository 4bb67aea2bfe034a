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

from sluice_fixtures import Gateway, admin, refusal_sqlstate


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("access") / "data").start()
    yield g
    g.stop()


def login(g, user, password, **kw):
    return psycopg.connect(g.dsn(user=user, password=password, **kw), autocommit=True)


def refusal(g, user, password):
    """The FATAL message of a refused psycopg login (libpq hides its SQLSTATE)."""
    with pytest.raises(psycopg.OperationalError) as e:
        login(g, user, password).close()
    return str(e.value).split("FATAL:", 1)[-1].strip()


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


# --- authorization -----------------------------------------------------------


@pytest.fixture(scope="module")
def shop(gw):
    admin(
        gw,
        "CREATE SCHEMA shop",
        "CREATE TABLE shop.orders AS SELECT * FROM (VALUES ('EU', 10, 'a@x.eu'), ('EU', 20, 'b@x.eu'), ('US', 5, 'c@x.us'), ('US', 0, 'd@x.us')) AS t(region, amount, email)",
        "CREATE TABLE shop.secret AS SELECT 1 AS s",
        "CREATE VIEW shop.totals AS SELECT region, sum(amount) AS total FROM shop.orders GROUP BY region",
        "CREATE USER ann PASSWORD 'a'",
        "CREATE USER ben PASSWORD 'b'",
        "CREATE USER cat PASSWORD 'c'",
        "CREATE USER dan PASSWORD 'd'",
        "GRANT USAGE ON SCHEMA shop TO ann, ben, cat, dan",
        "GRANT SELECT ON shop.orders TO ann",
        "GRANT SELECT (region, amount) ON shop.orders TO ben",
        "GRANT SELECT ON shop.orders TO cat",
        "CREATE POLICY eu_only ON shop.orders FOR SELECT TO cat USING (region = 'EU')",
        # As in PostgreSQL, once a table has policies a role none applies to
        # sees no rows (its owner and superusers see all).
        "CREATE POLICY everything ON shop.orders TO ann, ben USING (true)",
        "ALTER TABLE shop.orders ALTER COLUMN email SET MASK ('***@' || split_part(email, '@', 2)) FOR cat",
        "GRANT SELECT ON shop.totals TO dan",
    )
    return gw


def rows(g, user, password, sql):
    with login(g, user, password) as c:
        return c.execute(sql).fetchall()


def test_ungranted_tables_do_not_exist(shop):
    with login(shop, "dan", "d") as c:
        with pytest.raises(psycopg.errors.UndefinedTable) as hidden:
            c.execute("SELECT * FROM shop.orders")
        with pytest.raises(psycopg.errors.UndefinedTable) as missing:
            c.execute("SELECT * FROM shop.nope")
        assert str(hidden.value).replace("orders", "X") == str(missing.value).replace("nope", "X")
        for sql in ["DROP TABLE shop.orders", "INSERT INTO shop.orders VALUES ('EU', 1, 'e')", "COPY shop.orders TO STDOUT"]:
            with pytest.raises(psycopg.errors.UndefinedTable):
                c.execute(sql)
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM system.executors")
        listed = c.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'shop'").fetchall()
        assert listed == [("shop", "totals")]
        classes = c.execute("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop'").fetchall()
        assert classes == [("totals",)]
    env = dict(os.environ, PGPASSWORD="d")
    r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(shop.pg_port), "-U", "dan", "-d", "sluice", "-c", r"\dt shop.*"], env=env, capture_output=True, text=True, timeout=60)
    assert "secret" not in r.stdout and "orders" not in r.stdout, r.stdout

    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(shop.flight_uri(), db_kwargs={"username": "dan", "password": "d"}, autocommit=True) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = {t["table_name"] for cat in objects for s in cat["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []}
    assert "totals" in names and "orders" not in names and "secret" not in names, names


def test_privileges_decide_each_statement(shop):
    assert rows(shop, "ann", "a", "SELECT count(*) FROM shop.orders") == [(4,)]
    with login(shop, "ann", "a") as c:
        for sql in [
            "INSERT INTO shop.orders VALUES ('EU', 1, 'e')",
            "DROP TABLE shop.orders",
            "CREATE TABLE shop.mine AS SELECT 1 AS x",
            "GRANT SELECT ON shop.orders TO dan",
            "MSCK REPAIR TABLE shop.orders",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
    admin(shop, "GRANT CREATE ON SCHEMA shop TO ann")
    with login(shop, "ann", "a") as c:
        c.execute("CREATE TABLE shop.mine AS SELECT 1 AS x")
        c.execute("INSERT INTO shop.mine VALUES (2)")
        c.execute("GRANT SELECT ON shop.mine TO dan")
    assert rows(shop, "dan", "d", "SELECT x FROM shop.mine ORDER BY x") == [(1,), (2,)]
    with login(shop, "ann", "a") as c:
        c.execute("DROP TABLE shop.mine")


def test_column_grants_hide_the_other_columns(shop):
    assert rows(shop, "ben", "b", "SELECT region, sum(amount) FROM shop.orders GROUP BY region ORDER BY region") == [("EU", 30), ("US", 5)]
    with login(shop, "ben", "b") as c:
        assert [d.name for d in c.execute("SELECT * FROM shop.orders").description] == ["region", "amount"]
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT email FROM shop.orders")


def test_row_filters_and_masks(shop):
    got = rows(shop, "cat", "c", "SELECT region, amount, email FROM shop.orders ORDER BY amount")
    assert got == [("EU", 10, "***@x.eu"), ("EU", 20, "***@x.eu")]
    # the user's own predicates run on the visible rows only
    assert rows(shop, "cat", "c", "SELECT count(*) FROM shop.orders WHERE region = 'US'") == [(0,)]
    assert rows(shop, "cat", "c", "SELECT count(*) FROM shop.orders WHERE email LIKE 'a@%'") == [(0,)]
    # ... and cannot fail on the hidden ones: amount 0 (division by zero)
    # and 'US' (a failed cast) are only in rows cat may not see
    assert rows(shop, "cat", "c", "SELECT amount FROM shop.orders WHERE 100 / amount > 1 ORDER BY amount") == [(10,), (20,)]
    assert rows(shop, "cat", "c", "SELECT count(*) FROM shop.orders WHERE CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INT) = 1") == [(2,)]
    with login(shop, "cat", "c") as c:
        plan = "\n".join(r[1] for r in c.execute("EXPLAIN SELECT * FROM shop.orders WHERE 100 / amount > 1").fetchall())
    assert "SecureBoundaryExec" in plan, plan
    # the owner of the table sees everything
    assert rows(shop, "sluice", shop.password, "SELECT count(*) FROM shop.orders") == [(4,)]
    # policies of one role combine with OR
    admin(shop, "CREATE POLICY small ON shop.orders TO cat USING (amount < 6)")
    assert rows(shop, "cat", "c", "SELECT region, amount FROM shop.orders ORDER BY amount") == [("US", 0), ("US", 5), ("EU", 10), ("EU", 20)]
    admin(shop, "DROP POLICY small ON shop.orders")
    # a role without any applicable policy sees no rows
    admin(shop, "CREATE USER eve PASSWORD 'e'", "GRANT SELECT ON shop.orders TO eve")
    assert rows(shop, "eve", "e", "SELECT count(*) FROM shop.orders") == [(0,)]


def test_views_run_with_their_owners_rights(shop):
    # dan may read the view, not the table under it
    assert rows(shop, "dan", "d", "SELECT region, total FROM shop.totals ORDER BY region") == [("EU", 30), ("US", 5)]
    admin(shop, "GRANT CREATE ON SCHEMA shop TO cat")
    with login(shop, "cat", "c") as c:
        c.execute("CREATE VIEW shop.cat_view AS SELECT region, amount FROM shop.orders")
        c.execute("GRANT SELECT ON shop.cat_view TO dan")
    # cat's view reads with cat's rights: its row filter applies for dan too
    assert rows(shop, "dan", "d", "SELECT count(*) FROM shop.cat_view") == [(2,)]
    admin(shop, "REVOKE SELECT ON shop.orders FROM cat")
    with login(shop, "dan", "d") as c:
        with pytest.raises(psycopg.Error):
            c.execute("SELECT count(*) FROM shop.cat_view").fetchall()
