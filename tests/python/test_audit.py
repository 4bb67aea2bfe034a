"""The audit trail over the wire: every statement on both protocols —
successful, refused, malformed — lands in the JSON-lines log and in
`system.audit` with user, address, protocol, SQLSTATE, rows, bytes and
duration; passwords never do; only superusers read it."""

import json
import time

import psycopg
import pytest

from sluice_fixtures import USER, Gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("audit") / "data").start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE USER auditee PASSWORD 'cleartext-Secret-42'")
        c.execute("CREATE TABLE default.audited AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS t(id, v)")
        c.execute("GRANT SELECT ON default.audited TO auditee")
    yield g
    g.stop()


def records(g, where, want=1, timeout=10):
    """Rows of system.audit matching `where`, once at least `want` are there."""
    deadline = time.time() + timeout
    while True:
        with psycopg.connect(g.dsn(), autocommit=True) as c:
            cur = c.execute(
                "SELECT user_name, protocol, client_addr, statement, outcome, sqlstate, message, rows, bytes, "
                f"duration_ms, session_id FROM system.audit WHERE {where} ORDER BY time"
            )
            cols = [d.name for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        if len(rows) >= want or time.time() > deadline:
            return rows
        time.sleep(0.1)


def test_statements_of_both_protocols_are_audited(gw):
    with psycopg.connect(gw.dsn(user="auditee", password="cleartext-Secret-42"), autocommit=True) as c:
        assert c.execute("SELECT id, v FROM default.audited ORDER BY id").fetchall() == [(1, "a"), (2, "b"), (3, "c")]
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM default.nowhere")
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("SELEC 1", prepare=False)
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM system.audit")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DROP TABLE default.audited")
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(
        f"grpc://127.0.0.1:{gw.flight_port}",
        db_kwargs={"username": "auditee", "password": "cleartext-Secret-42"},
        autocommit=True,
    ) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM default.audited")
        assert cur.fetchall() == [(3,)]

    rows = records(gw, "user_name = 'auditee'", want=6)
    by_statement = {r["statement"]: r for r in rows}
    ok = by_statement["SELECT id, v FROM default.audited ORDER BY id"]
    assert (ok["protocol"], ok["client_addr"], ok["outcome"], ok["sqlstate"], ok["rows"]) == (
        "pg", "127.0.0.1", "ok", "00000", 3)
    assert ok["bytes"] > 0 and ok["duration_ms"] >= 0
    for sql, state in [
        ("SELECT * FROM default.nowhere", "42P01"),
        ("SELEC 1", "42601"),
        ("SELECT * FROM system.audit", "42P01"),
        ("DROP TABLE default.audited", "42501"),
    ]:
        r = by_statement[sql]
        assert (r["outcome"], r["sqlstate"]) == ("error", state), r
        assert r["message"], r
    flight = [r for r in rows if r["protocol"] == "flight"]
    assert flight and flight[-1]["statement"] == "SELECT count(*) AS n FROM default.audited", flight
    assert (flight[-1]["rows"], flight[-1]["client_addr"], flight[-1]["sqlstate"]) == (1, "127.0.0.1", "00000")
    # one session id for the pg connection's statements
    assert len({r["session_id"] for r in rows if r["protocol"] == "pg"}) == 1


def test_passwords_never_reach_the_log(gw):
    with psycopg.connect(gw.dsn(), autocommit=True) as c:
        c.execute("ALTER USER auditee PASSWORD 'rotated-Secret-77'")
        c.execute("ALTER USER auditee PASSWORD 'cleartext-Secret-42'")
    rows = records(gw, "statement LIKE 'ALTER USER auditee%'", want=2)
    assert [r["statement"] for r in rows] == ["ALTER USER auditee PASSWORD '***'"] * 2
    text = (gw.data_dir / "audit.jsonl").read_text()
    assert "Secret" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["statement"].startswith("CREATE USER auditee PASSWORD '***'") for line in lines)
    assert all({"time_us", "user", "protocol", "sqlstate", "rows", "bytes", "duration_ms"} <= line.keys() for line in lines)


def test_only_superusers_read_the_audit(gw):
    rows = records(gw, f"user_name = '{USER}'")
    assert rows, "the administrator's own statements are there"
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(
        f"grpc://127.0.0.1:{gw.flight_port}",
        db_kwargs={"username": "auditee", "password": "cleartext-Secret-42"},
        autocommit=True,
    ) as conn, conn.cursor() as cur:
        with pytest.raises(Exception) as e:
            cur.execute("SELECT * FROM system.audit")
        assert "NOT_FOUND" in str(e.value).upper() or "not found" in str(e.value) or "does not exist" in str(e.value)
