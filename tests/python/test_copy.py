"""COPY ... TO STDOUT (text, CSV with options, binary) with real clients,
and several statements in one simple query running one after another."""

import subprocess

import psycopg
import pytest


SRC = (
    "SELECT CAST(x AS BIGINT) AS id, CAST(x AS VARCHAR) || E'\\tq\"' AS label, "
    "CASE WHEN x = 2 THEN NULL ELSE x * 1.5 END AS score FROM (VALUES (1), (2), (3)) AS v(x) ORDER BY id"
)


def test_copy_text_and_csv_through_psql(gateway):
    out = gateway.psql(f"\\copy ({SRC}) to stdout")
    assert out.splitlines() == ["1\t1\\tq\"\t1.5", "2\t2\\tq\"\t\\N", "3\t3\\tq\"\t4.5"]
    out = gateway.psql(f"\\copy ({SRC}) to stdout with (format csv, header true, delimiter ';', null 'NULL')")
    assert out.splitlines() == ["id;label;score", '1;"1\tq""";1.5', '2;"2\tq""";NULL', '3;"3\tq""";4.5']


def test_copy_binary_and_text_through_psycopg(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        with cur.copy(f"COPY ({SRC}) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "numeric"])
            rows = list(copy.rows())
        assert [(r[0], r[1]) for r in rows] == [(1, '1\tq"'), (2, '2\tq"'), (3, '3\tq"')]
        assert rows[1][2] is None and rows[2][2] == 4.5
        with cur.copy("COPY (SELECT s FROM (VALUES ('a'), (NULL)) AS t(s) ORDER BY s NULLS LAST) TO STDOUT") as copy:
            assert list(copy.rows()) == [("a",), (None,)]
        # A table name with a column list.
        conn.execute("CREATE TABLE copy_src AS SELECT 1 AS a, 'x' AS b")
        with cur.copy("COPY copy_src (b) TO STDOUT WITH (FORMAT csv)") as copy:
            assert b"".join(copy).decode() == "x\n"


def test_copy_refuses_files_and_unknown_options(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as e:
            conn.execute("COPY (SELECT 1) TO '/tmp/sluice-should-not-exist'")
        assert e.value.sqlstate == "42501"
        with pytest.raises(psycopg.Error) as e:
            conn.execute("COPY (SELECT 1) TO STDOUT (FORMAT xml)")
        assert e.value.sqlstate == "22023"


def test_statements_of_one_query_run_in_order(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE seq_t AS SELECT 1 AS v UNION ALL SELECT 2")
    # psql sends the whole string as one simple query.
    out = gateway.psql("SELECT v FROM seq_t ORDER BY v; DROP TABLE seq_t")
    assert out.split() == ["1", "2", "DROP", "TABLE"], "rows first, then the drop"
    r = gateway.psql("SELECT 1; SELECT * FROM no_such_table; SELECT 3", check=False)
    assert r.returncode != 0
    assert r.stdout.split() == ["1"], r.stdout
    assert "no_such_table" in r.stderr
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT * FROM seq_t")
        assert e.value.sqlstate == "42P01"
