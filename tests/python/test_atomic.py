"""Writes commit atomically: a killed, failed, cancelled or racing write
leaves each table exactly as it was or exactly as written, never a mix, and
leaves no files behind; every write is visible to the next statement on any
connection; a view that refers to itself is refused."""

import signal
import sqlite3
import threading
import time
from urllib.parse import unquote

import psycopg
import pytest

from sluice_fixtures import Gateway

BIG = 2_000_000


def big_select(n=BIG, offset=0):
    """Rows slow enough to write (an md5 per row) that a kill or a cancel
    lands while the write is running."""
    return (
        f"SELECT CAST(value + {offset} AS BIGINT) AS v, md5(CAST(value AS VARCHAR)) AS s, "
        f"CAST(value % 7 AS BIGINT) AS k FROM generate_series(1, {n})"
    )


def manifest(gw, db, name):
    """Paths of the table's committed files, read from the catalog."""
    con = sqlite3.connect(f"file:{gw.data_dir / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT f.path FROM files f JOIN tbls t ON t.id = f.table_id WHERE t.db = ? AND t.name = ?", (db, name)
        ).fetchall()
        return sorted(unquote(r[0]) for r in rows)
    finally:
        con.close()


def files_on_disk(gw, db, name):
    base = gw.data_dir / "warehouse"
    root = (base if db == "default" else base / f"{db}.db") / name
    return sorted(unquote(p.as_uri()) for p in root.rglob("*.parquet")) if root.exists() else []


def count(gw, sql):
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.fixture
def own_gateway(workdir, request):
    g = Gateway(workdir / f"gw-{request.node.name}").start()
    yield g
    g.stop(signal.SIGKILL)


