"""Flight SQL clients: ADBC Flight SQL (get_objects with filters,
parameters, adbc_ingest into a new and an existing table, session options), pyarrow.flight
directly, and flightsql-dbapi, an independent second client."""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest

from sluice_fixtures import PASSWORD, USER


def adbc(gateway):
    return flight_sql.connect(gateway.flight_uri(), db_kwargs={"username": USER, "password": PASSWORD}, autocommit=True)


@pytest.fixture(scope="module")
def sales(gateway, lake):
    import psycopg

    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS fl_conf_sales STORED AS PARQUET LOCATION '{lake}/sales/'")
    return "fl_conf_sales"


def test_adbc_flight_sql(gateway, sales, matrix):
    client = "ADBC Flight SQL"
    with adbc(gateway) as conn:
        with matrix.cell(client, "typed query into Arrow"):
            with conn.cursor() as cur:
                cur.execute("SELECT 1::int4 AS i, 2::int8 AS b, 'x' AS t, DATE '2024-01-02' AS d, 1.25::numeric(10,2) AS n")
                t = cur.fetch_arrow_table()
                assert [f.type for f in t.schema] == [pa.int32(), pa.int64(), pa.string(), pa.date32(), pa.decimal128(10, 2)]
        with matrix.cell(client, "parameters"):
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {sales} WHERE store_id = ? AND item = ?", parameters=(1, "item-1"))
                assert cur.fetchone()[0] > 0
        with matrix.cell(client, "get_objects with filters"):
            objects = conn.adbc_get_objects(
                depth="columns", catalog_filter="sluice", db_schema_filter="default", table_name_filter="fl_conf%",
                column_name_filter="st%",
            ).read_all().to_pylist()
            [catalog] = objects
            [schema] = catalog["catalog_db_schemas"]
            tables = {t["table_name"]: t for t in schema["db_schema_tables"]}
            assert set(tables) == {sales}, set(tables)
            assert [c["column_name"] for c in tables[sales]["table_columns"]] == ["store_id"]
        with matrix.cell(client, "adbc_ingest into a new table"):
            data = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
            with conn.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS fl_ingest")
                assert cur.adbc_ingest("fl_ingest", data, mode="create") in (3, -1)
                cur.execute("SELECT k, v FROM fl_ingest ORDER BY k")
                assert cur.fetchall() == [(1, "a"), (2, "b"), (3, "c")]
        with matrix.cell(client, "adbc_ingest into an existing table"):
            with conn.cursor() as cur:
                more = pa.table({"k": pa.array([4], pa.int64()), "v": ["d"]})
                cur.adbc_ingest("fl_ingest", more, mode="append")
                cur.execute("SELECT count(*), max(k) FROM fl_ingest")
                assert cur.fetchone() == (4, 4)
        with matrix.cell(client, "adbc_ingest mode=create onto an existing table is refused"):
            import adbc_driver_manager

            with conn.cursor() as cur:
                with pytest.raises(adbc_driver_manager.Error) as e:
                    cur.adbc_ingest("fl_ingest", more, mode="create")
                assert "ALREADY_EXISTS" in str(e.value).upper() or "already exists" in str(e.value)
                cur.execute("SELECT count(*) FROM fl_ingest")
                assert cur.fetchone() == (4,)
        with matrix.cell(client, "error status"):
            import adbc_driver_manager

            with conn.cursor() as cur:
                with pytest.raises(adbc_driver_manager.Error) as e:
                    cur.execute("SELECT * FROM no_such_flight_table")
                assert "NOT_FOUND" in str(e.value).upper() or "not found" in str(e.value)
        with matrix.cell(client, "session options: schema and time_zone"):
            with conn.cursor() as cur:
                cur.execute("CREATE SCHEMA IF NOT EXISTS fl_conf_session")
                cur.execute("CREATE TABLE IF NOT EXISTS fl_conf_session.only_here AS SELECT 1 AS one")
            conn.adbc_connection.set_options(
                **{
                    "adbc.flight.sql.session.option.schema": "fl_conf_session",
                    "adbc.flight.sql.session.option.time_zone": "Europe/Paris",
                }
            )
            with conn.cursor() as cur:
                cur.execute("SELECT one, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS t FROM only_here")
                t = cur.fetch_arrow_table()
                assert t.column("one").to_pylist() == [1]
                assert t.schema.field("t").type == pa.timestamp("ns", tz="Europe/Paris")
            conn.adbc_connection.set_options(**{"adbc.flight.sql.session.optionerase.schema": ""})


def test_pyarrow_flight(gateway, sales, matrix):
    import pyarrow.flight as fl

    client = "pyarrow.flight"
    with matrix.cell(client, "basic auth, list_actions"):
        fc = fl.FlightClient(gateway.flight_uri())
        opts = fl.FlightCallOptions(headers=[fc.authenticate_basic_token(USER, PASSWORD)])
        actions = {a.type for a in fc.list_actions(opts)}
        assert "CreatePreparedStatement" in actions, actions
    with matrix.cell(client, "statement via FlightSQL descriptor, do_get"):
        from test_flight import _statement_descriptor  # noqa: PLC0415 - shared protobuf helper

        info = fc.get_flight_info(_statement_descriptor(f"SELECT count(*) AS n FROM {sales}"), opts)
        assert fc.do_get(info.endpoints[0].ticket, opts).read_all().column("n").to_pylist() == [1000]


def test_flightsql_dbapi(gateway, sales, matrix):
    from flightsql import FlightSQLClient, connect

    client = "flightsql-dbapi"
    fc = FlightSQLClient(host="127.0.0.1", port=gateway.flight_port, user=USER, password=PASSWORD, insecure=True)
    with matrix.cell(client, "execute + do_get"):
        info = fc.execute(f"SELECT store_id, count(*) AS n FROM {sales} GROUP BY store_id ORDER BY store_id")
        t = fc.do_get(info.endpoints[0].ticket).read_all()
        assert t.column("n").to_pylist() == [200] * 5
    with matrix.cell(client, "get_tables / get_db_schemas / get_catalogs"):
        info = fc.get_tables(db_schema_filter_pattern="default", table_name_filter_pattern="fl_conf%")
        names = fc.do_get(info.endpoints[0].ticket).read_all().column("table_name").to_pylist()
        assert sales in names
        schemas = fc.do_get(fc.get_db_schemas().endpoints[0].ticket).read_all().column("db_schema_name").to_pylist()
        assert "default" in schemas
        catalogs = fc.do_get(fc.get_catalogs().endpoints[0].ticket).read_all().column("catalog_name").to_pylist()
        assert catalogs == ["sluice"]
    with matrix.cell(client, "DB-API cursor"):
        conn = connect(fc)
        cur = conn.cursor()
        cur.execute(f"SELECT max(id) FROM {sales}")
        assert cur.fetchone()[0] == 999
        conn.close()
    with matrix.cell(client, "execute_update"):
        fc.execute_update("DROP TABLE IF EXISTS fl_dbapi_t")
        fc.execute_update("CREATE TABLE fl_dbapi_t AS SELECT 1 AS a")
        assert fc.execute_update("INSERT INTO fl_dbapi_t VALUES (2), (3)") in (2, 0)
        info = fc.execute("SELECT count(*) AS n FROM fl_dbapi_t")
        assert fc.do_get(info.endpoints[0].ticket).read_all().column("n").to_pylist() == [3]
    fc.close()
