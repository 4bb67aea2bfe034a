"""COPY table FROM STDIN (text, CSV, binary) with real clients: rows land
typed, a column list fills the rest with NULL, and a transfer that fails
(bad data, CopyFail from the client, a CancelRequest, a dropped connection) leaves the table
exactly as it was."""

import datetime
import decimal
import os
import socket
import time

import psycopg
import pytest


COLUMNS = "id BIGINT, name VARCHAR, amount DECIMAL(10,2), day DATE, at TIMESTAMP, ok BOOLEAN, score DOUBLE"


def fresh(conn, name):
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} ({COLUMNS})")


def rows(conn, name):
    return conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()


def test_psql_copy_from_file_and_stdin(gateway, tmp_path):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        fresh(conn, "cin_psql")
    csv = tmp_path / "in.csv"
    csv.write_text(
        "id,name,amount,day,at,ok,score\n"
        '1,"a, ""quoted""\nline",12.50,2024-02-29,2024-02-29 10:11:12,true,1.5\n'
        "2,,,,,,\n"
    )
    out = gateway.psql(f"\\copy cin_psql from '{csv}' with (format csv, header true)")
    assert out.strip() == "COPY 2", out
    # Text format from psql's stdin, ended by \.
    out = gateway.psql("\\copy cin_psql (id, name) from stdin", input="3\ttab\\there\n4\t\\N\n\\.\n")
    assert out.strip() == "COPY 2", out
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        got = rows(conn, "cin_psql")
    assert got[0] == (
        1,
        'a, "quoted"\nline',
        decimal.Decimal("12.50"),
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 2, 29, 10, 11, 12),
        True,
        1.5,
    )
    assert got[1] == (2, None, None, None, None, None, None)
    assert got[2][:3] == (3, "tab\there", None)
    assert got[3] == (4, None, None, None, None, None, None)


def test_psycopg_copy_text_and_binary(gateway):
    with psycopg.connect(gateway.dsn()) as conn:
        fresh(conn, "cin_pg")
        cur = conn.cursor()
        with cur.copy("COPY cin_pg (id, name, amount, day, at, ok, score) FROM STDIN") as copy:
            for i in range(20000):
                copy.write_row((i, f"n{i}", decimal.Decimal(i) / 4, datetime.date(2024, 1, 1), None, i % 2 == 0, None))
        assert cur.rowcount == 20000
        with cur.copy("COPY cin_pg FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "numeric", "date", "timestamp", "bool", "float8"])
            copy.write_row(
                (-1, "bin é", decimal.Decimal("-1234.56"), datetime.date(1999, 12, 31), datetime.datetime(2001, 2, 3, 4, 5, 6, 789000), False, -0.25)
            )
            copy.write_row((-2, None, None, None, None, None, None))
        conn.commit()
        assert conn.execute("SELECT count(*), sum(id), count(name) FROM cin_pg").fetchone() == (20002, 199990000 - 3, 20001)
        got = conn.execute("SELECT * FROM cin_pg WHERE id < 0 ORDER BY id DESC").fetchall()
        assert got[0] == (
            -1,
            "bin é",
            decimal.Decimal("-1234.56"),
            datetime.date(1999, 12, 31),
            datetime.datetime(2001, 2, 3, 4, 5, 6, 789000),
            False,
            -0.25,
        )
        assert got[1] == (-2, None, None, None, None, None, None)
        assert conn.execute("SELECT amount FROM cin_pg WHERE id = 3").fetchone() == (decimal.Decimal("0.75"),)


def test_failed_copy_leaves_the_table_unchanged(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        fresh(conn, "cin_atomic")
        conn.execute("INSERT INTO cin_atomic (id, name) VALUES (1, 'kept')")
        cur = conn.cursor()
        # Bad data after many good rows: 22P02 at the end, nothing written.
        with pytest.raises(psycopg.Error) as e:
            with cur.copy("COPY cin_atomic (id, name) FROM STDIN") as copy:
                for i in range(10, 30000):
                    copy.write(f"{i}\tx\n")
                copy.write("oops\tx\n")
        assert e.value.sqlstate == "22P02", e.value
        assert "id" in str(e.value)
        # Wrong column count: 22P04 naming the column.
        with pytest.raises(psycopg.Error) as e:
            with cur.copy("COPY cin_atomic FROM STDIN") as copy:
                copy.write("5\tonly two\n")
        assert e.value.sqlstate == "22P04" and "missing data" in str(e.value)
        # The client gives up (an exception inside the block sends CopyFail).
        with pytest.raises(Exception):
            with cur.copy("COPY cin_atomic (id) FROM STDIN") as copy:
                copy.write("6\n")
                raise RuntimeError("client changed its mind")
        assert rows(conn, "cin_atomic") == [(1, "kept", None, None, None, None, None)]
        # The connection is still usable, and errors before the data are PostgreSQL's.
        with pytest.raises(psycopg.Error) as e:
            conn.execute("COPY no_such_table FROM STDIN")
        assert e.value.sqlstate == "42P01"
        with pytest.raises(psycopg.Error) as e:
            conn.execute("COPY cin_atomic (nope) FROM STDIN")
        assert e.value.sqlstate == "42703"
        with pytest.raises(psycopg.Error) as e:
            conn.execute("COPY cin_atomic FROM '/etc/passwd'")
        assert e.value.sqlstate == "42501"


def test_connection_lost_mid_copy_writes_nothing(gateway):
    """Rows sent, then the connection drops without CopyDone: nothing lands."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        fresh(conn, "cin_lost")
    conn = psycopg.connect(gateway.dsn(), autocommit=True)
    cur = conn.cursor()
    with pytest.raises(Exception):
        with cur.copy("COPY cin_lost (id) FROM STDIN") as copy:
            copy.write("".join(f"{i}\n" for i in range(50000)))
            sock = socket.socket(fileno=os.dup(conn.fileno()))
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
    conn.close()
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        # The aborted ingest never commits, however long we look.
        for _ in range(20):
            assert conn.execute("SELECT count(*) FROM cin_lost").fetchone() == (0,)
            time.sleep(0.05)


def test_cancelled_copy_writes_nothing(gateway):
    """A CancelRequest during COPY FROM ends it with 57014, as PostgreSQL
    does, and none of the rows sent before or after the cancel land."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        fresh(conn, "cin_cancel")
        cur = conn.cursor()
        with pytest.raises(psycopg.errors.QueryCanceled):
            with cur.copy("COPY cin_cancel (id, name) FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"r{i}"))
                conn.cancel()
                time.sleep(0.5)
                for i in range(1000, 2000):
                    copy.write_row((i, f"r{i}"))
        assert rows(conn, "cin_cancel") == []
        # The connection keeps working.
        with cur.copy("COPY cin_cancel (id, name) FROM STDIN") as copy:
            copy.write_row((1, "one"))
        assert conn.execute("SELECT count(*) FROM cin_cancel").fetchone() == (1,)
