"""The gateway's catalog served as a Hive Metastore (`--hms-listen`), read
and written by a Python HMS client (PyPI hmsclient: Hive's generated Thrift
client on a buffered socket, as Hive and Spark connect)."""

import json

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hmsclient import hmsclient
from hmsclient.genthrift.hive_metastore import ThriftHiveMetastore, ttypes
from thrift.Thrift import TApplicationException

from sluice_fixtures import Gateway


@pytest.fixture(scope="module")
def served(workdir):
    base = workdir / "hms"
    base.mkdir()
    data = base / "events"
    for day, n in (("2024-01-01", 10), ("2024-01-02", 20), ("2024-01-03", 30)):
        (data / f"day={day}").mkdir(parents=True)
        pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()), "amount": pa.array([1.5] * n)}), data / f"day={day}" / "part-0.parquet")
    g = Gateway(base / "gw", extra=["--hms-listen", "127.0.0.1:0"], local_executors=1).start()
    port = json.loads((base / "gw-listen.json").read_text())["hms"].rsplit(":", 1)[1]
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE SCHEMA lake")
        c.execute(
            f"CREATE EXTERNAL TABLE lake.events (id BIGINT, amount DOUBLE, day VARCHAR) STORED AS PARQUET "
            f"PARTITIONED BY (day) LOCATION '{data.as_uri()}/'"
        )
        c.execute("CREATE TABLE lake.summary AS SELECT day, count(*) AS n FROM lake.events GROUP BY day")
    yield g, int(port), base
    g.stop()


def sql(g, query):
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        return c.execute(query).fetchall()


def client(port):
    return hmsclient.HMSClient(host="127.0.0.1", port=port)


def add_partition(c, partition):
    """The plain Thrift call (hmsclient's helper builds the partition itself)."""
    return ThriftHiveMetastore.Client.add_partition(c, partition)


def test_databases_tables_and_storage_descriptors(served):
    g, port, base = served
    with client(port) as c:
        assert {"default", "lake"} <= set(c.get_all_databases())
        assert c.get_databases("la*") == ["lake"]
        db = c.get_database("lake")
        assert db.name == "lake" and db.locationUri.endswith("lake.db/")
        assert sorted(c.get_all_tables("lake")) == ["events", "summary"]
        t = c.get_table("lake", "events")
        assert t.tableType == "EXTERNAL_TABLE" and t.parameters["EXTERNAL"] == "TRUE"
        assert t.sd.location == (base / "events").as_uri() + "/"
        assert t.sd.inputFormat == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
        assert t.sd.serdeInfo.serializationLib == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        assert [(f.name, f.type) for f in t.sd.cols] == [("id", "bigint"), ("amount", "double")]
        assert [(f.name, f.type) for f in t.partitionKeys] == [("day", "string")]
        managed = c.get_table("lake", "summary")
        assert managed.tableType == "MANAGED_TABLE"
        assert [(f.name, f.type) for f in managed.sd.cols] == [("day", "string"), ("n", "bigint")]
        with pytest.raises(ttypes.NoSuchObjectException):
            c.get_table("lake", "nope")
        with pytest.raises(ttypes.NoSuchObjectException):
            c.get_database("nope")


def test_partitions_by_name_and_by_filter(served):
    g, port, base = served
    with client(port) as c:
        assert c.get_partition_names("lake", "events", -1) == ["day=2024-01-01", "day=2024-01-02", "day=2024-01-03"]
        parts = c.get_partitions("lake", "events", -1)
        assert [p.values for p in parts] == [["2024-01-01"], ["2024-01-02"], ["2024-01-03"]]
        assert parts[1].sd.location == f"file://{base}/events/day=2024-01-02/"
        got = c.get_partitions_by_filter("lake", "events", 'day >= "2024-01-02"', -1)
        assert [p.values for p in got] == [["2024-01-02"], ["2024-01-03"]]
        got = c.get_partitions_by_filter("lake", "events", "(day = '2024-01-01') or (day = '2024-01-03')", -1)
        assert [p.values for p in got] == [["2024-01-01"], ["2024-01-03"]]
        got = c.get_partitions_by_names("lake", "events", ["day=2024-01-03"])
        assert [p.values for p in got] == [["2024-01-03"]]
        with pytest.raises(ttypes.MetaException, match="not a partition key"):
            c.get_partitions_by_filter("lake", "events", "id = 1", -1)


