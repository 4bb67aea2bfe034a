"""pgjdbc (Debian's libpostgresql-jdbc-java on the installed JDK): the
DatabaseMetaData calls DBeaver and JDBC BI tools make on connect, prepared
statements past prepareThreshold, fetchSize streaming, result metadata."""

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from sluice_fixtures import PASSWORD, USER

JAR = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).resolve().parent / "jdbc" / "JdbcProbe.java"


@pytest.mark.skipif(not JAR.exists() or not shutil.which("java"), reason="pgjdbc jar or java missing (tests/run.sh installs them)")
def test_pgjdbc(gateway, lake, matrix):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS jdbc_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    url = f"jdbc:postgresql://127.0.0.1:{gateway.pg_port}/sluice"
    r = subprocess.run(
        ["java", "-cp", str(JAR), str(PROBE), url, USER, PASSWORD, "jdbc_sales"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(lines) >= 10, r.stdout + r.stderr
    for line in lines:
        status, rest = line.split(" ", 1)
        feature, _, note = rest.partition(": ")
        matrix.record("pgjdbc", feature, status == "PASS", note)
