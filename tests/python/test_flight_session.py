"""Flight SQL sessions with real clients: SetSessionOptions / GetSessionOptions
(catalog, schema, time_zone; endpoints and compression in
test_flight_endpoints.py) through ADBC's session options and raw gRPC,
CloseSession, and tickets that keep the options they were planned with."""

import json

import pyarrow as pa
import pytest

from test_flight import _pb_len, _varint, connect

grpc = pytest.importorskip("grpc")

ACTION = "/arrow.flight.protocol.FlightService/DoAction"
INVALID_NAME, INVALID_VALUE = 1, 2


def _fields(buf):
    """(field number, value) pairs of one protobuf message (varint and
    length-delimited fields, which is all these messages use)."""
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            value, i = _varint(buf, i)
        elif key & 7 == 1:
            value, i = int.from_bytes(buf[i : i + 8], "little", signed=True), i + 8
        elif key & 7 == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {key & 7}")
        out.append((key >> 3, value))
    return out


def _map(buf):
    """A proto map<string, message> field 1, as {key: message bytes}."""
    out = {}
    for field, entry in _fields(buf):
        assert field == 1
        kv = dict(_fields(entry))
        out[kv[1].decode()] = kv.get(2, b"")
    return out


def _option(value):
    """SessionOptionValue: a string, a bool, or None (unset)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return bytes([2 << 3 | 0, int(value)])
    return _pb_len(1, value.encode())


def _set_request(options):
    return b"".join(_pb_len(1, _pb_len(1, k.encode()) + _pb_len(2, _option(v))) for k, v in options.items())


class Raw:
    """DoAction over plain gRPC, with the login's bearer token or the
    header the server hands back."""

    def __init__(self, gateway):
        self.channel = grpc.insecure_channel(gateway.flight_uri().removeprefix("grpc://"))
        handshake = self.channel.stream_stream("/arrow.flight.protocol.FlightService/Handshake")
        basic = __import__("base64").b64encode(f"sluice:{gateway.password}".encode()).decode()
        call = handshake(iter([b""]), metadata=[("authorization", f"Basic {basic}")], timeout=30)
        list(call)
        self.auth = dict(call.initial_metadata())["authorization"]
        self.action = self.channel.unary_stream(ACTION)

    def do(self, kind, body=b"", auth=None):
        action = _pb_len(1, kind.encode()) + _pb_len(2, body)
        call = self.action(action, metadata=[("authorization", auth or self.auth)], timeout=30)
        results = [dict(_fields(r)).get(1, b"") for r in call]
        header = dict(call.initial_metadata()).get("authorization")
        return results, header


def test_adbc_session_options_pick_schema_and_time_zone(gateway):
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS fs_a")
        cur.execute("CREATE TABLE fs_a.fs_t AS SELECT 'in a' AS v")
        cur.execute("CREATE TABLE fs_t AS SELECT 'in default' AS v")
        cur.execute("SELECT v FROM fs_t")
        assert cur.fetchall() == [("in default",)]

        conn.adbc_connection.set_options(
            **{
                "adbc.flight.sql.session.option.schema": "fs_a",
                "adbc.flight.sql.session.option.time_zone": "Asia/Tokyo",
            }
        )
        cur.execute("SELECT v FROM fs_t")
        assert cur.fetchall() == [("in a",)]
        cur.execute("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AS t, current_setting('timezone') AS tz")
        table = cur.fetch_arrow_table()
        assert table.schema.field("t").type == pa.timestamp("ns", tz="Asia/Tokyo")
        assert table.column("t")[0].value == 1704067200 * 10**9
        assert table.column("tz").to_pylist() == ["Asia/Tokyo"]
        # Prepared statements and parameters run in the session too.
        cur.execute("SELECT v FROM fs_t WHERE v = ?", parameters=("in a",))
        assert cur.fetchall() == [("in a",)]

        options = json.loads(conn.adbc_connection.get_option("adbc.flight.sql.session.options"))
        assert options["schema"] == "fs_a"
        assert options["time_zone"] == "Asia/Tokyo"
        assert options["catalog"] == "sluice"

        # Unsetting an option goes back to the default.
        conn.adbc_connection.set_options(**{"adbc.flight.sql.session.optionerase.schema": ""})
        cur.execute("SELECT v FROM fs_t")
        assert cur.fetchall() == [("in default",)]

    # Another connection has its own session.
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("SELECT v FROM fs_t")
        assert cur.fetchall() == [("in default",)]


def test_adbc_refuses_a_bad_option(gateway):
    import adbc_driver_manager

    with connect(gateway) as conn:
        with pytest.raises(adbc_driver_manager.Error, match="(?i)invalid"):
            conn.adbc_connection.set_options(**{"adbc.flight.sql.session.option.schema": "no_such_schema"})
        with pytest.raises(adbc_driver_manager.Error, match="(?i)invalid"):
            conn.adbc_connection.set_options(**{"adbc.flight.sql.session.option.not_an_option": "x"})
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == [(1,)]


def test_raw_set_get_close(gateway):
    raw = Raw(gateway)
    results, _ = raw.do("GetSessionOptions")
    shown = {k: dict(_fields(v)) for k, v in _map(results[0]).items()}
    assert {k: v[1].decode() for k, v in shown.items() if 1 in v} == {
        "catalog": "sluice",
        "schema": "default",
        "time_zone": "UTC",
        "compression": "none",
    }
    assert shown["endpoints"] == {3: 1}  # int64_value

    request = _set_request(
        {"time_zone": "Europe/Paris", "catalog": "elsewhere", "schema": True, "colour": "blue", "search": None}
    )
    results, header = raw.do("SetSessionOptions", request)
    errors = {k: dict(_fields(v)).get(1, 0) for k, v in _map(results[0]).items()}
    assert errors == {"catalog": INVALID_VALUE, "schema": INVALID_VALUE, "colour": INVALID_NAME, "search": INVALID_NAME}
    assert header.startswith(raw.auth + "."), "the session travels after the bearer token"

    # The accepted option holds for the next request carrying the new header,
    # and for the login's own token (remembered by the gateway).
    for auth in (header, raw.auth):
        results, _ = raw.do("GetSessionOptions", auth=auth)
        assert dict(_fields(_map(results[0])["time_zone"]))[1] == b"Europe/Paris"
    # A session part that was altered is refused.
    with pytest.raises(grpc.RpcError) as e:
        raw.do("GetSessionOptions", auth=header[:-2] + ("AA" if not header.endswith("AA") else "BB"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    results, after = raw.do("CloseSession", auth=header)
    assert dict(_fields(results[0])) == {1: 1}  # CLOSED
    assert after == raw.auth
    with pytest.raises(grpc.RpcError) as e:
        raw.do("GetSessionOptions", auth=header)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    results, _ = raw.do("GetSessionOptions", auth=after)
    assert dict(_fields(_map(results[0])["time_zone"]))[1] == b"UTC"
    raw.channel.close()


def test_tickets_keep_the_options_they_were_planned_with(gateway):
    import pyarrow.flight as fl

    from test_flight import _statement_descriptor

    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS fs_b")
        cur.execute("CREATE TABLE IF NOT EXISTS fs_b.fs_only_b AS SELECT 5 AS five")
    raw = Raw(gateway)
    _, header = raw.do("SetSessionOptions", _set_request({"schema": "fs_b"}))
    client = fl.FlightClient(gateway.flight_uri())
    with_session = fl.FlightCallOptions(headers=[(b"authorization", header.encode())])
    info = client.get_flight_info(_statement_descriptor("SELECT five FROM fs_only_b"), with_session)
    # DoGet from another login (no session) still runs in schema fs_b.
    bare = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", gateway.password)])
    assert client.do_get(info.endpoints[0].ticket, bare).read_all().column(0).to_pylist() == [5]
    with pytest.raises(pa.ArrowKeyError, match="fs_only_b"):
        client.get_flight_info(_statement_descriptor("SELECT five FROM fs_only_b"), bare)
    raw.channel.close()
