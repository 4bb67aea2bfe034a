"""Flight SQL query control with real clients: CancelFlightInfo stops a
running query (its DoGet ends CANCELLED and the cluster's slots free up),
PollFlightInfo answers with the complete FlightInfo, and transactions are
refused as autocommit-only."""

import threading
import time

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from test_flight import _pb_len, _statement_descriptor, _varint

SLOW = "SELECT count(*) FROM generate_series(1, 3000000000) AS t(v) WHERE v % 7 = 3"


def client_and_options(gateway):
    client = fl.FlightClient(gateway.flight_uri())
    token = client.authenticate_basic_token("sluice", gateway.password)
    return client, fl.FlightCallOptions(headers=[token])


def cancel_body(info: fl.FlightInfo) -> bytes:
    # CancelFlightInfoRequest { FlightInfo info = 1; }
    return _pb_len(1, info.serialize())


def test_cancel_flight_info_stops_a_running_query(gateway):
    client, opts = client_and_options(gateway)
    info = client.get_flight_info(_statement_descriptor(SLOW), opts)
    outcome = {}

    def fetch():
        started = time.monotonic()
        try:
            client.do_get(info.endpoints[0].ticket, opts).read_all()
            outcome["error"] = None
        except fl.FlightError as e:
            outcome["error"] = e
        outcome["seconds"] = time.monotonic() - started

    t = threading.Thread(target=fetch)
    t.start()
    time.sleep(1.5)
    results = list(client.do_action(fl.Action("CancelFlightInfo", cancel_body(info)), opts))
    # CancelFlightInfoResult { CancelStatus status = 1 }: CANCELLED = 1.
    assert [r.body.to_pybytes() for r in results] == [b"\x08\x01"]
    t.join(timeout=30)
    assert not t.is_alive(), "the DoGet kept running after CancelFlightInfo"
    assert isinstance(outcome["error"], fl.FlightCancelledError), outcome
    # The ticket stays cancelled; the gateway serves other queries at once.
    with pytest.raises(fl.FlightCancelledError):
        client.do_get(info.endpoints[0].ticket, opts).read_all()
    quick = client.get_flight_info(_statement_descriptor("SELECT 42 AS answer"), opts)
    assert client.do_get(quick.endpoints[0].ticket, opts).read_all().column(0).to_pylist() == [42]
    assert "CancelFlightInfo" in [a.type for a in client.list_actions(opts)]


def test_cancel_needs_the_tickets_owner(gateway):
    client, opts = client_and_options(gateway)
    info = client.get_flight_info(_statement_descriptor("SELECT 1"), opts)
    forged = fl.FlightInfo(info.schema, info.descriptor, [fl.FlightEndpoint(b"not a ticket", [])], -1, -1)
    with pytest.raises(pa.ArrowInvalid, match="malformed ticket"):
        list(client.do_action(fl.Action("CancelFlightInfo", cancel_body(forged)), opts))
    with pytest.raises(fl.FlightUnauthenticatedError):
        list(client.do_action(fl.Action("CancelFlightInfo", cancel_body(info))))


def test_poll_flight_info_returns_the_complete_info(gateway):
    grpc = pytest.importorskip("grpc")
    client, opts = client_and_options(gateway)
    _, token = client.authenticate_basic_token("sluice", gateway.password)
    channel = grpc.insecure_channel(gateway.flight_uri().removeprefix("grpc://"))
    poll = channel.unary_unary("/arrow.flight.protocol.FlightService/PollFlightInfo")
    descriptor = _statement_descriptor("SELECT 7 AS seven")
    reply = poll(descriptor.serialize(), metadata=[("authorization", token.decode())], timeout=30)
    # PollInfo { FlightInfo info = 1; FlightDescriptor flight_descriptor = 2; double progress = 3; ... }
    assert reply[0] == 0x0A
    n, i = _varint(reply, 1)
    info = fl.FlightInfo.deserialize(reply[i : i + n])
    rest = reply[i + n :]
    assert not rest.startswith(b"\x12"), "a complete query has no descriptor to poll again"
    assert rest.startswith(b"\x19"), rest  # progress = 1.0 (double)
    table = client.do_get(info.endpoints[0].ticket, opts).read_all()
    assert table.column("seven").to_pylist() == [7]
    channel.close()


def test_transactions_are_refused_as_autocommit_only(gateway):
    client, opts = client_and_options(gateway)
    any_msg = _pb_len(1, b"type.googleapis.com/arrow.flight.protocol.sql.ActionBeginTransactionRequest") + _pb_len(2, b"")
    # gRPC UNIMPLEMENTED, which pyarrow raises as ArrowNotImplementedError.
    with pytest.raises(pa.ArrowNotImplementedError) as e:
        list(client.do_action(fl.Action("BeginTransaction", any_msg), opts))
    assert "autocommit" in str(e.value)
