"""Python Postgres drivers as applications use them: psycopg2, psycopg 3,
asyncpg, pg8000, SQLAlchemy 2 (every inspect() method, Core, pandas) and
ADBC PostgreSQL. Each check is one matrix cell."""

import asyncio
import datetime
import decimal

import psycopg
import pytest

from sluice_fixtures import PASSWORD, USER

TYPED = (
    "SELECT 1::int4 AS i, 2::int8 AS b, 1.5::float8 AS f, 'x'::text AS t, true AS o, "
    "DATE '2024-01-02' AS d, TIMESTAMP '2024-01-02 03:04:05' AS ts, 1.25::numeric(10,2) AS n, NULL::int4 AS z"
)
TYPED_ROW = (
    1, 2, 1.5, "x", True, datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5), decimal.Decimal("1.25"), None,
)


@pytest.fixture(scope="module")
def sales(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS drv_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    return "drv_sales"


def test_psycopg2(gateway, sales, matrix):
    import psycopg2
    import psycopg2.extras

    client = "psycopg2"
    conn = psycopg2.connect(host="127.0.0.1", port=gateway.pg_port, user=USER, password=PASSWORD, dbname="sluice")
    try:
        with matrix.cell(client, "typed row"):
            cur = conn.cursor()
            cur.execute(TYPED)
            assert cur.fetchone() == TYPED_ROW
            assert [d.name for d in cur.description][:3] == ["i", "b", "f"]
        with matrix.cell(client, "client-side parameters"):
            cur.execute(f"SELECT count(*) FROM {sales} WHERE store_id = %s AND item = %s", (1, "item-1"))
            assert cur.fetchone()[0] > 0
        with matrix.cell(client, "named cursor (DECLARE/FETCH)"):
            named = conn.cursor(name="pg2_named")
            named.itersize = 100
            named.execute(f"SELECT id FROM {sales} ORDER BY id")
            ids = [r[0] for r in named]
            assert ids == list(range(1000))
            named.close()
            conn.commit()
        with matrix.cell(client, "execute_values batch"):
            cur.execute("CREATE TABLE IF NOT EXISTS pg2_batch (k int, v text)")
            conn.commit()
            psycopg2.extras.execute_values(cur, "INSERT INTO pg2_batch VALUES %s", [(i, f"v{i}") for i in range(50)])
            conn.commit()
            cur.execute("SELECT count(*), max(k) FROM pg2_batch")
            assert cur.fetchone() == (50, 49)
        with matrix.cell(client, "copy_expert FROM STDIN (CSV)"):
            import io

            cur = conn.cursor()
            cur.execute("DROP TABLE IF EXISTS pg2_copy_in")
            cur.execute("CREATE TABLE pg2_copy_in (id BIGINT, name VARCHAR)")
            cur.copy_expert("COPY pg2_copy_in FROM STDIN WITH (FORMAT csv)", io.StringIO("1,one\n2,\"t,wo\"\n"))
            cur.execute("SELECT id, name FROM pg2_copy_in ORDER BY id")
            assert cur.fetchall() == [(1, "one"), (2, "t,wo")]
            conn.commit()
        with matrix.cell(client, "error SQLSTATE, connection usable after"):
            with pytest.raises(psycopg2.Error) as e:
                cur.execute("SELECT * FROM no_such_table_pg2")
            assert e.value.pgcode == "42P01"
            conn.rollback()
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        with matrix.cell(client, "copy_expert TO STDOUT"):
            import io

            buf = io.StringIO()
            cur.copy_expert(f"COPY (SELECT id, item FROM {sales} WHERE id < 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)", buf)
            assert buf.getvalue() == "0,item-0\n1,item-1\n2,item-2\n"
    finally:
        conn.close()


def test_psycopg3(gateway, sales, matrix):
    client = "psycopg 3"
    with psycopg.connect(gateway.dsn()) as conn:
        with matrix.cell(client, "typed row, binary results"):
            cur = conn.cursor(binary=True)
            cur.execute(TYPED)
            assert cur.fetchone() == TYPED_ROW
        with matrix.cell(client, "server-side parameters, prepared"):
            for _ in range(6):  # past prepare_threshold: a named statement
                row = conn.execute(f"SELECT count(*) FROM {sales} WHERE store_id = %s", (2,)).fetchone()
            assert row == (200,)
        with matrix.cell(client, "server-side cursor"):
            with conn.cursor(name="pg3_named") as named:
                named.execute(f"SELECT id FROM {sales} ORDER BY id")
                assert len(named.fetchmany(300)) == 300
                assert len(named.fetchall()) == 700
        with matrix.cell(client, "conn.transaction() savepoints"):
            with conn.transaction():
                with conn.transaction():
                    conn.execute("SELECT 1")
        with matrix.cell(client, "COPY TO STDOUT (binary)"):
            with conn.cursor().copy(f"COPY (SELECT id, item FROM {sales} WHERE id < 3 ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "text"])
                assert list(copy.rows()) == [(0, "item-0"), (1, "item-1"), (2, "item-2")]
        with matrix.cell(client, "COPY FROM STDIN (binary, write_row)"):
            conn.execute("DROP TABLE IF EXISTS pg3_copy_in")
            conn.execute("CREATE TABLE pg3_copy_in (id BIGINT, name VARCHAR, at TIMESTAMP, n DECIMAL(10,2))")
            with conn.cursor().copy("COPY pg3_copy_in FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "text", "timestamp", "numeric"])
                for i in range(1000):
                    copy.write_row((i, f"r{i}", datetime.datetime(2024, 1, 1, 0, 0, i % 60), decimal.Decimal(i) / 100))
            got = conn.execute("SELECT count(*), sum(n), max(name) FROM pg3_copy_in").fetchone()
            assert got == (1000, decimal.Decimal("4995.00"), "r999"), got
        with matrix.cell(client, "pipeline mode"):
            with conn.pipeline():
                a = conn.execute("SELECT 1")
                b = conn.execute("SELECT 2")
            assert (a.fetchone(), b.fetchone()) == ((1,), (2,))


def test_asyncpg(gateway, sales, matrix):
    import asyncpg

    client = "asyncpg"

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=gateway.pg_port, user=USER, password=PASSWORD, database="sluice")
        try:
            with matrix.cell(client, "typed row (binary)"):
                row = await conn.fetchrow(TYPED)
                assert tuple(row.values()) == TYPED_ROW
            with matrix.cell(client, "prepared statement, parameters"):
                stmt = await conn.prepare(f"SELECT count(*) FROM {sales} WHERE store_id = $1")
                assert await stmt.fetchval(3) == 200
            with matrix.cell(client, "cursor in transaction"):
                async with conn.transaction():
                    ids = [r["id"] async for r in conn.cursor(f"SELECT id FROM {sales} ORDER BY id", prefetch=128)]
                assert ids == list(range(1000))
            with matrix.cell(client, "introspection of custom types (arrays)"):
                # Arrays make asyncpg introspect their element type through pg_type.
                assert await conn.fetchval("SELECT make_array(1, 2, 3)") == [1, 2, 3]
                assert await conn.fetchval("SELECT make_array('a', 'b')") == ["a", "b"]
            with matrix.cell(client, "copy_records_to_table (COPY FROM STDIN binary)"):
                await conn.execute("DROP TABLE IF EXISTS apg_copy_in")
                await conn.execute("CREATE TABLE apg_copy_in (id BIGINT, name VARCHAR, d DATE)")
                records = [(i, f"r{i}", datetime.date(2024, 1, 1 + i % 28)) for i in range(500)]
                res = await conn.copy_records_to_table("apg_copy_in", records=records)
                assert res == "COPY 500", res
                assert await conn.fetchval("SELECT count(DISTINCT d) FROM apg_copy_in") == 28
            with matrix.cell(client, "error SQLSTATE"):
                with pytest.raises(asyncpg.PostgresError) as e:
                    await conn.fetch("SELECT * FROM no_such_table_apg")
                assert e.value.sqlstate == "42P01"
        finally:
            await conn.close()

    asyncio.run(run())


def test_pg8000(gateway, sales, matrix):
    import pg8000.dbapi
    import pg8000.native

    client = "pg8000"
    with matrix.cell(client, "typed row"):
        conn = pg8000.native.Connection(USER, host="127.0.0.1", port=gateway.pg_port, password=PASSWORD, database="sluice")
        rows = conn.run(TYPED)
        assert tuple(rows[0]) == TYPED_ROW
    with matrix.cell(client, "named parameters"):
        rows = conn.run(f"SELECT count(*) FROM {sales} WHERE store_id = :s", s=4)
        assert rows == [[200]]
    with matrix.cell(client, "dbapi transaction"):
        db = pg8000.dbapi.connect(USER, host="127.0.0.1", port=gateway.pg_port, password=PASSWORD, database="sluice")
        cur = db.cursor()
        cur.execute(f"SELECT max(id) FROM {sales} WHERE id < %s", (10,))
        assert cur.fetchone() == [9]
        db.commit()
        db.close()
    with matrix.cell(client, "error SQLSTATE"):
        with pytest.raises(pg8000.native.DatabaseError) as e:
            conn.run("SELECT * FROM no_such_table_p8")
        assert e.value.args[0]["C"] == "42P01"
    conn.close()


def test_sqlalchemy(gateway, sales, matrix):
    import pandas as pd
    import sqlalchemy as sa

    client = "SQLAlchemy 2"
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS sa_view_base AS SELECT 1 AS a, 'x' AS b")
        conn.execute("CREATE OR REPLACE VIEW sa_view AS SELECT a FROM sa_view_base")
    engine = sa.create_engine(f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{gateway.pg_port}/sluice")
    try:
        insp = sa.inspect(engine)
        checks = {
            "get_schema_names": lambda: "default" in insp.get_schema_names(),
            "get_table_names": lambda: sales in insp.get_table_names(schema="default"),
            "get_view_names": lambda: "sa_view" in insp.get_view_names(schema="default"),
            "get_columns": lambda: [c["name"] for c in insp.get_columns(sales, schema="default")] == ["id", "store_id", "amount", "item"],
            "get_pk_constraint": lambda: insp.get_pk_constraint(sales, schema="default")["constrained_columns"] == [],
            "get_foreign_keys": lambda: insp.get_foreign_keys(sales, schema="default") == [],
            "get_indexes": lambda: insp.get_indexes(sales, schema="default") == [],
            "get_unique_constraints": lambda: insp.get_unique_constraints(sales, schema="default") == [],
            "get_check_constraints": lambda: insp.get_check_constraints(sales, schema="default") == [],
            "get_table_comment": lambda: insp.get_table_comment(sales, schema="default") == {"text": None},
            "has_table": lambda: insp.has_table(sales, schema="default") and not insp.has_table("nope", schema="default"),
            "get_view_definition": lambda: "sa_view_base" in (insp.get_view_definition("sa_view", schema="default") or ""),
            "get_multi_columns": lambda: ("default", sales) in insp.get_multi_columns(schema="default"),
        }
        for name, check in checks.items():
            with matrix.cell(client, f"inspect().{name}"):
                assert check(), name
        with matrix.cell(client, "Core select with bound parameters"):
            t = sa.Table(sales, sa.MetaData(), autoload_with=engine, schema="default")
            q = sa.select(t.c.store_id, sa.func.count().label("n")).where(t.c.id < sa.bindparam("lim")).group_by(t.c.store_id).order_by(t.c.store_id)
            with engine.connect() as c:
                assert c.execute(q, {"lim": 10}).all() == [(0, 2), (1, 2), (2, 2), (3, 2), (4, 2)]
        with matrix.cell(client, "pandas.read_sql"):
            df = pd.read_sql(f"SELECT id, amount FROM {sales} WHERE id < 5 ORDER BY id", engine)
            assert list(df.columns) == ["id", "amount"] and df["id"].tolist() == [0, 1, 2, 3, 4]
    finally:
        engine.dispose()


def test_adbc_postgresql(gateway, sales, matrix):
    import adbc_driver_postgresql.dbapi as adbc_pg

    client = "ADBC PostgreSQL"
    uri = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{gateway.pg_port}/sluice"
    with matrix.cell(client, "connect (pg_type start-up query)"):
        conn = adbc_pg.connect(uri)
    with matrix.cell(client, "query via COPY TO STDOUT (FORMAT binary)"):
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, store_id, amount, item FROM {sales} WHERE id < 4 ORDER BY id")
            t = cur.fetch_arrow_table()
            assert t.column("id").to_pylist() == [0, 1, 2, 3]
            assert t.column("item").to_pylist() == ["item-0", "item-1", "item-2", "item-3"]
    with matrix.cell(client, "typed row"):
        with conn.cursor() as cur:
            cur.execute(TYPED)
            # ADBC PostgreSQL hands numeric over as its text (as from Postgres).
            row = cur.fetchone()
            assert row[:7] == TYPED_ROW[:7] and row[7] == "1.25" and row[8] is None
    with matrix.cell(client, "adbc_ingest create and append (COPY FROM STDIN binary)"):
        import pyarrow as pa

        data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", None, "c"], "x": [0.5, 1.5, None]})
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS adbc_pg_ingest")
            assert cur.adbc_ingest("adbc_pg_ingest", data, mode="create") == 3
            assert cur.adbc_ingest("adbc_pg_ingest", data, mode="append") == 3
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(name), sum(x) FROM adbc_pg_ingest")
            assert cur.fetchone() == (6, 4, 4.0)
    with matrix.cell(client, "adbc_get_objects"):
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []}
        assert sales in names
    conn.close()
