"""A real Apache Hive Metastore as the gateway's catalog (`--catalog
thrift://...`): Sluice creates, lists, queries and drops partitioned tables
in it (other engines see them there), and queries a table another metastore
client created, with its partitions chosen by the metastore
(`get_partitions_by_filter`)."""

import re
import time

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hmsclient.genthrift.hive_metastore import ThriftHiveMetastore, ttypes

import hive_metastore
from sluice_fixtures import Gateway



@pytest.fixture(scope="module")
def hive_gateway(workdir):
    hms = hive_metastore.HiveMetastore().start()
    base = workdir / "hive_catalog"
    base.mkdir()
    g = Gateway(
        base / "gw",
        extra=["--catalog", hms.uri, "--catalog-poll", "0.2"],
        local_executors=1,
        env={"SLUICE_LOG": "info,sluice_gateway::catalog::hive=debug"},
    ).start()
    yield g, hms, base
    g.stop()
    hms.stop()


def run(g, sql):
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        cur = c.execute(sql)
        return cur.fetchall() if cur.description else None


def eventually(check, timeout=15):
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except psycopg.Error:
            pass
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.1)


def scan_report(g, sql):
    rows = run(g, f"EXPLAIN {sql}")
    return "\n".join(str(r[-1]) for r in rows)


