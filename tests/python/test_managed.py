"""Managed tables: CTAS into a partitioned table and INSERT INTO it; files
are zstd Parquet under key=value directories; reads return what was written."""

from pathlib import Path

import psycopg
import pyarrow.parquet as pq


def files_of(gateway, schema, table):
    base = gateway.data_dir / "warehouse"
    root = base if schema == "default" else base / f"{schema}.db"
    return sorted((root / table).rglob("*.parquet"))


def test_ctas_partitioned_and_insert(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS m_src STORED AS PARQUET LOCATION '{lake}/sales/'")
        conn.execute("CREATE SCHEMA IF NOT EXISTS mart")
        cur = conn.execute(
            "CREATE TABLE mart.sales_by_store PARTITIONED BY (store_id) AS "
            "SELECT id, amount, item, store_id FROM m_src WHERE id < 100"
        )
        assert cur.statusmessage == "SELECT 100"
        cur = conn.execute("INSERT INTO mart.sales_by_store VALUES (5000, 1.25, 'new', 7), (5001, NULL, 'new', 3)")
        assert cur.statusmessage == "INSERT 0 2"
        cur = conn.execute("INSERT INTO mart.sales_by_store SELECT id, amount, item, store_id FROM m_src WHERE id BETWEEN 100 AND 109")
        assert cur.statusmessage == "INSERT 0 10"

        rows = conn.execute("SELECT id, amount, item, store_id FROM mart.sales_by_store ORDER BY id").fetchall()
        expected = [(i, i * 1.5, f"item-{i % 7}", i % 5) for i in range(110)] + [(5000, 1.25, "new", 7), (5001, None, "new", 3)]
        assert rows == expected
        # partition pruning input: a filter on the partition column
        assert conn.execute("SELECT count(*) FROM mart.sales_by_store WHERE store_id = 3").fetchone()[0] == 22 + 1

    files = files_of(gateway, "mart", "sales_by_store")
    dirs = {f.parent.name for f in files}
    assert dirs == {f"store_id={s}" for s in (0, 1, 2, 3, 4, 7)}, dirs
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for rg in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                assert meta.row_group(rg).column(c).compression == "ZSTD", f
        # the partition column is in the path, not in the file
        assert "store_id" not in pq.ParquetFile(f).schema_arrow.names
    # no staging leftovers are visible in the table
    assert not any("staging" in str(f) for f in files)


def test_failed_insert_leaves_nothing(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE m_atomic (k bigint, v text)")
        conn.execute("INSERT INTO m_atomic VALUES (1, 'one')")
        before = files_of(gateway, "default", "m_atomic")
        try:
            # fails at run time (cast error) after the plan was accepted
            conn.execute("INSERT INTO m_atomic SELECT CAST(x AS bigint), 'bad' FROM (VALUES ('2'), ('not-a-number')) AS t(x)")
            raise AssertionError("insert should have failed")
        except psycopg.Error as e:
            assert e.sqlstate is not None
        assert files_of(gateway, "default", "m_atomic") == before
        assert conn.execute("SELECT count(*) FROM m_atomic").fetchone()[0] == 1


def test_drop_managed_table_removes_data(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE m_drop AS SELECT 1 AS a")
        assert files_of(gateway, "default", "m_drop")
        conn.execute("DROP TABLE m_drop")
        assert not files_of(gateway, "default", "m_drop")
        conn.execute("DROP TABLE IF EXISTS m_drop")
