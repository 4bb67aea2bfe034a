"""The session plan cache: a repeated statement is planned once, and never
answers from a stale plan: after DDL, a GRANT/REVOKE or a new row policy,
after SET search_path, and never across users (psycopg over the extended
protocol, unnamed and named statements)."""

import psycopg
import pytest

from sluice_fixtures import Gateway, admin


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("plans") / "data").start()
    yield g
    g.stop()


def cache(g):
    m = g.metrics()
    return m.get('sluice_plan_cache_total{result="hit"}', 0), m.get('sluice_plan_cache_total{result="miss"}', 0)


def rows(conn, sql, prepare=False):
    return sorted(conn.execute(sql, prepare=prepare).fetchall())


def test_repeated_statements_are_planned_once(gw):
    admin(gw, "CREATE TABLE pc_once AS SELECT * FROM (VALUES (1), (2), (3)) AS v(a)")
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("SELECT sum(a) FROM pc_once WHERE a > %s", (0,)).fetchall()
        hits, misses = cache(gw)
        for i in range(20):
            got = conn.execute("SELECT sum(a) FROM pc_once WHERE a > %s", (i % 3,), prepare=False).fetchone()[0]
            assert got == [6, 5, 3][i % 3]
        hits2, misses2 = cache(gw)
    assert hits2 - hits >= 20, (hits, hits2)
    assert misses2 - misses <= 1, (misses, misses2)


@pytest.mark.parametrize("prepare", [False, True], ids=["unnamed", "named"])
def test_ddl_replans(gw, prepare):
    t = f"pc_ddl_{int(prepare)}"
    admin(gw, f"CREATE TABLE {t} AS SELECT 1 AS a")
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        sql = f"SELECT * FROM {t}"
        assert rows(conn, sql, prepare) == [(1,)]
        assert rows(conn, sql, prepare) == [(1,)]
        # Another session drops and re-creates the table with other columns.
        admin(gw, f"DROP TABLE {t}", f"CREATE TABLE {t} AS SELECT 'x' AS b, 2 AS c")
        if prepare:
            # A statement prepared with other columns is refused, as
            # PostgreSQL refuses it; the text prepared anew reads the new ones.
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql, prepare=True)
            assert e.value.sqlstate == "0A000"
            assert "cached plan must not change result type" in str(e.value)
            # psycopg keeps using its statement: go on in a new session.
            conn.close()
            conn = psycopg.connect(gw.dsn(), autocommit=True)
        cur = conn.execute(sql, prepare=prepare)
        assert [d.name for d in cur.description] == ["b", "c"]
        assert cur.fetchall() == [("x", 2)]
        # An INSERT is a catalog change too: the new rows are read.
        admin(gw, f"INSERT INTO {t} VALUES ('y', 3)")
        assert rows(conn, sql, prepare) == [("x", 2), ("y", 3)]
        admin(gw, f"DROP TABLE {t}")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql, prepare=prepare)
        assert e.value.sqlstate == "42P01"
        conn.close()


def test_privileges_and_policies_apply_to_cached_plans(gw):
    admin(
        gw,
        "CREATE TABLE pc_sales AS SELECT * FROM (VALUES ('EU', 1), ('US', 2), ('EU', 3)) AS v(region, amount)",
        "CREATE USER pc_bob PASSWORD 'bob-secret'",
        "GRANT SELECT ON pc_sales TO pc_bob",
    )
    sql = "SELECT region, amount FROM pc_sales"
    with psycopg.connect(gw.dsn(), autocommit=True) as root, psycopg.connect(
        gw.dsn(user="pc_bob", password="bob-secret"), autocommit=True
    ) as bob:
        everything = [("EU", 1), ("EU", 3), ("US", 2)]
        assert rows(root, sql) == everything and rows(root, sql) == everything
        assert rows(bob, sql) == everything and rows(bob, sql) == everything
        # A policy for bob: his next run of the same text sees only his rows;
        # the administrator's cached plan still sees all.
        admin(gw, "CREATE POLICY eu ON pc_sales FOR SELECT TO pc_bob USING (region = 'EU')")
        assert rows(bob, sql) == [("EU", 1), ("EU", 3)]
        assert rows(bob, sql, prepare=True) == [("EU", 1), ("EU", 3)]
        assert rows(root, sql) == everything
        # A revoke ends his access at once, for unnamed and named statements.
        admin(gw, "REVOKE SELECT ON pc_sales FROM pc_bob")
        for prepare in (False, True):
            with pytest.raises(psycopg.Error) as e:
                bob.execute(sql, prepare=prepare)
            assert e.value.sqlstate in ("42P01", "42501"), e.value
        assert rows(root, sql) == everything


def test_search_path_changes_what_a_name_means(gw):
    admin(
        gw,
        "CREATE SCHEMA pc_one",
        "CREATE SCHEMA pc_two",
        "CREATE TABLE pc_one.t AS SELECT 'one' AS s",
        "CREATE TABLE pc_two.t AS SELECT 'two' AS s",
    )
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = pc_one")
        assert rows(conn, "SELECT s FROM t") == [("one",)]
        assert rows(conn, "SELECT s FROM t") == [("one",)]
        conn.execute("SET search_path = pc_two")
        assert rows(conn, "SELECT s FROM t") == [("two",)]
        conn.execute("RESET ALL")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT s FROM t")
        assert e.value.sqlstate == "42P01"
