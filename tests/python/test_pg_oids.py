"""pg_catalog OIDs: the same object keeps its OID across gateway restarts
and across gateways on one catalog, whatever else was created meanwhile, and
the OIDs agree across pg_class, pg_namespace, pg_attribute, pg_database and
regclass casts. A dropped and re-created table gets a new OID, as in
PostgreSQL."""

import psycopg

from sluice_fixtures import Gateway

OIDS = """
SELECT n.nspname, c.relname, c.oid::int8, c.relnamespace::int8, n.oid::int8
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('oid_a', 'oid_b', 'default', 'pg_catalog')
  AND c.relname IN ('t1', 't2', 'v1', 'pg_class', 'pg_type')
ORDER BY 1, 2
"""


def oids(g):
    with psycopg.connect(g.dsn(), autocommit=True) as conn:
        rows = conn.execute(OIDS).fetchall()
        attrs = conn.execute(
            "SELECT c.relname, a.attname, a.attrelid::int8 FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'oid_a' AND c.relname IN ('t1', 'v1') ORDER BY 1, a.attnum"
        ).fetchall()
        regclass = conn.execute("SELECT 'oid_a.t1'::regclass::oid::int8 AS a, 'oid_b.t2'::regclass::oid::int8 AS b").fetchone()
        database = conn.execute("SELECT oid::int8 FROM pg_catalog.pg_database WHERE datname = current_database()").fetchone()
        # pg_catalog's tables keep PostgreSQL's OIDs, which its static rows use.
        system = conn.execute(
            "SELECT c.relname, c.oid::int8 FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_type t ON t.typrelid = c.oid "
            "WHERE t.typname IN ('pg_class', 'pg_type') ORDER BY 1"
        ).fetchall()
        assert system == [("pg_class", 1259), ("pg_type", 1247)]
    return rows, attrs, regclass, database


def test_oids_survive_restarts_and_other_ddl(workdir):
    g = Gateway(workdir / "oids").start()
    try:
        g.psql(
            "CREATE SCHEMA oid_a",
            "CREATE SCHEMA oid_b",
            "CREATE TABLE oid_a.t1 AS SELECT 1 AS x, 'a' AS y",
            "CREATE TABLE oid_b.t2 AS SELECT 2 AS z",
            "CREATE VIEW oid_a.v1 AS SELECT x FROM oid_a.t1",
        )
        rows, attrs, regclass, database = oids(g)
        by_name = {(r[0], r[1]): r for r in rows}
        t1, t2 = by_name[("oid_a", "t1")], by_name[("oid_b", "t2")]
        # Mutually consistent: regclass, pg_attribute, pg_namespace.
        assert regclass == (t1[2], t2[2])
        assert attrs == [("t1", "x", t1[2]), ("t1", "y", t1[2]), ("v1", "x", by_name[("oid_a", "v1")][2])]
        assert by_name[("pg_catalog", "pg_class")][3] == 11
        assert len({r[2] for r in rows}) == len(rows), "relation OIDs are unique"
        assert all(r[2] >= 16384 for r in rows if r[0] != "pg_catalog")
        assert by_name[("pg_catalog", "pg_class")][2] == 1259

        # Objects created before them in name order, and a restart.
        g.psql("CREATE SCHEMA oid_0", "CREATE TABLE oid_0.t0 AS SELECT 0 AS w", "CREATE TABLE oid_a.t0 AS SELECT 0 AS w")
        g.stop()
        g.start()
        assert oids(g) == (rows, attrs, regclass, database)

        # A second gateway on the same data directory's catalog agrees.
        g.stop()
        other = Gateway(workdir / "oids").start()
        try:
            assert oids(other) == (rows, attrs, regclass, database)
            other.psql("DROP TABLE oid_b.t2", "CREATE TABLE oid_b.t2 AS SELECT 3 AS z")
            again = dict(((r[0], r[1]), r) for r in oids(other)[0])
            assert again[("oid_b", "t2")][2] != t2[2], "a re-created table is a new object"
            assert again[("oid_a", "t1")] == t1
        finally:
            other.stop()
    finally:
        g.stop()


def test_regclass_casts_resolve_as_postgresql_does(gateway):
    """`'name'::regclass` finds pg_catalog's relations before the current
    schema's, and its column is named `regclass` (two in one select list are
    named after their text)."""
    gateway.psql("DROP TABLE IF EXISTS pg_lookalike", "CREATE TABLE pg_lookalike AS SELECT 1 AS a")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        cur = conn.execute("SELECT 'pg_class'::regclass::oid::int8")
        assert cur.fetchone() == (1259,)
        cur = conn.execute("SELECT 'pg_type'::regclass")
        assert [d.name for d in cur.description] == ["regclass"]
        cur = conn.execute("SELECT 'pg_lookalike'::regclass::oid::int8, c.oid::int8 FROM pg_catalog.pg_class c "
                           "WHERE c.relname = 'pg_lookalike'")
        (by_cast, by_row), = cur.fetchall()
        assert by_cast == by_row and by_cast >= 16384
        cur = conn.execute("SELECT 'pg_class'::regclass, 'no_such_relation'::regclass")
        assert len({d.name for d in cur.description}) == 2
        assert cur.fetchone()[1] is None
        (n,) = conn.execute("SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = 'pg_class'::regclass").fetchone()
        assert n > 20


def test_catalog_changes_show_at_once(gateway):
    """pg_class, pg_attribute and pg_namespace are read once per catalog
    change: each DDL shows in the next query on the same connection, and a
    query in between sees the same OIDs."""
    q = (
        "SELECT c.relname, a.attname, c.oid::int8 FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = 'oid_gen' ORDER BY 1, a.attnum"
    )
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS oid_gen CASCADE")
        conn.execute("CREATE SCHEMA oid_gen")
        assert conn.execute(q).fetchall() == []
        conn.execute("CREATE TABLE oid_gen.g1 (a INT, b TEXT)")
        first = conn.execute(q).fetchall()
        assert [(r, a) for r, a, _ in first] == [("g1", "a"), ("g1", "b")]
        assert conn.execute(q).fetchall() == first
        conn.execute("CREATE TABLE oid_gen.g2 AS SELECT 1 AS z")
        rows = conn.execute(q).fetchall()
        assert [(r, a) for r, a, _ in rows] == [("g1", "a"), ("g1", "b"), ("g2", "z")]
        assert rows[0][2] == first[0][2], "a table keeps its OID across other DDL"
        conn.execute("DROP TABLE oid_gen.g1")
        assert [(r, a) for r, a, _ in conn.execute(q).fetchall()] == [("g2", "z")]
        (n,) = conn.execute("SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'oid_gen'").fetchone()
        assert n == 1
        conn.execute("DROP SCHEMA oid_gen CASCADE")
        (n,) = conn.execute("SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'oid_gen'").fetchone()
        assert n == 0
