"""Bad input: SQLSTATEs, wrong password, wrong database, cancel, and garbage
on both ports — each only ever hurts its own connection."""

import socket
import struct
import threading
import time

import psycopg
import pytest


def sqlstate_of(gateway, sql):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            return e.sqlstate
    return None


def test_sqlstates(gateway):
    assert sqlstate_of(gateway, "SELEC 1") == "42601"
    assert sqlstate_of(gateway, "SELECT * FROM no_such_table") == "42P01"
    assert sqlstate_of(gateway, "SELECT no_such_column FROM (SELECT 1 AS a) t") == "42703"
    assert sqlstate_of(gateway, "CREATE TABLE nosuchschema.t AS SELECT 1") == "3F000"


def _connect_error(gateway, **kw):
    import asyncio

    import asyncpg

    async def go():
        args = dict(host="127.0.0.1", port=gateway.pg_port, user="sluice", password=gateway.password, database="sluice")
        args.update(kw)
        conn = await asyncpg.connect(**args)
        await conn.close()

    try:
        asyncio.run(go())
    except asyncpg.PostgresError as e:
        return e.sqlstate
    return None


INTERNALS = ["DataFusionError", "Optimizer rule", "Job ", "Arrow error", "ArrowError", "Shared(", "bug report", ".rs:"]


@pytest.mark.parametrize(
    "sql, state, text",
    [
        ("SELECT a / b FROM default.err_texts", "22012", "division by zero"),
        ("SELECT a / b FROM default.err_texts GROUP BY a, b", "22012", "division by zero"),
        ("SELECT CAST(s AS INT) FROM default.err_texts", "22P02", "Cannot cast string 'x'"),
        ("SELECT CAST('x' AS INT)", "22P02", "Cannot cast string 'x'"),
        ("SELECT * FROM default.err_texts WHERE a = 'abc'", "22P02", "Cannot cast string 'abc'"),
        ("SELECT sum(s) FROM default.err_texts", "42883", "function sum(Utf8) does not exist"),
        ("SELECT 1/0", "22012", "division by zero"),
    ],
)
def test_error_texts_name_the_cause_not_the_internals(gateway, sql, state, text):
    """On the cluster and in the planner alike: PostgreSQL's SQLSTATE, a
    message about the data, nothing of job ids, wrappers or bug boilerplate."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS default.err_texts AS "
            "SELECT * FROM (VALUES (1, 0, 'x'), (2, 1, '5')) AS v(a, b, s)"
        )
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql)
    message = e.value.diag.message_primary
    assert (e.value.sqlstate, text in message) == (state, True), message
    assert not [i for i in INTERNALS if i in message], message


def test_wrong_password_is_28p01(gateway):
    assert _connect_error(gateway, password="wrong") == "28P01"
    assert _connect_error(gateway, user="nobody") == "28P01"
    # libpq-based clients see the same failure
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(gateway.dsn(password="wrong"))


def test_unknown_database_is_3d000(gateway):
    assert _connect_error(gateway, database="other") == "3D000"


def test_cancel_long_query(gateway, workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = workdir / "big"
    d.mkdir(exist_ok=True)
    pq.write_table(pa.table({"k": pa.array(range(200_000), pa.int64())}), d / "big.parquet")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS big STORED AS PARQUET LOCATION '{d}/'")
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as e:
            conn.execute("SELECT count(*) FROM big a CROSS JOIN big b WHERE a.k + b.k = -1")
        elapsed = time.monotonic() - t0
        assert e.value.sqlstate == "57014"
        assert elapsed < 1.0 + 2.0, f"cancel took {elapsed - 1.0:.2f}s"
        # the same connection and the gateway keep working
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert gateway.alive()


def startup_packet(user="sluice", database="sluice"):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def send_garbage(port, payload, timeout=5):
    """Sends raw bytes on a fresh connection and reads until the server closes it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f" + b"garbage-after-ssl-request",  # SSLRequest then junk
        b"\x00\x00\x00\x03",  # length shorter than the header
        b"\xff\xff\xff\xff" + b"A" * 64,  # absurd length
        struct.pack("!II", 16, 1234) + b"\x01\x02\x03\x04\x05\x06\x07\x08",  # unknown protocol
        bytes(range(256)) * 4,  # random bytes
    ],
)
def test_garbage_on_pg_port_hurts_only_its_connection(gateway, payload):
    with psycopg.connect(gateway.dsn(), autocommit=True) as other:
        send_garbage(gateway.pg_port, payload)
        assert other.execute("SELECT 42").fetchone() == (42,)
    assert gateway.alive()


def test_garbage_on_flight_port_hurts_only_its_connection(gateway):
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(gateway.flight_uri(), db_kwargs={"username": "sluice", "password": gateway.password}, autocommit=True) as conn:
        for payload in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 100, bytes(range(256)) * 8, b"GET / HTTP/1.1\r\n\r\n"):
            send_garbage(gateway.flight_port, payload)
            with conn.cursor() as cur:
                cur.execute("SELECT 7 AS x")
                assert cur.fetchone() == (7,)
    assert gateway.alive()


def test_half_open_startup_does_not_block_others(gateway):
    s = socket.create_connection(("127.0.0.1", gateway.pg_port), timeout=5)
    try:
        pkt = startup_packet()
        s.sendall(pkt[: len(pkt) // 2])  # never finish the startup packet
        with psycopg.connect(gateway.dsn(), autocommit=True) as other:
            assert other.execute("SELECT 1").fetchone() == (1,)
    finally:
        s.close()
