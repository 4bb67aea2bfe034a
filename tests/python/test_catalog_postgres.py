"""Two gateways on one PostgreSQL catalog (`--catalog postgres://...`): each
sees the other's DDL, writes and roles within the poll interval, and
concurrent CTAS is serialized by the database."""

import threading
import time
import uuid

import psycopg
import pytest

import reference_pg
from sluice_fixtures import Gateway

POLL = 0.2


@pytest.fixture(scope="module")
def pg_server():
    assert reference_pg.available(), "PostgreSQL server binaries missing (tests/run.sh installs them)"
    server = reference_pg.ReferencePostgres().start()
    yield server
    server.stop()


@pytest.fixture
def pair(pg_server, workdir):
    name = f"cat_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = f"postgres://postgres@127.0.0.1:{pg_server.port}/{name}"
    base = workdir / name
    base.mkdir()
    warehouse = (base / "warehouse").as_uri() + "/"
    extra = ["--catalog", url, "--warehouse", warehouse, "--catalog-poll", str(POLL)]
    gateways = [Gateway(base / n, extra=extra, local_executors=1) for n in ("a", "b")]
    # Both start at once: installing the tables and `default` must not race.
    threads = [threading.Thread(target=g.start) for g in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g.alive() for g in gateways), [g.log_path.read_text()[-2000:] for g in gateways]
    yield gateways
    for g in gateways:
        g.stop()


def run(g, sql, params=None):
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else None


def eventually(check, timeout=10):
    """Seconds until `check()` holds (it may raise meanwhile)."""
    start = time.time()
    last = None
    while time.time() - start < timeout:
        try:
            if check():
                return time.time() - start
        except psycopg.Error as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s (last error: {last})")


def test_each_gateway_sees_the_others_tables_writes_and_roles(pair):
    a, b = pair
    run(a, "CREATE SCHEMA shared")
    run(a, "CREATE TABLE shared.t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(id, name)")
    seen = eventually(lambda: run(b, "SELECT count(*), sum(id) FROM shared.t") == [(2, 3)])
    assert seen < 5 * POLL + 1, seen

    run(b, "INSERT INTO shared.t VALUES (3, 'c')")
    eventually(lambda: run(a, "SELECT count(*), sum(id) FROM shared.t") == [(3, 6)])
    assert run(a, "SELECT name FROM shared.t ORDER BY id") == [("a",), ("b",), ("c",)]

    run(a, "CREATE USER ann WITH PASSWORD 'ann-secret-1'")
    run(a, "GRANT USAGE ON SCHEMA shared TO ann")
    run(a, "GRANT SELECT ON shared.t TO ann")

    def ann_reads_on_b():
        dsn = b.dsn(user="ann", password="ann-secret-1")
        with psycopg.connect(dsn) as c:
            return c.execute("SELECT count(*) FROM shared.t").fetchone() == (3,)

    eventually(ann_reads_on_b)

    run(b, "DROP TABLE shared.t")

    def gone_on_a():
        try:
            run(a, "SELECT * FROM shared.t")
        except psycopg.errors.UndefinedTable:
            return True
        return False

    eventually(gone_on_a)


def _race(pair, statements):
    """Runs statements[i] on gateway i, released together; returns each
    one's outcome (None or the error)."""
    barrier = threading.Barrier(len(statements))
    outcomes = [None] * len(statements)

    def one(i, g, sql):
        with psycopg.connect(g.dsn(), autocommit=True) as c:
            barrier.wait()
            try:
                c.execute(sql)
            except psycopg.Error as e:
                outcomes[i] = e

    threads = [threading.Thread(target=one, args=(i, g, s)) for i, (g, s) in enumerate(zip(pair, statements))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_concurrent_ctas_under_two_names_both_land_under_one_name_one_does(pair):
    a, b = pair
    run(a, "CREATE SCHEMA race")
    eventually(lambda: run(b, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'race'") == [(1,)])
    rows = {a: 200_000, b: 300_000}
    ctas = "CREATE TABLE race.{name} AS SELECT value AS id, value % 7 AS k FROM generate_series(1, {n})"
    assert _race(pair, [ctas.format(name=f"x_{i}", n=rows[g]) for i, g in enumerate(pair)]) == [None, None]
    for g in pair:
        eventually(lambda g=g: run(g, "SELECT (SELECT count(*) FROM race.x_0) AS x0, (SELECT count(*) FROM race.x_1) AS x1") == [(200_000, 300_000)])

    for round in range(3):
        name = f"same_{round}"
        outcomes = _race(pair, [ctas.format(name=name, n=rows[g]) for g in pair])
        failed = [o for o in outcomes if o is not None]
        assert len(failed) == 1, outcomes
        assert failed[0].sqlstate == "42P07", failed[0]
        winner = pair[outcomes.index(None)]
        for g in pair:
            # The loser's rows never show: the table holds exactly the winner's.
            eventually(lambda g=g: run(g, f"SELECT count(*) FROM race.{name}") == [(rows[winner],)])


def test_a_tls_only_catalog_is_reached_verified_and_refuses_the_wrong_ca(workdir):
    ca, cert, key = reference_pg.ca_and_leaf("catalog")
    other, _, _ = reference_pg.ca_and_leaf("someone else")
    server = reference_pg.ReferencePostgres.tls_only(cert, key).start()
    try:
        base = workdir / f"tls_{uuid.uuid4().hex[:8]}"
        base.mkdir()
        (base / "ca.pem").write_bytes(ca)
        (base / "other.pem").write_bytes(other)
        url = f"postgres://postgres@127.0.0.1:{server.port}/postgres"

        g = Gateway(base / "ok", extra=["--catalog", url + "?sslmode=require", "--catalog-ca-file", str(base / "ca.pem")], local_executors=1).start()
        try:
            run(g, "CREATE TABLE over_tls AS SELECT 1 AS x")
            assert run(g, "SELECT x FROM over_tls") == [(1,)]
        finally:
            g.stop()

        # Without a CA: encrypted, not authenticated, and the gateway says so.
        g = Gateway(base / "unverified", extra=["--catalog", url + "?sslmode=require"], local_executors=1).start()
        try:
            assert run(g, "SELECT x FROM over_tls") == [(1,)]
        finally:
            g.stop()
        assert "does not authenticate the server" in g.log_path.read_text()

        for name, extra, expect in [
            ("plain", ["--catalog", url + "?sslmode=disable"], "no encryption"),
            ("wrong_ca", ["--catalog", url + "?sslmode=require", "--catalog-ca-file", str(base / "other.pem")], "certificate"),
        ]:
            bad = Gateway(base / name, extra=extra, local_executors=1)
            with pytest.raises(RuntimeError) as refused:
                bad.start(timeout=30)
            assert expect in str(refused.value), str(refused.value)[-1500:]
    finally:
        server.stop()
