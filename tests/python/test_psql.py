"""psql end to end: external tables over Parquet and CSV, queries, psql's
catalog meta-commands, durability across restart and kill -9."""

import signal

import pytest

from sluice_fixtures import Gateway


def test_select_one_and_version(gateway):
    assert gateway.psql("select 1").strip() == "1"
    out = gateway.psql("select version()")
    assert out.startswith("PostgreSQL 16.6"), out


def test_external_tables_and_queries(gateway, lake):
    gateway.psql(
        "CREATE SCHEMA IF NOT EXISTS shop",
        f"CREATE EXTERNAL TABLE shop.sales STORED AS PARQUET LOCATION '{lake}/sales/'",
        f"CREATE EXTERNAL TABLE shop.stores STORED AS CSV LOCATION '{lake}/stores/' OPTIONS ('format.has_header' 'true')",
    )
    assert gateway.psql("select count(*) from shop.sales").strip() == "1000"
    # filter
    assert gateway.psql("select count(*) from shop.sales where amount > 1000 and item = 'item-3'").strip() == str(
        sum(1 for i in range(1000) if i * 1.5 > 1000 and i % 7 == 3)
    )
    # aggregate
    rows = gateway.psql("select store_id, count(*), sum(id) from shop.sales group by store_id order by store_id").split()
    expected = [f"{s}|200|{sum(i for i in range(1000) if i % 5 == s)}" for s in range(5)]
    assert rows == expected
    # join parquet with csv
    rows = gateway.psql(
        "select st.city, count(*) from shop.sales s join shop.stores st on s.store_id = st.store_id "
        "where s.id < 10 group by st.city order by st.city"
    ).split()
    assert rows == ["Faro|2", "Kyiv|2", "Lima|2", "Oslo|2", "Pune|2"]


def test_hive_partitioned_external_table(gateway, lake):
    gateway.psql(
        f"CREATE EXTERNAL TABLE events STORED AS PARQUET PARTITIONED BY (day) LOCATION '{lake}/events/'"
    )
    rows = gateway.psql("select day, count(*) from events group by day order by day").split()
    assert rows == ["2026-01-01|3", "2026-01-02|3"]
    assert gateway.psql("select count(*) from events where day = '2026-01-02' and kind = 'a'").strip() == "2"


def test_psql_meta_commands(gateway, lake):
    gateway.psql(f"CREATE EXTERNAL TABLE IF NOT EXISTS meta_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    dt = gateway.psql("\\dt")
    assert "meta_sales" in dt, dt
    d = gateway.psql("\\d meta_sales")
    for col in ("id", "store_id", "amount", "item"):
        assert col in d, d
    dn = gateway.psql("\\dn")
    assert "default" in dn, dn
    l = gateway.psql("\\l")
    assert "sluice" in l, l


def test_show_and_describe(gateway, lake):
    gateway.psql(f"CREATE EXTERNAL TABLE IF NOT EXISTS desc_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    schemas = gateway.psql("SHOW SCHEMAS").split()
    assert "default" in schemas and "pg_catalog" in schemas
    tables = gateway.psql("SHOW TABLES")
    assert "desc_sales" in tables
    desc = gateway.psql("DESCRIBE desc_sales")
    assert "amount|Float64" in desc, desc


def test_views(gateway, lake):
    gateway.psql(
        f"CREATE EXTERNAL TABLE IF NOT EXISTS view_src STORED AS PARQUET LOCATION '{lake}/sales/'",
        "CREATE VIEW big_sales AS SELECT id, amount FROM view_src WHERE amount >= 1000",
    )
    assert gateway.psql("select count(*) from big_sales").strip() == str(sum(1 for i in range(1000) if i * 1.5 >= 1000))
    gateway.psql("DROP VIEW big_sales")
    r = gateway.psql("select * from big_sales", check=False)
    assert r.returncode != 0 and ("does not exist" in r.stderr or "not found" in r.stderr), r.stderr


def test_drop_schema_cascade(gateway, lake):
    gateway.psql(
        "CREATE SCHEMA scratch",
        f"CREATE EXTERNAL TABLE scratch.t STORED AS PARQUET LOCATION '{lake}/sales/'",
    )
    assert gateway_err(gateway, "DROP SCHEMA scratch") == "2BP01"
    gateway.psql("DROP SCHEMA scratch CASCADE")
    assert "scratch" not in gateway.psql("SHOW SCHEMAS").split()
    # external data is never deleted
    assert (lake / "sales" / "part-0.parquet").exists()


def gateway_err(gateway, sql):
    import psycopg

    try:
        with psycopg.connect(gateway.dsn(), autocommit=True) as c:
            c.execute(sql)
    except psycopg.Error as e:
        return e.sqlstate
    return None


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_tables_survive_restart(workdir, lake, how):
    g = Gateway(workdir / f"durable-{how.name}").start()
    try:
        g.psql(
            "CREATE SCHEMA keep",
            f"CREATE EXTERNAL TABLE keep.sales STORED AS PARQUET LOCATION '{lake}/sales/'",
            f"CREATE EXTERNAL TABLE keep.stores STORED AS CSV LOCATION '{lake}/stores/stores.csv' OPTIONS ('format.has_header' 'true')",
            "CREATE VIEW keep.v AS SELECT count(*) AS n FROM keep.sales",
        )
        g.stop(how)
        g.start()
        assert "sales" in g.psql("\\dt keep.*")
        assert g.psql("select n from keep.v").strip() == "1000"
        assert g.psql("select count(*) from keep.stores").strip() == "5"
    finally:
        g.stop()