def test_a_partition_added_through_the_metastore_is_queried(served):
    g, port, base = served
    new = base / "events" / "day=2024-01-09"
    new.mkdir()
    pq.write_table(pa.table({"id": pa.array(range(7), pa.int64()), "amount": pa.array([2.0] * 7)}), new / "part-0.parquet")
    with client(port) as c:
        t = c.get_table("lake", "events")
        sd = t.sd
        sd.location = f"file:{new}"  # as Hadoop clients write it
        add_partition(c, ttypes.Partition(dbName="lake", tableName="events", values=["2024-01-09"], sd=sd))
        with pytest.raises(ttypes.AlreadyExistsException):
            add_partition(c, ttypes.Partition(dbName="lake", tableName="events", values=["2024-01-09"], sd=sd))
    assert sql(g, "SELECT count(*), sum(amount) FROM lake.events WHERE day = '2024-01-09'") == [(7, 14.0)]
    assert sql(g, "SELECT count(*) FROM lake.events") == [(67,)]
    with client(port) as c:
        assert c.drop_partition("lake", "events", ["2024-01-09"], False)
    assert sql(g, "SELECT count(*) FROM lake.events") == [(60,)]
    assert new.exists(), "an external partition's files stay"


def test_a_table_created_through_the_metastore_is_queried_and_dropped(served):
    g, port, base = served
    with client(port) as c:
        t = c.get_table("lake", "events")
        t.tableName = "events_again"
        t.parameters = {"EXTERNAL": "TRUE"}
        c.create_table(t)
        with pytest.raises(ttypes.AlreadyExistsException):
            c.create_table(t)
        add_partition(
            c,
            ttypes.Partition(
                dbName="lake",
                tableName="events_again",
                values=["2024-01-02"],
                sd=ttypes.StorageDescriptor(location=(base / "events" / "day=2024-01-02").as_uri()),  # %3D-encoded
            )
        )
    assert sql(g, "SELECT day, count(*) FROM lake.events_again GROUP BY day") == [("2024-01-02", 20)]
    with client(port) as c:
        c.drop_table("lake", "events_again", False)
    with pytest.raises(psycopg.errors.UndefinedTable):
        sql(g, "SELECT * FROM lake.events_again")


def test_databases_created_and_dropped_through_the_metastore(served):
    g, port, base = served
    with client(port) as c:
        c.create_database(ttypes.Database(name="from_hms", description="made by a client"))
        with pytest.raises(ttypes.AlreadyExistsException):
            c.create_database(ttypes.Database(name="from_hms"))
        assert "from_hms" in c.get_all_databases()
    assert sql(g, "SELECT schema_name FROM information_schema.schemata WHERE schema_name = 'from_hms'") == [("from_hms",)]
    with client(port) as c:
        with pytest.raises(ttypes.InvalidOperationException):
            c.drop_database("lake", False, False)
        c.drop_database("from_hms", False, False)
        with pytest.raises(ttypes.NoSuchObjectException):
            c.drop_database("from_hms", False, False)


def test_calls_sluice_does_not_serve_are_refused_not_dropped(served):
    g, port, base = served
    with client(port) as c:
        with pytest.raises(TApplicationException, match="get_type"):
            c.get_type("x")
        with pytest.raises(TApplicationException):
            c.get_open_txns()
        # The connection keeps serving.
        assert "lake" in c.get_all_databases()


def test_hostile_messages_close_their_connection_and_nothing_else(served):
    import socket
    import struct

    g, port, base = served
    header = b"\x80\x01\x00\x01" + struct.pack(">i", 17) + b"get_all_databases" + struct.pack(">i", 1)
    for body in [
        bytes([15, 0, 1, 12]) + struct.pack(">i", 0x7FFFFFFF),  # a list of 2^31 structs
        bytes([11, 0, 1]) + struct.pack(">i", -5),  # a negative string length
        bytes([11, 0, 1]) + struct.pack(">i", 2) + b"\xff\xfe" + b"\x00",  # text that is not UTF-8
    ]:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(header + body)
            s.settimeout(10)
            assert s.recv(1) == b"", "the connection is closed"
    assert g.alive()
    with client(port) as c:
        assert "lake" in c.get_all_databases()
