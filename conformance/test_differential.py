"""Differential check: the same queries over the same data on a real
PostgreSQL server and on Sluice over both protocols. Values and result
types must match where both systems answer; every known difference is
listed in differential_known.py with its reason, and a whole run writes
the summary to DIFFERENTIAL.md."""

import math
import re
from pathlib import Path

import psycopg
import pytest

import differential as data
from differential_known import KNOWN
from sluice_fixtures import PASSWORD, USER
from sqllogic import FlightEngine, render

OUT = Path(__file__).resolve().parent / "DIFFERENTIAL.md"


def norm(v):
    import datetime

    if isinstance(v, datetime.timedelta):
        return f"{v.total_seconds():.9g}s"
    if type(v).__name__ == "MonthDayNano":
        # Arrow's interval triple; months only when they are whole.
        months, days, nanos = v
        return f"{months}mon {days * 86400 + nanos / 1e9:.9g}s" if months else f"{days * 86400 + nanos / 1e9:.9g}s"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.9g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(norm(x) for x in v) + "]"
    import decimal

    if isinstance(v, decimal.Decimal):
        return f"{float(v):.9g}" if v == v else "NaN"
    return render(v)


def run_pg(conn, sql):
    try:
        cur = conn.execute(sql)
        types = [conn.adapters.types.get(d.type_code).name if conn.adapters.types.get(d.type_code) else str(d.type_code)
                 for d in cur.description]
        return types, [tuple(norm(v) for v in r) for r in cur.fetchall()], None
    except psycopg.Error as e:
        conn.rollback() if not conn.autocommit else None
        return None, None, (e.sqlstate or "error") + ": " + str(e).splitlines()[0][:100]


def run_flight(engine, sql):
    try:
        return [tuple(norm(v) for v in r) for r in engine.run(sql) or []], None
    except Exception as e:  # noqa: BLE001
        return None, str(e).splitlines()[0][:100]


def known_reason(sql):
    for pattern, reason in KNOWN:
        if re.search(pattern, sql):
            return pattern, reason
    return None, None


def test_differential_against_postgresql(gateway, reference_pg, matrix):
    with psycopg.connect(reference_pg.dsn(), autocommit=True) as ref:
        ref.execute("DROP TABLE IF EXISTS dtab")
        ref.execute(f"CREATE TABLE dtab ({data.COLUMNS})")
        ref.execute(f"INSERT INTO dtab VALUES {data.insert_values()}")
    with psycopg.connect(gateway.dsn(), autocommit=True) as s:
        s.execute("DROP SCHEMA IF EXISTS diffcheck CASCADE")
        s.execute("CREATE SCHEMA diffcheck")
        s.execute(data.sluice_create("diffcheck.dtab"))
    ref_q = data.queries("dtab")
    sl_q = data.queries("diffcheck.dtab")
    results = []
    flight = FlightEngine(gateway.flight_uri(), USER, PASSWORD)
    with psycopg.connect(reference_pg.dsn(), autocommit=True) as ref, psycopg.connect(gateway.dsn(), autocommit=True) as sl:
        ref.execute("SET extra_float_digits = 0")
        for rq, sq in zip(ref_q, sl_q):
            pt, pr, pe = run_pg(ref, rq)
            st, sr, se = run_pg(sl, sq)
            fr, fe = run_flight(flight, sq)
            diffs = []
            if pe and not se:
                diffs.append(f"PostgreSQL refuses ({pe}), Sluice answers")
            elif se and not pe:
                diffs.append(f"Sluice refuses: {se}")
            elif not pe:
                if pt != st:
                    diffs.append(f"types {pt} vs {st}")
                if pr != sr:
                    diffs.append(f"values {pr[:3]} vs {sr[:3]}")
                if fe:
                    diffs.append(f"Flight refuses: {fe}")
                elif fr != pr:
                    diffs.append(f"Flight values {fr[:3]}")
            results.append((rq, diffs))
    flight.close()
    agree = [q for q, d in results if not d]
    differ = [(q, d) for q, d in results if d]
    unknown = [(q, d) for q, d in differ if known_reason(q)[0] is None]
    used = {known_reason(q)[0] for q, _ in differ}
    stale = [p for p, _ in KNOWN if p not in used]
    lines = [
        "# Differential check against PostgreSQL 15",
        "",
        "Written by `conformance/test_differential.py` (run by `.ci/run`): the queries of",
        "`conformance/differential.py` over the same 8-row table on a real PostgreSQL 15 server and on",
        "Sluice through Postgres wire (extended, binary: values and result types) and Flight SQL (values).",
        "",
        f"**{len(results)} queries: {len(agree)} agree, {len(differ)} differ** (each difference below, with its reason).",
        "",
        "| query (PostgreSQL form) | difference | reason |",
        "|---|---|---|",
    ]
    for q, d in differ:
        reason = known_reason(q)[1] or "**unexplained**"
        cell = "; ".join(d).replace("|", "\\|")[:300]
        query = q.replace("|", "\\|")
        lines.append(f"| `{query}` | {cell} | {reason} |")
    if not unknown and not stale:
        OUT.write_text("\n".join(lines) + "\n")
    matrix.record(
        "differential vs PostgreSQL", "values and types (pg wire, Flight SQL)", not unknown and not stale,
        f"{len(agree)} of {len(results)} agree; {len(differ)} known differences" if not unknown and not stale
        else f"{len(unknown)} unexplained: " + " || ".join(f"{q} -> {d}" for q, d in unknown[:3]) + (f"; stale {stale}" if stale else ""),
    )
    print("\n".join(f"UNKNOWN {q} -> {d}" for q, d in unknown))
