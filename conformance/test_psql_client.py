"""psql as people use it: the \\d family, \\x, \\timing and \\copy both ways,
each a matrix cell (the real psql binary, scripted)."""

import re

import pytest


@pytest.fixture(scope="module")
def psql_table(gateway, lake):
    gateway.psql("CREATE SCHEMA IF NOT EXISTS psqlconf")
    gateway.psql(f"CREATE EXTERNAL TABLE IF NOT EXISTS psqlconf.sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    gateway.psql("CREATE OR REPLACE VIEW psqlconf.big_sales AS SELECT id, amount FROM psqlconf.sales WHERE amount > 100")
    return "psqlconf.sales"


def run(gateway, *commands):
    r = gateway.psql(*commands, check=False)
    if r.returncode != 0:
        raise AssertionError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return r.stdout


def test_psql(gateway, psql_table, matrix, tmp_path):
    client = "psql"
    with matrix.cell(client, "\\dt (tables of a schema)"):
        out = run(gateway, "\\dt psqlconf.*")
        assert "sales" in out, out
    with matrix.cell(client, "\\d table (columns and types)"):
        out = run(gateway, "\\d psqlconf.sales")
        for col, typ in (("id", "bigint"), ("store_id", "integer"), ("amount", "double precision"), ("item", "text")):
            assert re.search(rf"{col}\|{typ}", out), out
    with matrix.cell(client, "\\dv (views)"):
        out = run(gateway, "\\dv psqlconf.*")
        assert "big_sales" in out, out
    with matrix.cell(client, "\\dn (schemas)"):
        out = run(gateway, "\\dn")
        assert "psqlconf" in out and "default" in out, out
    with matrix.cell(client, "\\l (databases)"):
        assert "sluice" in run(gateway, "\\l")
    with matrix.cell(client, "\\x (expanded output)"):
        out = run(gateway, "\\x on", "SELECT 1 AS a, 'b' AS b")
        assert "a|1" in out and "b|b" in out, out
    with matrix.cell(client, "\\timing"):
        out = run(gateway, "\\timing on", "SELECT count(*) FROM psqlconf.sales")
        assert "1000" in out and re.search(r"Time: [0-9.]+ ms", out), out
    with matrix.cell(client, "\\copy (query) to stdout, CSV"):
        out = run(gateway, "\\copy (SELECT id, item FROM psqlconf.sales WHERE id < 2 ORDER BY id) to stdout with (format csv)")
        assert out.splitlines() == ["0,item-0", "1,item-1"], out
    with matrix.cell(client, "\\copy table from file, CSV"):
        gateway.psql("DROP TABLE IF EXISTS psqlconf.loaded", "CREATE TABLE psqlconf.loaded (id BIGINT, item VARCHAR)")
        src = tmp_path / "loaded.csv"
        src.write_text("id,item\n1,\"a,b\"\n2,\n")
        out = run(gateway, f"\\copy psqlconf.loaded from '{src}' with (format csv, header true)")
        assert out.strip() == "COPY 2", out
        out = run(gateway, "SELECT id, coalesce(item, '<null>') FROM psqlconf.loaded ORDER BY id")
        assert out.splitlines() == ["1|a,b", "2|<null>"], out
    with matrix.cell(client, "error message and SQLSTATE"):
        r = gateway.psql("\\set VERBOSITY verbose", "SELECT * FROM psqlconf.nope", check=False)
        assert r.returncode != 0 and "42P01" in r.stderr, r.stderr
