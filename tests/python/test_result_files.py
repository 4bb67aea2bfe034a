"""Result files on the executors' disks: a query read by its one reader
(psql, a driver, a single Flight stream) has its result files removed as
soon as it was read to the end, not kept for Ballista's 300 s; results split
into Flight endpoints stay until their parts are read or expire."""

import time

import psycopg
import pytest

from sluice_fixtures import Gateway
from test_flight import _statement_descriptor
from test_flight_endpoints import _session

fl = pytest.importorskip("pyarrow.flight")


def _job_dirs(g):
    return {p.name for p in (g.data_dir / "executors" / "local").iterdir()}


def _gone_within(g, dirs, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not dirs & _job_dirs(g):
            return True
        time.sleep(0.1)
    return False


def test_results_read_once_are_removed_and_parts_are_kept(workdir, lake):
    g = Gateway(workdir / "gw-results").start()
    try:
        with psycopg.connect(g.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE EXTERNAL TABLE rf_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
            rows = conn.execute("SELECT id, item FROM rf_sales").fetchall()
            assert len(rows) == 1000
            ran = _job_dirs(g)
            # The job's directory may already be gone; if not, it must go.
            assert _gone_within(g, ran), f"result files of a read query still there: {ran}"

            # Parts of a result in endpoints are kept for their readers.
            client = fl.FlightClient(g.flight_uri())
            opts = _session(g, endpoints="2")
            info = client.get_flight_info(_statement_descriptor("SELECT id FROM rf_sales"), opts)
            assert len(info.endpoints) == 2
            parts = _job_dirs(g)
            assert parts, "a split result waits on disk for its parts"
            # Another query read to its end removes its own files only.
            before = _job_dirs(g)
            assert conn.execute("SELECT count(*) FROM (SELECT id FROM rf_sales) t").fetchone() == (1000,)
            assert _gone_within(g, _job_dirs(g) - before)
            assert parts <= _job_dirs(g)
            read = sum(client.do_get(e.ticket, opts).read_all().num_rows for e in info.endpoints)
            assert read == 1000

            # A result its reader abandons half-way goes as well.
            before = _job_dirs(g)
            one = _session(g)
            big = "SELECT a.id, a.item, b.id AS id2 FROM rf_sales a CROSS JOIN rf_sales b"
            info = client.get_flight_info(_statement_descriptor(big), one)
            reader = client.do_get(info.endpoints[0].ticket, one)
            assert reader.read_chunk().data.num_rows > 0
            started = _job_dirs(g) - before
            assert started, "the job's result files are on disk while it is read"
            reader.cancel()
            client.close()
            assert _gone_within(g, started), f"result files of an abandoned read still there: {started}"
    finally:
        g.stop()