def test_sluice_creates_lists_queries_and_drops_partitioned_tables(hive_gateway):
    g, hms, _ = hive_gateway
    run(g, "CREATE SCHEMA sales")
    run(
        g,
        "CREATE TABLE sales.orders PARTITIONED BY (region) AS SELECT * FROM "
        "(VALUES (1, 10.5, 'eu'), (2, 20.0, 'us'), (3, 5.0, 'eu')) AS v(id, amount, region)",
    )
    assert run(g, "SELECT region, count(*), sum(amount) FROM sales.orders GROUP BY region ORDER BY region") == [
        ("eu", 2, 15.5),
        ("us", 1, 20.0),
    ]
    # The metastore holds the table as Hive describes it, for other engines.
    with hms.client() as c:
        assert "sales" in c.get_all_databases()
        t = c.get_table("sales", "orders")
        assert t.tableType == "MANAGED_TABLE"
        assert [(k.name, k.type) for k in t.partitionKeys] == [("region", "string")]
        assert [(f.name, f.type) for f in t.sd.cols] == [("id", "bigint"), ("amount", "decimal(3,1)")]
        assert (t.sd.inputFormat, t.sd.serdeInfo.serializationLib) == (
            hive_metastore.PARQUET_IN,
            hive_metastore.PARQUET_SERDE,
        )
        assert sorted(c.get_partition_names("sales", "orders", -1)) == ["region=eu", "region=us"]

    run(g, "INSERT INTO sales.orders SELECT 4, 1.0, 'apac'")
    with hms.client() as c:
        assert sorted(c.get_partition_names("sales", "orders", -1)) == ["region=apac", "region=eu", "region=us"]
    assert run(g, "SELECT count(*) FROM sales.orders WHERE region = 'apac'") == [(1,)]
    assert run(g, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sales'") == [("orders",)]

    # Names are the metastore's: a second CTAS under the name is refused.
    with pytest.raises(psycopg.errors.DuplicateTable):
        run(g, "CREATE TABLE sales.orders AS SELECT 1 AS id")

    # A restart finds everything again (metastore plus side store).
    g.stop()
    g.start()
    assert run(g, "SELECT count(*), sum(id) FROM sales.orders") == [(4, 10)]

    # CREATE OR REPLACE swaps the metastore's description in one alter_table:
    # a new id, and only the new incarnation's partitions.
    with hms.client() as c:
        old_id = c.get_table("sales", "orders").parameters["sluice.table_id"]
    run(g, "CREATE OR REPLACE TABLE sales.orders PARTITIONED BY (region) AS SELECT 9 AS id, 9.5 AS amount, 'eu' AS region")
    assert run(g, "SELECT id, region FROM sales.orders") == [(9, "eu")]
    with hms.client() as c:
        assert c.get_table("sales", "orders").parameters["sluice.table_id"] != old_id
        assert c.get_partition_names("sales", "orders", -1) == ["region=eu"]

    run(g, "DROP TABLE sales.orders")
    with hms.client() as c:
        with pytest.raises(ttypes.NoSuchObjectException):
            c.get_table("sales", "orders")
    with pytest.raises(psycopg.errors.UndefinedTable):
        run(g, "SELECT * FROM sales.orders")
    run(g, "DROP SCHEMA sales")
    with hms.client() as c:
        assert "sales" not in c.get_all_databases()


def _events(base):
    """A partitioned Parquet table laid out as Hive/Spark write one."""
    data = base / "events"
    for year, n in ((2023, 10), (2024, 20), (2025, 30)):
        _write_year(data, year, n)
    return data


def _write_year(data, year, n):
    d = data / f"year={year}"
    d.mkdir(parents=True)
    pq.write_table(
        pa.table({"id": pa.array(range(n), pa.int64()), "amount": pa.array([0.5 * i for i in range(n)])}),
        d / "part-0.parquet",
    )


def _storage(location):
    return hive_metastore.parquet_storage(location, [("id", "bigint"), ("amount", "double")])


def _add_year(c, data, year):
    partition = ttypes.Partition(
        dbName="ext", tableName="events", values=[str(year)], sd=_storage((data / f"year={year}").as_uri())
    )
    ThriftHiveMetastore.Client.add_partition(c, partition)


def test_a_table_another_client_creates_is_queried_with_metastore_pruning(hive_gateway):
    g, hms, base = hive_gateway
    data = _events(base)
    with hms.client() as c:
        c.create_database(ttypes.Database(name="ext", locationUri=(base / "ext.db").as_uri(), parameters={}))
        c.create_table(
            ttypes.Table(
                tableName="events",
                dbName="ext",
                owner="spark",
                sd=_storage(data.as_uri()),
                partitionKeys=[ttypes.FieldSchema(name="year", type="int")],
                parameters={"EXTERNAL": "TRUE"},
                tableType="EXTERNAL_TABLE",
            )
        )
        for year in (2023, 2024, 2025):
            _add_year(c, data, year)

    # No Sluice DDL: the table shows up at the next catalog poll.
    eventually(lambda: run(g, "SELECT count(*) FROM ext.events") == [(60,)])
    assert run(g, "SELECT year, count(*), sum(id) FROM ext.events WHERE year >= 2024 GROUP BY year ORDER BY year") == [
        (2024, 20, 190),
        (2025, 30, 435),
    ]
    # The metastore chose the partitions: the scan saw only the two it returned.
    assert "ext.events: partitions 2 of 2" in scan_report(g, "SELECT count(*) FROM ext.events WHERE year >= 2024")
    log = re.sub(r"\x1b\[[0-9;]*m", "", g.log_path.read_text())
    chosen = [line for line in log.splitlines() if "partitions chosen by the Hive Metastore" in line]
    assert any('filter="year >= 2024"' in line and "partitions=2" in line for line in chosen), chosen
    # A filter the metastore cannot evaluate is pruned by Sluice over all partitions.
    assert "ext.events: partitions 2 of 3" in scan_report(g, "SELECT count(*) FROM ext.events WHERE year % 2 = 1")
    assert run(g, "SELECT count(*) FROM ext.events WHERE year % 2 = 1") == [(40,)]

    # Another client adds a partition: Sluice reads it without any DDL.
    _write_year(data, 2026, 5)
    with hms.client() as c:
        _add_year(c, data, 2026)
    eventually(lambda: run(g, "SELECT count(*) FROM ext.events WHERE year = 2026") == [(5,)])

    # Sluice adds one too (ALTER TABLE ... ADD PARTITION goes to the metastore).
    _write_year(data, 2027, 7)
    run(g, f"ALTER TABLE ext.events ADD PARTITION (year = 2027) LOCATION '{(data / 'year=2027').as_uri()}'")
    with hms.client() as c:
        assert "year=2027" in c.get_partition_names("ext", "events", -1)
    assert run(g, "SELECT count(*) FROM ext.events") == [(72,)]

    # Tables Sluice cannot read (here an Iceberg table) are left out, not fatal.
    with hms.client() as c:
        iceberg = ttypes.Table(
            tableName="ice",
            dbName="ext",
            owner="spark",
            sd=_storage((base / "ice").as_uri()),
            partitionKeys=[],
            parameters={"EXTERNAL": "TRUE", "table_type": "ICEBERG", "metadata_location": (base / "ice" / "m.json").as_uri()},
            tableType="EXTERNAL_TABLE",
        )
        c.create_table(iceberg)
    eventually(lambda: "an Iceberg table" in g.log_path.read_text())
    assert run(g, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ext'") == [("events",)]
    with hms.client() as c:
        c.drop_table("ext", "ice", False)

    # Dropping an external table of another engine leaves its data.
    run(g, "DROP TABLE ext.events")
    with hms.client() as c:
        assert c.get_all_tables("ext") == []
    assert (data / "year=2023" / "part-0.parquet").exists()


def test_a_dead_metastore_uri_fails_over_to_the_next(hive_gateway):
    g, hms, base = hive_gateway
    data = base / "failover"
    _write_year(data, 2030, 3)
    run(g, f"CREATE EXTERNAL TABLE default.failover (id BIGINT, amount DOUBLE) STORED AS PARQUET LOCATION '{data.as_uri()}/year=2030/'")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    # The first URI refuses connections: start-up and queries use the second.
    other = Gateway(base / "gw2", extra=["--catalog", f"thrift://127.0.0.1:{dead},{hms.uri}"], local_executors=1).start()
    try:
        assert run(other, "SELECT count(*), sum(id) FROM default.failover") == [(3, 3)]
        log = other.log_path.read_text()
        assert "Hive Metastore failover" in log, log[-2000:]
    finally:
        other.stop()
    # With no metastore reachable the gateway does not start, and says why.
    lone = Gateway(base / "gw3", extra=["--catalog", f"thrift://127.0.0.1:{dead}"], local_executors=1)
    with pytest.raises(RuntimeError, match="Hive Metastore unreachable"):
        lone.start()
    run(g, "DROP TABLE default.failover")


def test_spark_and_sluice_share_the_metastore(hive_gateway):
    """Spark (local mode, PyPI pyspark) on the same metastore: a table Spark
    creates and fills is queried by Sluice, pruned by the metastore; a table
    Sluice creates is read by Spark with the same rows."""
    g, hms, base = hive_gateway
    spark = hive_metastore.spark_session(hms.uri, base / "spark-warehouse", "sluice-on-hms")
    try:
        spark.sql(f"CREATE DATABASE spark_db LOCATION '{(base / 'spark_db').as_uri()}'")
        spark.sql("CREATE TABLE spark_db.clicks (id BIGINT, url STRING) PARTITIONED BY (day STRING) STORED AS PARQUET")
        spark.sql("INSERT INTO spark_db.clicks PARTITION (day='2024-05-01') VALUES (1, 'a'), (2, 'b')")
        spark.sql("INSERT INTO spark_db.clicks PARTITION (day='2024-05-02') VALUES (3, 'c'), (4, 'd'), (5, 'e')")
        eventually(lambda: run(g, "SELECT count(*) FROM spark_db.clicks") == [(5,)])
        assert run(g, "SELECT id, url FROM spark_db.clicks WHERE day = '2024-05-02' ORDER BY id") == [
            (3, "c"),
            (4, "d"),
            (5, "e"),
        ]
        report = scan_report(g, "SELECT count(*) FROM spark_db.clicks WHERE day = '2024-05-02'")
        assert "spark_db.clicks: partitions 1 of 1" in report, report

        # A Spark data-source table keeps the columns' case in the files (the
        # metastore lowers it): Sluice reads them by Spark's schema.
        spark.sql("CREATE TABLE spark_db.cased (userId BIGINT, day STRING) USING parquet PARTITIONED BY (day)")
        spark.sql("INSERT INTO spark_db.cased VALUES (7, '2024-05-01'), (8, '2024-05-02')")
        eventually(lambda: run(g, 'SELECT "userId" FROM spark_db.cased WHERE day = \'2024-05-02\'') == [(8,)])
        spark.sql("DROP TABLE spark_db.cased")

        run(g, "CREATE TABLE default.from_sluice PARTITIONED BY (k) AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'b')) AS v(v, k)")
        query = "SELECT k, count(*) AS n, sum(v) AS total FROM default.from_sluice GROUP BY k ORDER BY k"
        assert [(r.k, r.n, r.total) for r in spark.sql(query).collect()] == run(g, query) == [("a", 1, 1), ("b", 2, 5)]
        run(g, "DROP TABLE default.from_sluice")
        spark.sql("DROP TABLE spark_db.clicks")
        eventually(lambda: run(g, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'spark_db'") == [(0,)])
        spark.sql("DROP DATABASE spark_db")
    finally:
        spark.stop()
