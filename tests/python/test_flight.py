"""ADBC Flight SQL: handshake, queries into pyarrow, metadata, parameters, DDL."""

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pytest


def connect(gateway, password=None):
    return flight_sql.connect(
        gateway.flight_uri(),
        db_kwargs={"username": "sluice", "password": password or gateway.password},
        autocommit=True,
    )


def test_query_into_pyarrow(gateway, lake):
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
        cur.execute("SELECT store_id, count(*) AS n FROM fl_sales GROUP BY store_id ORDER BY store_id")
        table = cur.fetch_arrow_table()
        assert table.column_names == ["store_id", "n"]
        assert table.column("n").to_pylist() == [200] * 5
        assert table.schema.field("store_id").type == pa.int32()


def test_strings_leave_as_plain_utf8(gateway, lake):
    # DataFusion reads Parquet text as string views. Flight shows plain
    # strings: every client reads them, and IPC would send a view array's
    # shared buffers whole with every slice of a batch.
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_views STORED AS PARQUET LOCATION '{lake}/sales/'")
        cur.execute("SELECT item, CAST(item AS BYTEA) AS raw FROM fl_views")
        table = cur.fetch_arrow_table()
        assert table.schema.field("item").type == pa.string()
        assert table.schema.field("raw").type == pa.binary()
        assert table.num_rows == 1000
        assert sorted(set(table.column("item").to_pylist())) == [f"item-{i}" for i in range(7)]


def test_get_objects_lists_tables(gateway, lake):
    with connect(gateway) as conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_objects STORED AS PARQUET LOCATION '{lake}/sales/'")
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        assert "sluice" in catalogs
        schemas = {s["db_schema_name"]: s for s in catalogs["sluice"]["catalog_db_schemas"]}
        tables = {t["table_name"]: t for t in schemas["default"]["db_schema_tables"]}
        assert "fl_objects" in tables
        cols = [c["column_name"] for c in tables["fl_objects"]["table_columns"]]
        assert cols == ["id", "store_id", "amount", "item"]
        schema = conn.adbc_get_table_schema("fl_objects", db_schema_filter="default", catalog_filter="sluice")
        assert schema.names == ["id", "store_id", "amount", "item"]


def test_parameterised_query(gateway, lake):
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_params STORED AS PARQUET LOCATION '{lake}/sales/'")
        cur.execute("SELECT id, item FROM fl_params WHERE id BETWEEN ? AND ? ORDER BY id", parameters=(10, 12))
        assert cur.fetchall() == [(10, "item-3"), (11, "item-4"), (12, "item-5")]
        cur.execute("SELECT count(*) FROM fl_params WHERE item = ?", parameters=("item-0",))
        assert cur.fetchone()[0] == sum(1 for i in range(1000) if i % 7 == 0)


def test_ddl_and_insert_over_flight(gateway):
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE fl_managed AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(k, v)")
        cur.execute("INSERT INTO fl_managed VALUES (3, 'c')")
        cur.execute("SELECT k, v FROM fl_managed ORDER BY k")
        assert cur.fetchall() == [(1, "a"), (2, "b"), (3, "c")]


def test_bad_password_and_errors(gateway):
    with pytest.raises(adbc_driver_manager.Error) as e:
        with connect(gateway, password="wrong") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "UNAUTHENTICATED" in str(e.value).upper() or "AUTH" in str(e.value).upper()
    with connect(gateway) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM no_such_table")
        assert "not found" in str(e.value) or "NOT_FOUND" in str(e.value).upper()


def _pb_len(field, payload: bytes) -> bytes:
    out = bytes([field << 3 | 2])
    n = len(payload)
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out + payload


def _varint(buf, i):
    """A protobuf varint at buf[i]: (value, index after it)."""
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            return n, i


