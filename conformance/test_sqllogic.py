"""SQL semantics as sqllogictest files (conformance/slt), each run through
three engines: Postgres wire simple, Postgres wire extended (binary) and
Flight SQL. One matrix cell per engine and file."""

from pathlib import Path

import psycopg
import pytest

from sluice_fixtures import PASSWORD, USER
from sqllogic import FlightEngine, PgEngine, run_file

SLT = sorted((Path(__file__).resolve().parent / "slt").glob("*.slt"))
ENGINES = ["pg simple", "pg extended (binary)", "Flight SQL"]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_sqllogictest(gateway, engine_name, matrix):
    schema = "slt_" + engine_name.split()[0].lower() + ("_ext" if "extended" in engine_name else "")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    if engine_name == "Flight SQL":
        engine = FlightEngine(gateway.flight_uri(), USER, PASSWORD)
    else:
        engine = PgEngine(gateway.dsn(), extended="extended" in engine_name)
    try:
        for path in SLT:
            failures = run_file(engine, path, schema)
            matrix.record(f"sqllogictest: {engine_name}", path.stem, not failures, "; ".join(failures[:3]))
    finally:
        engine.close()
