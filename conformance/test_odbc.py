"""psqlODBC (Debian's odbc-postgresql) through unixODBC: pyodbc with and
without UseDeclareFetch=1 (Tableau's setting: the driver pages with
DECLARE ... CURSOR WITH HOLD / FETCH), SQLTables/SQLColumns, and isql."""

import os
import subprocess

import pyodbc
import pytest

from sluice_fixtures import PASSWORD


def conn_str(gateway, declare_fetch):
    return (
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={gateway.pg_port};DATABASE=sluice;"
        f"UID=sluice;PWD={PASSWORD};UseDeclareFetch={declare_fetch};Fetch=100"
    )


@pytest.fixture(scope="module")
def odbc_table(gateway):
    import psycopg

    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS odbc")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS odbc.items AS SELECT CAST(value AS BIGINT) AS id, "
            "'item ' || CAST(value AS VARCHAR) AS name, CAST(value AS DOUBLE) / 4 AS price FROM generate_series(1, 1234)"
        )
    return "odbc.items"


@pytest.mark.parametrize("declare_fetch", ["0", "1"])
def test_pyodbc_queries_and_catalog(gateway, odbc_table, declare_fetch, matrix):
    client = "psqlODBC (pyodbc)"
    mode = "UseDeclareFetch=1 (Tableau)" if declare_fetch == "1" else "UseDeclareFetch=0"
    conn = pyodbc.connect(conn_str(gateway, declare_fetch), autocommit=False)
    try:
        cur = conn.cursor()
        with matrix.cell(client, f"query, {mode}"):
            cur.execute(f"SELECT id, name, price FROM {odbc_table} ORDER BY id")
            rows = cur.fetchall()
            assert len(rows) == 1234
            assert tuple(rows[0]) == (1, "item 1", 0.25) and tuple(rows[-1]) == (1234, "item 1234", 308.5)
        with matrix.cell(client, f"parameters, {mode}"):
            cur.execute(f"SELECT count(*) FROM {odbc_table} WHERE id > ?", 1000)
            assert cur.fetchone()[0] == 234
        with matrix.cell(client, f"SQLTables, {mode}"):
            tables = [t.table_name for t in cur.tables(schema="odbc")]
            assert tables == ["items"]
        with matrix.cell(client, f"SQLColumns, {mode}"):
            cols = [(c.column_name, c.type_name) for c in cur.columns(table="items", schema="odbc")]
            assert [c[0] for c in cols] == ["id", "name", "price"], cols
        conn.commit()
    finally:
        conn.close()


def test_isql_batch_query(gateway, odbc_table, tmp_path, matrix):
    (tmp_path / "odbc.ini").write_text(
        f"[sluice]\nDriver = PostgreSQL Unicode\nServername = 127.0.0.1\nPort = {gateway.pg_port}\n"
        f"Database = sluice\nUserName = sluice\nPassword = {PASSWORD}\nUseDeclareFetch = 1\n"
    )
    env = dict(os.environ, ODBCINI=str(tmp_path / "odbc.ini"))
    with matrix.cell("isql (unixODBC)", "batch query, UseDeclareFetch=1"):
        r = subprocess.run(
            ["isql", "-b", "-d,", "sluice"],
            input=f"SELECT count(*), max(id) FROM {odbc_table}\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1234,1234" in r.stdout, r.stdout
