"""Query history and control over real clients: system.queries lists running
and ended statements of every protocol, the running statement's id is
visible to its session (and as a Flight header), sluice_cancel_query
cancels for the owner or a superuser and refuses anyone else, and the
statement metrics are labelled by protocol."""

import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest

from sluice_fixtures import PASSWORD, USER, Gateway


@pytest.fixture(scope="module")
def gw(workdir):
    g = Gateway(workdir / "queries").start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE USER alice PASSWORD 'alice-pass'")
        c.execute("CREATE USER mallory PASSWORD 'mallory-pass'")
    yield g
    g.stop()


def connect(g, user=USER, password=PASSWORD):
    return psycopg.connect(g.dsn(user=user, password=password), autocommit=True)


def running_id(admin, marker, timeout=10):
    """The id of the running statement whose text holds `marker`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = admin.execute(
            "select query_id, user_name, protocol from system.queries where state = 'running' and query like %s",
            (f"%{marker}%",),
        ).fetchall()
        rows = [r for r in rows if "system.queries" not in r[0]]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"no running statement with {marker}")


def sleep_in_thread(g, user, password, marker):
    box = {}

    def run():
        with connect(g, user, password) as c:
            try:
                c.execute(f"select pg_sleep(30) as {marker}")
                box["done"] = True
            except psycopg.Error as e:
                box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_statements_are_listed_with_their_id_rows_and_protocol(gw):
    with connect(gw) as c:
        qid = c.execute("select current_setting('sluice.query_id')").fetchone()[0]
        c.execute("select * from (values (1), (2), (3)) t(x)").fetchall()
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1 / 0")
        rows = c.execute(
            "select query_id, state, user_name, protocol, rows, sqlstate, query from system.queries "
            "where session_id = (select session_id from system.queries where query_id = %s) order by started",
            (qid,),
        ).fetchall()
    by_text = {r[6]: r for r in rows}
    assert by_text["select current_setting('sluice.query_id')"][:5] == (qid, "finished", USER, "pg", 1)
    assert by_text["select * from (values (1), (2), (3)) t(x)"][4] == 3
    failed = by_text["select 1 / 0"]
    assert (failed[1], failed[5]) == ("failed", "22012")

    with flight_sql.connect(gw.flight_uri(), db_kwargs={"username": USER, "password": PASSWORD}, autocommit=True) as f:
        with f.cursor() as cur:
            cur.execute("select 42 as flight_marker")
            assert cur.fetchall() == [(42,)]
    with connect(gw) as c:
        got = c.execute(
            "select protocol, state, rows from system.queries where query = 'select 42 as flight_marker'"
        ).fetchall()
    assert ("flight", "finished", 1) in got, got


def test_superuser_cancels_any_query_others_are_refused(gw):
    t, box = sleep_in_thread(gw, "alice", "alice-pass", "su_cancel")
    try:
        with connect(gw) as admin:
            qid, user, protocol = running_id(admin, "su_cancel")
            assert (user, protocol) == ("alice", "pg")
            with connect(gw, "mallory", "mallory-pass") as m:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                    m.execute("select sluice_cancel_query(%s)", (qid,))
                assert "must be a superuser to cancel another user's query" in str(e.value)
            assert admin.execute("select sluice_cancel_query(%s)", (qid,)).fetchone() == (True,)
            t.join(10)
            assert isinstance(box.get("error"), psycopg.errors.QueryCanceled), box
            state = admin.execute(
                "select state, sqlstate from system.queries where query_id = %s", (qid,)
            ).fetchone()
            assert state == ("cancelled", "57014")
            # ended: nothing left to cancel
            assert admin.execute("select sluice_cancel_query(%s)", (qid,)).fetchone() == (False,)
            assert admin.execute("select sluice_cancel_query('no-such-query')").fetchone() == (False,)
    finally:
        t.join(35)


def test_owner_cancels_own_query(gw):
    t, box = sleep_in_thread(gw, "alice", "alice-pass", "own_cancel")
    try:
        with connect(gw) as admin:
            qid, _, _ = running_id(admin, "own_cancel")
        with connect(gw, "alice", "alice-pass") as alice:
            assert alice.execute("select sluice_cancel_query(%s)", (qid,)).fetchone() == (True,)
        t.join(10)
        assert isinstance(box.get("error"), psycopg.errors.QueryCanceled), box
    finally:
        t.join(35)


def test_statement_metrics_by_protocol(gw):
    with connect(gw) as c:
        c.execute("select 1").fetchall()
        assert gw.metrics().get('sluice_connections_open{protocol="pg"}') >= 1
    m = gw.metrics()
    assert m.get('sluice_statements_total{outcome="ok",protocol="pg"}', 0) >= 1, m
    assert m.get('sluice_statement_duration_seconds_count{protocol="pg"}', 0) >= 1
    assert 'sluice_result_rows_total{protocol="pg"}' in m
    assert "sluice_statements_running" in m
    # the rest of the operator's view, present after a workload
    assert m.get('sluice_connections_open{protocol="pg"}', 0) >= 0
    for name in ("sluice_jobs_rerun_total", "sluice_executors_lost", "sluice_tasks_running", "sluice_tasks_queued",
                 "sluice_executors_alive"):
        assert name in m, name
    for cache in ("parquet_footer", "partitions", "listings"):
        assert f'sluice_cache_lookups_total{{cache="{cache}",result="hit"}}' in m, cache


def test_flight_doget_carries_the_query_id(gw):
    import pyarrow.flight as fl

    from test_flight import _statement_descriptor

    seen = []

    class Capture(fl.ClientMiddleware):
        def received_headers(self, headers):
            seen.extend(headers.get("x-sluice-query-id", []))

    class Factory(fl.ClientMiddlewareFactory):
        def start_call(self, info):
            return Capture()

    fc = fl.FlightClient(gw.flight_uri(), middleware=[Factory()])
    opts = fl.FlightCallOptions(headers=[fc.authenticate_basic_token(USER, PASSWORD)])
    info = fc.get_flight_info(_statement_descriptor("select 7 as header_marker"), opts)
    assert fc.do_get(info.endpoints[0].ticket, opts).read_all().column("header_marker").to_pylist() == [7]
    assert len(seen) == 1, seen
    with connect(gw) as c:
        row = c.execute("select query, protocol, state from system.queries where query_id = %s", (seen[0],)).fetchone()
    assert row == ("select 7 as header_marker", "flight", "finished")
