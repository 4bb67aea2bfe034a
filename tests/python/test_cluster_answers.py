"""Same answers as DataFusion: every query of cluster_queries.py runs as a
Ballista job (2 in-process executors) and in the gateway alone
(`SET sluice.execution = 'gateway'`, DataFusion in one process, same plan
and functions), under several session settings, and both answers must be
equal. A query that fails on one side only is a difference too."""

import decimal
import math
import time

import psycopg
import pytest

from cluster_queries import ORDERED, QUERIES, SETTINGS, SMALL, TINY_BATCH
from sluice_fixtures import Gateway


@pytest.fixture(scope="module")
def gw(workdir):
    g = Gateway(workdir / "answers", extra=["--demo", "--demo-scale", "0.01"]).start(timeout=300)
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        values = ", ".join(
            "(" + ", ".join("NULL" if x is None else (f"'{x}'" if isinstance(x, str) else repr(x)) for x in row) + ")"
            for row in SMALL
        )
        c.execute(
            "CREATE TABLE tpch.t AS SELECT CAST(k AS INT) AS k, CAST(v AS INT) AS v, CAST(s AS TEXT) AS s, "
            f"CAST(f AS DOUBLE PRECISION) AS f FROM (VALUES {values}) AS x(k, v, s, f)"
        )
    yield g
    g.stop()


def normal(value):
    """A value comparable across runs: floats to 9 significant digits (the
    order of a distributed sum differs), lists and dicts element-wise."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value == 0:
            return value
        return float(f"{value:.9g}")
    if isinstance(value, decimal.Decimal):
        return float(f"{float(value):.12g}")
    if isinstance(value, (list, tuple)):
        return tuple(normal(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, normal(v)) for k, v in value.items()))
    return value


def sort_key(row):
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in row)


def answer(conn, sql, ordered):
    try:
        rows = [tuple(normal(v) for v in r) for r in conn.execute(sql).fetchall()]
    except psycopg.Error as e:
        return ("error", type(e).__name__, str(e).splitlines()[0])
    return rows if ordered else sorted(rows, key=sort_key)


def job_partitions(g):
    return g.metrics().get("sluice_job_partitions_total", 0.0)


def run_suite(g, settings, queries):
    """Differences between the cluster's and the gateway's answers, and how
    many queries ran as cluster jobs."""
    diffs, on_cluster = [], 0
    with psycopg.connect(g.dsn(), autocommit=True) as cluster, psycopg.connect(g.dsn(), autocommit=True) as local:
        for c in (cluster, local):
            c.execute("SET search_path TO tpch")
            for k, v in settings.items():
                c.execute(f"SET {k} = '{v}'")
        local.execute("SET sluice.execution = 'gateway'")
        for name, sql, ordered in queries:
            before = job_partitions(g)
            t0 = time.time()
            got = answer(cluster, sql, ordered == ORDERED)
            took = time.time() - t0
            if job_partitions(g) > before:
                on_cluster += 1
            want = answer(local, sql, ordered == ORDERED)
            if got != want:
                diffs.append(f"{name} {settings}: cluster {str(got)[:300]} vs gateway {str(want)[:300]}")
            # A cluster query of this suite takes well under a second.
            assert took < 60, f"{name} {settings} took {took:.0f} s on the cluster"
    return diffs, on_cluster


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k.rsplit('.', 1)[1]}={v}" for k, v in s.items()) or "defaults")
def test_cluster_answers_equal_datafusion(gw, settings):
    diffs, on_cluster = run_suite(gw, settings, QUERIES)
    assert not diffs, f"{len(diffs)} of {len(QUERIES)} queries differ:\n" + "\n".join(diffs)
    # The comparison is only worth something if the queries did run on the
    # cluster (a few, like the recursive CTE, run in the gateway).
    assert on_cluster >= len(QUERIES) * 0.9, f"only {on_cluster} of {len(QUERIES)} queries ran on the cluster"


def test_tiny_batches_on_the_small_table(gw):
    small = [(n, sql, o) for n, sql, o in QUERIES if " t " in f" {sql} " or " t)" in sql or "from t" in sql]
    assert len(small) >= 10
    diffs, on_cluster = run_suite(gw, TINY_BATCH, small)
    assert not diffs, f"{len(diffs)} of {len(small)} queries differ:\n" + "\n".join(diffs)
    assert on_cluster >= len(small) * 0.8


def test_execution_setting_is_checked(gw):
    with psycopg.connect(gw.dsn(), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SET sluice.execution = 'elsewhere'")
        c.execute("SET sluice.execution = 'GATEWAY'")
        assert c.execute("SHOW sluice.execution").fetchone()[0] == "gateway"
        before = job_partitions(gw)
        assert c.execute("select count(*) from tpch.lineitem").fetchone()[0] > 0
        assert job_partitions(gw) == before, "sluice.execution = gateway must not submit a job"
        c.execute("RESET sluice.execution")
        assert c.execute("SHOW sluice.execution").fetchone()[0] == "auto"