def test_every_write_is_visible_to_the_next_statement_at_once(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as a, psycopg.connect(gateway.dsn(), autocommit=True) as b:
        a.execute("CREATE TABLE vis PARTITIONED BY (p) AS SELECT 1 AS v, 1 AS p")
        assert b.execute("SELECT count(*) FROM vis").fetchone()[0] == 1
        a.execute("INSERT INTO vis VALUES (2, 1), (3, 2)")
        assert b.execute("SELECT count(*) FROM vis").fetchone()[0] == 3
        assert b.execute("SELECT count(*) FROM vis WHERE p = 2").fetchone()[0] == 1
        a.execute("INSERT OVERWRITE TABLE vis PARTITION (p = 1) SELECT 9")
        assert b.execute("SELECT v FROM vis ORDER BY v").fetchall() == [(3,), (9,)]
        a.execute("ALTER TABLE vis DROP PARTITION (p = 2)")
        assert b.execute("SELECT v FROM vis").fetchall() == [(9,)]
        a.execute("ALTER TABLE vis ADD PARTITION (p = 3)")
        assert [r[0] for r in b.execute("SHOW PARTITIONS vis").fetchall()] == ["p=1", "p=3"]
        a.execute("CREATE OR REPLACE TABLE vis AS SELECT 'x' AS s")
        assert b.execute("SELECT * FROM vis").fetchall() == [("x",)]
        a.execute("DROP TABLE vis")
        with pytest.raises(psycopg.Error) as e:
            b.execute("SELECT * FROM vis")
        assert e.value.sqlstate == "42P01"
        # The same name again with other columns reads exactly its new rows.
        a.execute("DROP TABLE IF EXISTS t1")
        a.execute("CREATE TABLE t1 (t1_id INT, t1_name VARCHAR) AS VALUES (11, 'a'), (22, 'b')")
        a.execute("DROP TABLE t1")
        a.execute("CREATE TABLE t1 (x VARCHAR, y DOUBLE) AS VALUES ('p', 1.5)")
        assert b.execute("SELECT * FROM t1").fetchall() == [("p", 1.5)]
        # Partitioned INSERT is visible at once (the stale-count bug).
        a.execute("CREATE TABLE pins PARTITIONED BY (k) AS SELECT 1 AS v, 'a' AS k")
        assert b.execute("SELECT count(*) FROM pins").fetchone()[0] == 1
        a.execute("INSERT INTO pins VALUES (2, 'b'), (3, 'a')")
        assert b.execute("SELECT count(*) FROM pins").fetchone()[0] == 3


def test_failed_and_cancelled_writes_leave_the_table_as_it_was(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE keep AS SELECT 1 AS v")
        before = manifest(gateway, "default", "keep")
        assert files_on_disk(gateway, "default", "keep") == before
        bad = "SELECT CAST(x AS BIGINT) AS v FROM (VALUES ('2'), ('not-a-number')) AS t(x)"
        with pytest.raises(psycopg.Error):
            conn.execute(f"CREATE OR REPLACE TABLE keep AS {bad}")
        with pytest.raises(psycopg.Error):
            conn.execute(f"INSERT INTO keep {bad}")
        assert conn.execute("SELECT * FROM keep").fetchall() == [(1,)]
        assert manifest(gateway, "default", "keep") == before
        assert files_on_disk(gateway, "default", "keep") == before

        # Cancelled mid-write (a Postgres CancelRequest).
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        try:
            conn.execute(f"INSERT INTO keep SELECT v FROM ({big_select()}) WHERE s <> ''")
            pytest.skip("the insert finished before the cancel")
        except psycopg.Error as e:
            assert e.sqlstate == "57014", e
        finally:
            timer.cancel()
        deadline = time.time() + 10
        while files_on_disk(gateway, "default", "keep") != before and time.time() < deadline:
            time.sleep(0.1)
        assert files_on_disk(gateway, "default", "keep") == before
        assert conn.execute("SELECT * FROM keep").fetchall() == [(1,)]


def test_racing_ctas_of_one_name_one_wins_intact(gateway):
    barrier = threading.Barrier(2)
    results = [None, None]

    def run(i):
        try:
            with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
                barrier.wait()
                conn.execute(f"CREATE TABLE race AS {big_select(200_000, offset=i * 10_000_000)}")
                results[i] = "ok"
        except psycopg.Error as e:
            results[i] = e.sqlstate

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["42P07", "ok"], results
    winner = results.index("ok")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        n, lo = conn.execute("SELECT count(*), min(v) FROM race").fetchone()
    assert n == 200_000 and lo == 1 + winner * 10_000_000
    assert files_on_disk(gateway, "default", "race") == manifest(gateway, "default", "race")


@pytest.mark.parametrize("kill_after", [0.3, 0.8, 1.5])
def test_killed_writes_are_old_or_new_and_leave_no_orphans(own_gateway, kill_after):
    gw = own_gateway
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE ins AS SELECT CAST(1 AS BIGINT) AS v, 'x' AS s, CAST(1 AS BIGINT) AS k")
        conn.execute("CREATE TABLE rep PARTITIONED BY (k) AS SELECT CAST(1 AS BIGINT) AS v, 'x' AS s, CAST(1 AS BIGINT) AS k")
    statements = {
        "ctas": f"CREATE TABLE fresh PARTITIONED BY (k) AS {big_select()}",
        "ins": f"INSERT INTO ins {big_select()}",
        "rep": f"CREATE OR REPLACE TABLE rep PARTITIONED BY (k) AS {big_select()}",
    }
    finished = []

    def run(sql):
        try:
            with psycopg.connect(gw.dsn(), autocommit=True) as conn:
                conn.execute(sql)
                finished.append(sql)
        except psycopg.Error:
            pass

    threads = [threading.Thread(target=run, args=(s,)) for s in statements.values()]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    gw.stop(signal.SIGKILL)
    done_before_kill = len(finished)
    for t in threads:
        t.join(timeout=30)
    gw.start()

    ctas = count(gw, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'fresh'")
    if ctas:
        assert count(gw, "SELECT count(*) FROM fresh") == BIG
    assert count(gw, "SELECT count(*) FROM ins") in (1, 1 + BIG)
    rep = count(gw, "SELECT count(*) FROM rep")
    assert rep in (1, BIG)
    if rep == BIG:
        assert count(gw, "SELECT min(v) FROM rep") == 1
    # The start-up sweep removed what the killed writes had put.
    for name in ("fresh", "ins", "rep"):
        assert files_on_disk(gw, "default", name) == manifest(gw, "default", name), name
    assert done_before_kill < len(statements), "the kill landed after every write had finished"


def test_a_view_that_reaches_itself_is_refused(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE VIEW cyc_a AS SELECT 1 AS x")
        conn.execute("CREATE VIEW cyc_b AS SELECT * FROM cyc_a")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CREATE OR REPLACE VIEW cyc_a AS SELECT * FROM cyc_b")
        assert e.value.sqlstate == "42P17", e.value
        assert "cyc_a" in str(e.value)
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CREATE OR REPLACE VIEW cyc_a AS SELECT * FROM cyc_a")
        assert e.value.sqlstate in ("42P17", "42P01"), e.value
        assert conn.execute("SELECT * FROM cyc_b").fetchall() == [(1,)]
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_replaced_files_are_kept_for_the_grace_period_then_deleted(workdir):
    gw = Gateway(workdir / "gw-grace", gc_grace=2).start()
    try:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE graced AS SELECT 1 AS v")
            old = manifest(gw, "default", "graced")
            conn.execute("CREATE OR REPLACE TABLE graced AS SELECT 2 AS v")
            new = manifest(gw, "default", "graced")
            assert conn.execute("SELECT * FROM graced").fetchall() == [(2,)]
        # Queries planned before the replace can still read the old files...
        assert files_on_disk(gw, "default", "graced") == sorted(old + new)
        # ...until the grace period is over.
        deadline = time.time() + 15
        while files_on_disk(gw, "default", "graced") != new and time.time() < deadline:
            time.sleep(0.2)
        assert files_on_disk(gw, "default", "graced") == new
    finally:
        gw.stop()


def test_prepared_statements_follow_a_replaced_table(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as a, psycopg.connect(gateway.dsn(), autocommit=True) as b:
        a.execute("CREATE TABLE prep_t AS SELECT 1 AS v")
        q = "SELECT sum(v) FROM prep_t WHERE v > %s"
        for _ in range(3):  # server-side prepared after the first runs
            assert b.execute(q, (0,), prepare=True).fetchone() == (1,)
        a.execute("CREATE OR REPLACE TABLE prep_t AS SELECT 5 AS v UNION ALL SELECT 6")
        assert b.execute(q, (0,), prepare=True).fetchone() == (11,)
        a.execute("INSERT INTO prep_t VALUES (1)")
        assert b.execute(q, (0,), prepare=True).fetchone() == (12,)


def test_replacing_a_relation_of_another_kind_is_refused(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kind_t AS SELECT 1 AS v")
        for sql in ("CREATE OR REPLACE VIEW kind_t AS SELECT 2 AS v",):
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            assert e.value.sqlstate == "42809", e.value
        assert conn.execute("SELECT * FROM kind_t").fetchall() == [(1,)]
        conn.execute("CREATE VIEW kind_v AS SELECT 1 AS v")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CREATE OR REPLACE TABLE kind_v AS SELECT 2 AS v")
        assert e.value.sqlstate == "42809", e.value


def test_partition_specs_name_partitions_as_written(gateway):
    """`k = 01` on an INT column is partition k=1: OVERWRITE replaces it and
    DROP finds it."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE canon PARTITIONED BY (k) AS SELECT 1 AS v, CAST(1 AS INT) AS k UNION ALL SELECT 2, CAST(2 AS INT)")
        conn.execute("INSERT OVERWRITE TABLE canon PARTITION (k = '01') SELECT 10")
        assert conn.execute("SELECT v, k FROM canon ORDER BY k").fetchall() == [(10, 1), (2, 2)]
        assert [r[0] for r in conn.execute("SHOW PARTITIONS canon").fetchall()] == ["k=1", "k=2"]
        conn.execute("ALTER TABLE canon DROP PARTITION (k = '02')")
        assert conn.execute("SELECT v FROM canon").fetchall() == [(10,)]
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CREATE TABLE canon_list PARTITIONED BY (l) AS SELECT 1 AS v, make_array(1, 2) AS l")
        assert e.value.sqlstate == "0A000", e.value