def _statement_descriptor(sql):
    import pyarrow.flight as fl

    cmd = _pb_len(1, sql.encode())
    any_msg = _pb_len(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _pb_len(2, cmd)
    return fl.FlightDescriptor.for_command(any_msg)


def test_tickets_are_signed_and_schemas_match(gateway, lake):
    import pyarrow.flight as fl

    client = fl.FlightClient(gateway.flight_uri())
    token = client.authenticate_basic_token("sluice", gateway.password)
    opts = fl.FlightCallOptions(headers=[token])
    with connect(gateway) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_tickets STORED AS PARQUET LOCATION '{lake}/sales/'")
    info = client.get_flight_info(_statement_descriptor("SELECT id, item FROM fl_tickets WHERE id < 3 ORDER BY id"), opts)
    ticket = info.endpoints[0].ticket
    table = client.do_get(ticket, opts).read_all()
    assert table.schema.equals(info.schema, check_metadata=False), (table.schema, info.schema)
    assert table.column("id").to_pylist() == [0, 1, 2]
    # the same ticket is served again without server-side state
    assert client.do_get(ticket, opts).read_all().num_rows == 3
    # any change to the ticket is refused
    raw = bytearray(ticket.ticket)
    raw[-3] ^= 0x01
    with pytest.raises(fl.FlightError) as e:
        client.do_get(fl.Ticket(bytes(raw)), opts).read_all()
    assert "invalid" in str(e.value) or "malformed" in str(e.value), e.value
    # and no call works without credentials
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.do_get(ticket).read_all()


def test_sql_info_and_table_types(gateway):
    with connect(gateway) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Sluice"
        types = conn.adbc_get_table_types()
        assert set(types) >= {"TABLE", "VIEW"}


def test_xdbc_type_info(gateway):
    import pyarrow.flight as fl

    client = fl.FlightClient(gateway.flight_uri())
    opts = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", gateway.password)])
    any_msg = _pb_len(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandGetXdbcTypeInfo") + _pb_len(2, b"")
    info = client.get_flight_info(fl.FlightDescriptor.for_command(any_msg), opts)
    table = client.do_get(info.endpoints[0].ticket, opts).read_all()
    assert table.schema.equals(info.schema, check_metadata=False)
    names = set(table.column("type_name").to_pylist())
    assert {"BIGINT", "VARCHAR", "TIMESTAMP", "DOUBLE PRECISION"} <= names


def test_tickets_survive_restart_and_need_the_key(workdir):
    """Tickets are signed with <data-dir>/token.key: valid after a restart,
    refused by a gateway with another key."""
    import pyarrow.flight as fl

    from sluice_fixtures import Gateway

    g = Gateway(workdir / "ticket-key").start()
    other = Gateway(workdir / "ticket-other-key").start()
    try:
        client = fl.FlightClient(g.flight_uri())
        opts = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", g.password)])
        info = client.get_flight_info(_statement_descriptor("SELECT 41 + 1 AS answer"), opts)
        ticket = info.endpoints[0].ticket
        g.stop()
        g.start()
        client = fl.FlightClient(g.flight_uri())
        assert client.do_get(ticket, opts).read_all().column("answer").to_pylist() == [42]
        stranger = fl.FlightClient(other.flight_uri())
        with pytest.raises(fl.FlightUnauthenticatedError):
            stranger.do_get(ticket, opts).read_all()
        opts2 = fl.FlightCallOptions(headers=[stranger.authenticate_basic_token("sluice", other.password)])
        with pytest.raises(fl.FlightError):
            stranger.do_get(ticket, opts2).read_all()
    finally:
        g.stop()
        other.stop()


def test_key_commands_answer_empty(gateway):
    """JDBC DatabaseMetaData asks for keys; Sluice has none and says so."""
    import pyarrow.flight as fl

    client = fl.FlightClient(gateway.flight_uri())
    opts = fl.FlightCallOptions(headers=[client.authenticate_basic_token("sluice", gateway.password)])
    base = b"type.googleapis.com/arrow.flight.protocol.sql."
    commands = {
        "CommandGetPrimaryKeys": _pb_len(3, b"t"),
        "CommandGetExportedKeys": _pb_len(3, b"t"),
        "CommandGetImportedKeys": _pb_len(3, b"t"),
        "CommandGetCrossReference": _pb_len(3, b"a") + _pb_len(6, b"b"),
    }
    for name, body in commands.items():
        msg = _pb_len(1, base + name.encode()) + _pb_len(2, body)
        info = client.get_flight_info(fl.FlightDescriptor.for_command(msg), opts)
        table = client.do_get(info.endpoints[0].ticket, opts).read_all()
        assert table.num_rows == 0, name
        assert table.schema.equals(info.schema, check_metadata=False), name
        assert "key_sequence" in table.schema.names, name
