"""Flight SQL results in several endpoints (session option `endpoints`) and
with compressed IPC bodies (session option `compression`), read by ADBC and
by pyarrow with the endpoints fetched in parallel."""

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from test_flight import _statement_descriptor, connect
from test_flight_session import INVALID_VALUE, Raw, _fields, _map, _set_request

fl = pytest.importorskip("pyarrow.flight")

SQL = "SELECT id, store_id, amount, item FROM fe_sales"


@pytest.fixture
def sales(gateway, lake):
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fe_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        # The reference: one stream, no options.
        cur.execute(SQL)
        return cur.fetch_arrow_table().sort_by("id")


def _session(gateway, **options):
    raw = Raw(gateway)
    _, header = raw.do("SetSessionOptions", _set_request(options))
    raw.channel.close()
    return fl.FlightCallOptions(headers=[(b"authorization", header.encode())])


def test_endpoints_read_in_parallel_equal_the_single_stream(gateway, sales):
    client = fl.FlightClient(gateway.flight_uri())
    opts = _session(gateway, endpoints="4")
    info = client.get_flight_info(_statement_descriptor(SQL), opts)
    # The lake table has two files: the job's result has two partitions.
    assert len(info.endpoints) == 2
    assert info.total_records == sales.num_rows
    assert not info.ordered
    for e in info.endpoints:
        assert e.expiration_time is not None, "a part is readable only while its results are kept"
    # Each endpoint from its own connection, all at once, by another login
    # of the same user (tickets are self-contained).
    def read(endpoint):
        c = fl.FlightClient(gateway.flight_uri())
        bare = fl.FlightCallOptions(headers=[c.authenticate_basic_token("sluice", gateway.password)])
        return c.do_get(endpoint.ticket, bare).read_all()

    with ThreadPoolExecutor(len(info.endpoints)) as pool:
        tables = list(pool.map(read, info.endpoints))
    assert all(t.num_rows > 0 for t in tables), "parts of about equal size"
    assert all(t.schema == info.schema for t in tables)
    assert pa.concat_tables(tables).sort_by("id").equals(sales)

    # A query that runs in the gateway keeps one endpoint, run at DoGet.
    info = client.get_flight_info(_statement_descriptor("SELECT 41 + 1 AS fe_n"), opts)
    assert len(info.endpoints) == 1
    assert client.do_get(info.endpoints[0].ticket, opts).read_all().column("fe_n").to_pylist() == [42]
    # ...and is recorded once, when it runs.
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, rows FROM system.queries WHERE query = 'SELECT 41 + 1 AS fe_n'")
        assert cur.fetchall() == [("finished", 1)]
    # So does a sorted result (one partition), in order.
    info = client.get_flight_info(_statement_descriptor(SQL + " ORDER BY id DESC"), opts)
    assert len(info.endpoints) == 1
    assert client.do_get(info.endpoints[0].ticket, opts).read_all().column("id").to_pylist() == list(range(999, -1, -1))


def test_a_part_is_served_to_its_user_only(gateway, sales):
    client = fl.FlightClient(gateway.flight_uri())
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("CREATE USER fe_other WITH PASSWORD 'fe-other-pw'")
        cur.execute("GRANT SELECT ON fe_sales TO fe_other")
    info = client.get_flight_info(_statement_descriptor(SQL), _session(gateway, endpoints="2"))
    other = fl.FlightCallOptions(headers=[client.authenticate_basic_token("fe_other", "fe-other-pw")])
    with pytest.raises(fl.FlightUnauthorizedError, match="another user"):
        client.do_get(info.endpoints[0].ticket, other).read_all()


def test_adbc_reads_every_endpoint_with_compression(gateway, sales):
    for codec in ("zstd", "lz4_frame"):
        with connect(gateway) as conn, conn.cursor() as cur:
            conn.adbc_connection.set_options(
                **{
                    "adbc.flight.sql.session.option.endpoints": "8",
                    "adbc.flight.sql.session.option.compression": codec,
                }
            )
            cur.execute(SQL)
            assert cur.fetch_arrow_table().sort_by("id").equals(sales)


def _body_bytes(gateway, ticket, auth):
    """Total IPC body bytes of a DoGet, read over plain gRPC."""
    import grpc

    channel = grpc.insecure_channel(gateway.flight_uri().removeprefix("grpc://"))
    do_get = channel.unary_stream("/arrow.flight.protocol.FlightService/DoGet")
    ticket_msg = bytes([1 << 3 | 2]) + _len(ticket) + ticket
    # FlightData.data_body is field 1000.
    total = sum(len(dict(_fields(m)).get(1000, b"")) for m in do_get(ticket_msg, metadata=[("authorization", auth)]))
    channel.close()
    return total


def _len(b):
    n, out = len(b), b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def test_compression_shrinks_the_bodies_and_keeps_the_values(gateway, sales):
    client = fl.FlightClient(gateway.flight_uri())
    raw = Raw(gateway)
    bodies = {}
    for codec in ("none", "zstd", "lz4_frame"):
        _, header = raw.do("SetSessionOptions", _set_request({"compression": codec}))
        opts = fl.FlightCallOptions(headers=[(b"authorization", header.encode())])
        info = client.get_flight_info(_statement_descriptor(SQL + " ORDER BY id"), opts)
        assert client.do_get(info.endpoints[0].ticket, opts).read_all().equals(sales)
        bodies[codec] = _body_bytes(gateway, info.endpoints[0].ticket.ticket, header)
    raw.channel.close()
    assert bodies["zstd"] < bodies["none"] / 2, bodies
    assert bodies["lz4_frame"] < bodies["none"] / 2, bodies


def test_bad_values_are_refused(gateway):
    raw = Raw(gateway)
    results, _ = raw.do("SetSessionOptions", _set_request({"compression": "gzip", "endpoints": "0"}))
    errors = {k: dict(_fields(v)).get(1, 0) for k, v in _map(results[0]).items()}
    assert errors == {"compression": INVALID_VALUE, "endpoints": INVALID_VALUE}
    results, _ = raw.do("SetSessionOptions", _set_request({"endpoints": "65"}))
    assert set(_map(results[0])) == {"endpoints"}
    raw.channel.close()
