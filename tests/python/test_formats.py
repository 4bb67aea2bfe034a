"""Table formats and write settings: Parquet, CSV, NDJSON and Avro reads;
managed tables written with zstd (default), snappy or no compression and a
row-group size; high-cardinality partitioned writes; footers read once."""

import json

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import psycopg
import pytest


@pytest.fixture(scope="module")
def formats(workdir):
    base = workdir / "formats"
    rows = [{"id": i, "name": f"n{i}", "score": i * 0.5} for i in range(10)]
    (base / "json").mkdir(parents=True)
    with open(base / "json" / "a.json", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (base / "avro").mkdir()
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string"},
            {"name": "score", "type": "double"},
        ],
    }
    with open(base / "avro" / "a.avro", "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), rows)
    (base / "csv" / "k=1").mkdir(parents=True)
    (base / "csv" / "k=2").mkdir(parents=True)
    (base / "csv" / "k=1" / "a.csv").write_text("id,name\n1,x\n2,y\n")
    (base / "csv" / "k=2" / "b.csv").write_text("id,name\n3,z\n")
    return base


def test_json_avro_and_partitioned_csv_reads(gateway, formats):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE f_json STORED AS JSON LOCATION '{formats}/json/'")
        conn.execute(f"CREATE EXTERNAL TABLE f_avro STORED AS AVRO LOCATION '{formats}/avro/'")
        conn.execute(
            f"CREATE EXTERNAL TABLE f_csv (id BIGINT, name VARCHAR, k INT) STORED AS CSV PARTITIONED BY (k) "
            f"LOCATION '{formats}/csv/' OPTIONS ('format.has_header' 'true')"
        )
        for t in ("f_json", "f_avro"):
            assert conn.execute(f"SELECT count(*), sum(id), max(name) FROM {t} WHERE score >= 1").fetchone() == (8, 44, "n9"), t
        assert conn.execute("SELECT id, name, k FROM f_csv ORDER BY id").fetchall() == [(1, "x", 1), (2, "y", 1), (3, "z", 2)]
        assert conn.execute("SELECT count(*) FROM f_csv WHERE k = 2").fetchone()[0] == 1


def parquet_of(gateway, name):
    files = sorted((gateway.data_dir / "warehouse" / name).rglob("*.parquet"))
    assert files, name
    return [pq.ParquetFile(f).metadata for f in files]


@pytest.mark.parametrize("codec,expected", [("snappy", "SNAPPY"), ("none", "UNCOMPRESSED"), ("zstd", "ZSTD")])
def test_compression_and_row_group_size_on_write(gateway, codec, expected):
    name = f"w_{codec}"
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} WITH (compression = '{codec}', row_group_size = 1000) AS "
            "SELECT CAST(value AS BIGINT) AS v FROM generate_series(1, 4500)"
        )
        # INSERT keeps the table's settings.
        conn.execute(f"INSERT INTO {name} SELECT CAST(value AS BIGINT) FROM generate_series(1, 10)")
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 4510
    metas = parquet_of(gateway, name)
    assert len(metas) == 2
    assert metas[0].num_row_groups + metas[1].num_row_groups == 5 + 1
    for m in metas:
        for rg in range(m.num_row_groups):
            assert m.row_group(rg).column(0).compression == expected
            assert m.row_group(rg).num_rows <= 1000


def test_bad_write_settings_are_refused(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        for bad in ("compression = 'lz77'", "row_group_size = 0", "colour = 'red'"):
            with pytest.raises(psycopg.Error) as e:
                conn.execute(f"CREATE TABLE w_bad WITH ({bad}) AS SELECT 1 AS a")
            assert e.value.sqlstate == "22023", bad
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'w_bad'").fetchone()[0] == 0


def test_high_cardinality_partitioned_write(gateway):
    """More partitions than --write-max-open-files (64): files roll, memory
    and file handles stay bounded, every row lands in its partition."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE many PARTITIONED BY (p) AS "
            "SELECT CAST(value AS BIGINT) AS v, CAST(value % 1500 AS BIGINT) AS p FROM generate_series(1, 30000)"
        )
        assert conn.execute("SELECT count(*), count(DISTINCT p) FROM many").fetchone() == (30000, 1500)
        assert conn.execute("SELECT sum(v) FROM many WHERE p = 7").fetchone()[0] == sum(range(7, 30001, 1500))
        assert len(conn.execute("SHOW PARTITIONS many").fetchall()) == 1500
