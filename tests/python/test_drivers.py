"""psycopg 3 (server-side parameters, binary results) and asyncpg (prepared
statements, binary round-trips of the common types)."""

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import psycopg


def test_psycopg_server_side_params_binary(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS drv_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, amount, item FROM drv_sales WHERE store_id = %s AND id < %s ORDER BY id", (3, 30))
            rows = cur.fetchall()
            assert rows == [(i, i * 1.5, f"item-{i % 7}") for i in range(30) if i % 5 == 3]
            # the result really came back in binary
            assert all(d.type_code in (20, 701, 25) for d in cur.description), cur.description
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM drv_sales WHERE item = %s", ("item-2",))
            assert cur.fetchone()[0] == sum(1 for i in range(1000) if i % 7 == 2)
            cur.execute("SELECT %s::bigint + 1, %s::text || 'x'", (41, "a"))
            assert cur.fetchone() == (42, "ax")


def test_psycopg_transactions_and_settings(gateway):
    with psycopg.connect(gateway.dsn()) as conn:  # autocommit off: psycopg sends BEGIN
        cur = conn.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        conn.commit()
        conn.execute("SET application_name = 'sluice-tests'")
        assert conn.execute("SHOW application_name").fetchone() == ("sluice-tests",)
        assert conn.info.parameter_status("application_name") == "sluice-tests"
        conn.rollback()
        assert conn.info.server_version >= 160000


async def _asyncpg_round_trip(gateway):
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.pg_port, user="sluice", password=gateway.password, database="sluice")
    try:
        assert await conn.fetchval("SELECT 1") == 1
        stmt = await conn.prepare(
            "SELECT $1::bigint AS i, $2::double precision AS f, $3::numeric(12,3) AS n, $4::text AS t, "
            "$5::boolean AS b, $6::date AS d, $7::timestamp AS ts, $8::timestamptz AS tz, $9::int AS i4"
        )
        values = (
            9007199254740993,
            -2.5e-3,
            Decimal("12345.678"),
            "zürich ✓",
            True,
            dt.date(2026, 11, 27),
            dt.datetime(2026, 11, 27, 13, 45, 30, 123456),
            dt.datetime(2026, 11, 27, 13, 45, 30, 654321, tzinfo=dt.timezone.utc),
            -7,
        )
        row = await stmt.fetchrow(*values)
        assert tuple(row) == values
        # the same prepared statement runs again with other values
        row = await stmt.fetchrow(0, 0.0, Decimal("0.000"), "", False, dt.date(1970, 1, 1), dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), 0)
        assert row["t"] == "" and row["b"] is False
        # nulls
        row = await conn.fetchrow("SELECT NULL::bigint AS a, NULL::text AS b")
        assert row["a"] is None and row["b"] is None
    finally:
        await conn.close()


def test_asyncpg_prepared_binary_types(gateway):
    asyncio.run(_asyncpg_round_trip(gateway))


async def _asyncpg_lake(gateway, lake):
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.pg_port, user="sluice", password=gateway.password, database="sluice")
    try:
        await conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS apg_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        stmt = await conn.prepare("SELECT store_id, sum(amount) AS total FROM apg_sales WHERE id >= $1 GROUP BY store_id ORDER BY store_id")
        rows = await stmt.fetch(900)
        assert [(r["store_id"], r["total"]) for r in rows] == [
            (s, sum(i * 1.5 for i in range(900, 1000) if i % 5 == s)) for s in range(5)
        ]
    finally:
        await conn.close()


def test_asyncpg_lake_query(gateway, lake):
    asyncio.run(_asyncpg_lake(gateway, lake))


def test_current_user_and_savepoints(gateway):
    import psycopg

    with psycopg.connect(gateway.dsn()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("sluice",)
        assert conn.execute("SELECT session_user").fetchone() == ("sluice",)
        # psycopg nests transactions with SAVEPOINT / RELEASE / ROLLBACK TO.
        with conn.transaction():
            with conn.transaction():
                assert conn.execute("SELECT 1").fetchone() == (1,)
            try:
                with conn.transaction():
                    conn.execute("SELECT 2")
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            assert conn.execute("SELECT 3").fetchone() == (3,)
