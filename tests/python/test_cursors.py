"""SQL cursors (DECLARE / FETCH / MOVE / CLOSE) as psycopg's server-side
cursors and psql use them; rows come from the query's stream as fetched."""

import psycopg
import pytest


def test_psycopg_server_side_cursor_pages_through_a_lake_table(gateway, lake):
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS cur_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        conn.commit()
        with conn.cursor(name="pager") as cur:
            cur.itersize = 100
            cur.execute("SELECT id FROM cur_sales ORDER BY id")
            assert cur.fetchmany(3) == [(0,), (1,), (2,)]
            cur.scroll(2)  # MOVE FORWARD 2
            assert cur.fetchone() == (5,)
            rest = cur.fetchall()
            assert rest[0] == (6,) and rest[-1] == (999,) and len(rest) == 994
        conn.commit()


def test_hold_cursors_outlive_commit_others_do_not(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as e:
            conn.execute("DECLARE c CURSOR FOR SELECT 1")
        assert e.value.sqlstate == "25P01"
        conn.execute("BEGIN")
        conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT CAST(value AS BIGINT) AS v FROM generate_series(1, 10)")
        conn.execute("DECLARE n NO SCROLL CURSOR FOR SELECT 1 AS v")
        conn.execute("COMMIT")
        cur = conn.execute("FETCH 4 FROM h")
        assert cur.fetchall() == [(1,), (2,), (3,), (4,)]
        assert cur.statusmessage == "FETCH 4"
        assert conn.execute("MOVE 3 IN h").statusmessage == "MOVE 3"
        assert conn.execute("FETCH NEXT FROM h").fetchall() == [(8,)]
        assert conn.execute("FETCH ALL FROM h").fetchall() == [(9,), (10,)]
        assert conn.execute("FETCH ALL FROM h").fetchall() == []
        with pytest.raises(psycopg.Error) as e:
            conn.execute("FETCH 1 FROM n")
        assert e.value.sqlstate == "34000", "a cursor without HOLD closed at COMMIT"
        with pytest.raises(psycopg.Error) as e:
            conn.execute("FETCH PRIOR FROM h")
        assert e.value.sqlstate == "0A000"
        conn.execute("CLOSE h")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CLOSE h")
        assert e.value.sqlstate == "34000"
        conn.execute("BEGIN")
        conn.execute("DECLARE a CURSOR WITH HOLD FOR SELECT 1")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("DECLARE a CURSOR WITH HOLD FOR SELECT 1")
        assert e.value.sqlstate == "42P03"
        conn.execute("ROLLBACK")
        conn.execute("CLOSE ALL")
