"""Spark (PyPI pyspark, local mode on the installed JDK) with its Hive
metastore pointed at the gateway's `--hms-listen`: it lists Sluice's
databases and tables and reads an external partitioned table and a managed
one, pruning partitions through `get_partitions_by_filter`, with the rows
Sluice returns."""

import json
import shutil

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hive_metastore
from sluice_fixtures import Gateway


@pytest.fixture(scope="module")
def spark_on_sluice(workdir):
    assert shutil.which("java"), "Spark needs a JDK (tests/run.sh installs default-jre-headless)"
    base = workdir / "spark"
    base.mkdir()
    data = base / "events"
    for day, n in (("2024-01-01", 10), ("2024-01-02", 20), ("2024-01-03", 30)):
        (data / f"day={day}").mkdir(parents=True)
        ids = pa.array(range(n), pa.int64())
        pq.write_table(pa.table({"id": ids, "amount": pa.array([0.5 * i for i in range(n)])}), data / f"day={day}" / "part-0.parquet")
    g = Gateway(
        base / "gw",
        extra=["--hms-listen", "127.0.0.1:0"],
        local_executors=1,
        env={"SLUICE_LOG": "info,sluice_gateway::hms=debug"},
    ).start()
    hms = json.loads((base / "gw-listen.json").read_text())["hms"]
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("CREATE SCHEMA lake")
        c.execute(
            "CREATE EXTERNAL TABLE lake.events (id BIGINT, amount DOUBLE, day VARCHAR) STORED AS PARQUET "
            f"PARTITIONED BY (day) LOCATION 'file://{data}/'"
        )
        c.execute("CREATE TABLE lake.summary AS SELECT day, count(*) AS n, sum(amount) AS total FROM lake.events GROUP BY day")

    spark = hive_metastore.spark_session(f"thrift://{hms}", base / "spark-warehouse", "sluice-hms")
    yield spark, g
    spark.stop()
    g.stop()


def sluice(g, sql):
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        return c.execute(sql).fetchall()


def test_spark_lists_sluice_databases_and_tables(spark_on_sluice):
    spark, g = spark_on_sluice
    assert {r[0] for r in spark.sql("SHOW DATABASES").collect()} >= {"default", "lake"}
    assert sorted(r.tableName for r in spark.sql("SHOW TABLES IN lake").collect()) == ["events", "summary"]
    assert [(r.col_name, r.data_type) for r in spark.sql("DESCRIBE lake.events").collect()][:3] == [
        ("id", "bigint"),
        ("amount", "double"),
        ("day", "string"),
    ]


def test_spark_reads_a_partition_filter_with_sluices_rows(spark_on_sluice):
    spark, g = spark_on_sluice
    query = "SELECT day, count(*) AS n, sum(amount) AS total FROM lake.events WHERE day >= '2024-01-02' GROUP BY day ORDER BY day"
    spark_rows = [(r.day, r.n, r.total) for r in spark.sql(query).collect()]
    assert spark_rows == [(d, n, float(t)) for d, n, t in sluice(g, query)]
    assert spark_rows == [("2024-01-02", 20, 95.0), ("2024-01-03", 30, 217.5)]
    # The pruning was the metastore's: Spark asked for the filtered partitions.
    assert "get_partitions_by_filter" in g.log_path.read_text()


def test_spark_reads_a_managed_table_sluice_wrote(spark_on_sluice):
    spark, g = spark_on_sluice
    rows = sorted((r.day, r.n, r.total) for r in spark.sql("SELECT day, n, total FROM lake.summary").collect())
    assert rows == sorted((d, n, float(t)) for d, n, t in sluice(g, "SELECT day, n, total FROM lake.summary"))
    assert len(rows) == 3


def test_spark_creates_and_fills_a_table_sluice_reads(spark_on_sluice, workdir):
    spark, g = spark_on_sluice
    location = workdir / "spark" / "from_spark"
    spark.sql(
        "CREATE TABLE lake.from_spark (id BIGINT, v STRING) PARTITIONED BY (p STRING) "
        f"STORED AS PARQUET LOCATION 'file://{location}'"
    )
    spark.sql("INSERT INTO lake.from_spark PARTITION (p='a') VALUES (1, 'x'), (2, 'y')")
    spark.sql("INSERT INTO lake.from_spark PARTITION (p='b') VALUES (3, 'z')")
    # No Sluice DDL: the table and its partitions came through the metastore.
    assert sluice(g, "SELECT id, v, p FROM lake.from_spark ORDER BY id") == [(1, "x", "a"), (2, "y", "a"), (3, "z", "b")]
    assert sluice(g, "SELECT count(*) FROM lake.from_spark WHERE p = 'b'") == [(1,)]
    spark.sql("DROP TABLE lake.from_spark")
    with pytest.raises(psycopg.errors.UndefinedTable):
        sluice(g, "SELECT * FROM lake.from_spark")
