"""Replays of what real clients send on connect and when browsing the
catalog (sources: ../shared/reference/clients.md and the clients' own
code). Each statement must succeed; the comment names the client."""

import psycopg
import pytest

STARTUP = [
    # SQLAlchemy (psycopg dialect) on connect
    ("sqlalchemy", "select pg_catalog.version()"),
    ("sqlalchemy", "select current_schema()"),
    ("sqlalchemy", "show standard_conforming_strings"),
    # psqlODBC
    ("psqlodbc", "select oid, typbasetype from pg_type where typname = 'lo'"),
    ("psqlodbc", "show transaction_isolation"),
    ("psqlodbc", "show max_identifier_length"),
    # pgjdbc / Metabase
    ("pgjdbc", "SET extra_float_digits = 3"),
    ("pgjdbc", "SET application_name = 'PostgreSQL JDBC Driver'"),
    ("metabase", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"),
    # Npgsql / Power BI pool reset
    ("npgsql", "DISCARD ALL"),
    # asyncpg pool reset pieces
    ("asyncpg", "CLOSE ALL"),
    ("asyncpg", "UNLISTEN *"),
    ("asyncpg", "RESET ALL"),
    # Tableau / psqlODBC settings
    ("tableau", "SET client_min_messages TO warning"),
    ("tableau", "SET TIME ZONE 'UTC'"),
    # Grafana table picker
    ("grafana", "SELECT quote_ident(table_name) AS table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"),
    # generic catalog browsing
    ("dbeaver", "SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n ORDER BY n.nspname"),
    ("dbeaver", "SELECT c.oid, c.relname, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v')"),
    ("psql", "SELECT d.datname FROM pg_catalog.pg_database d ORDER BY 1"),
    ("any", "SELECT current_database(), current_user"),
]


@pytest.mark.parametrize("client,sql", STARTUP, ids=[f"{c}:{s[:40]}" for c, s in STARTUP])
def test_startup_statement(gateway, client, sql):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql)
        if cur.description is not None:
            cur.fetchall()


def test_catalog_sees_lake_tables(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS conf_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        rels = {r[0] for r in conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r'")}
        assert "conf_sales" in rels
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'conf_sales' ORDER BY ordinal_position")]
        assert cols == ["id", "store_id", "amount", "item"]
        assert conn.execute("SELECT current_database()").fetchone() == ("sluice",)
