"""The lake: Hive-partitioned external tables on file:// and on s3:// (a real
S3-compatible server), partitions in the catalog (MSCK REPAIR, ADD/DROP
PARTITION, SHOW PARTITIONS), pruning proven by request counts and the S3
server's own log, metadata caches, and managed tables on S3 read by a remote
executor that has its own credentials."""

import re

import pyarrow as pa
import pyarrow.parquet as pq
import psycopg
import pytest

from sluice_fixtures import Executor, Gateway

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def day_table(day, n=4):
    d = int(day[-2:])
    return pa.table(
        {
            "id": pa.array([d * 100 + i for i in range(n)], pa.int64()),
            "amount": pa.array([float(i) for i in range(n)], pa.float64()),
        }
    )


@pytest.fixture(scope="module")
def s3_gateway(workdir, s3):
    s3.create_bucket("lake")
    g = Gateway(
        workdir / "gw-s3",
        env=s3.env(),
        extra=["--warehouse", "s3://lake/warehouse/", "--listing-cache-ttl", "600"],
    ).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def hive_data(workdir, s3):
    """The same Hive-partitioned data set on disk and in the bucket."""
    s3.create_bucket("data")
    base = workdir / "hive-events"
    for day in DAYS:
        (base / f"day={day}").mkdir(parents=True)
        pq.write_table(day_table(day), base / f"day={day}" / "part-0.parquet")
        s3.put_parquet("data", f"events/day={day}/part-0.parquet", day_table(day))
    return {"file": base.as_uri() + "/", "s3": "s3://data/events/", "base": base}


def add_day(hive_data, s3, where, day):
    if where == "file":
        d = hive_data["base"] / f"day={day}"
        d.mkdir(exist_ok=True)
        pq.write_table(day_table(day), d / "part-0.parquet")
    else:
        s3.put_parquet("data", f"events/day={day}/part-0.parquet", day_table(day))


def explain(conn, sql):
    rows = conn.execute("EXPLAIN " + sql).fetchall()
    return [r[1] for r in rows if r[0] == "lake_scan"]


@pytest.mark.parametrize("where", ["file", "s3"])
def test_external_partitions_repair_add_drop_and_prune(s3_gateway, hive_data, s3, where):
    t = f"ev_{where}"
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE EXTERNAL TABLE {t} (id BIGINT, amount DOUBLE, day DATE) STORED AS PARQUET "
            f"PARTITIONED BY (day) LOCATION '{hive_data[where]}'"
        )
        parts = [r[0] for r in conn.execute(f"SHOW PARTITIONS {t}").fetchall()]
        assert parts == [f"day={d}" for d in DAYS], "partitions are discovered at creation"
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 12

        # Data that arrives later is invisible until the catalog learns of it.
        add_day(hive_data, s3, where, "2024-01-04")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 12
        assert conn.execute(f"MSCK REPAIR TABLE {t}").fetchone() == (1, 0)
        assert conn.execute(f"SELECT count(*) FROM {t} WHERE day = DATE '2024-01-04'").fetchone()[0] == 4

        conn.execute(f"ALTER TABLE {t} DROP PARTITION (day = '2024-01-01')")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 12
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"ALTER TABLE {t} DROP PARTITION (day = '2024-01-01')")
        assert e.value.sqlstate == "42704"
        conn.execute(f"ALTER TABLE {t} DROP IF EXISTS PARTITION (day = '2024-01-01')")
        # The data is still there: MSCK ... SYNC brings it back, ADD PARTITION too.
        conn.execute(f"ALTER TABLE {t} ADD PARTITION (day = '2024-01-01') LOCATION '{hive_data[where]}day=2024-01-01/'")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"ALTER TABLE {t} ADD PARTITION (day = '2024-01-01')")
        assert e.value.sqlstate == "42710"
        conn.execute(f"ALTER TABLE {t} ADD IF NOT EXISTS PARTITION (day = '2024-01-01')")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"ALTER TABLE {t} ADD PARTITION (day = 'not-a-date')")
        assert e.value.sqlstate == "22023"
        assert len(conn.execute(f"SHOW PARTITIONS {t}").fetchall()) == 4

        # Filters on the partition column: equality, IN, ranges, casts.
        q = lambda w: conn.execute(f"SELECT id FROM {t} WHERE {w} ORDER BY id").fetchall()
        assert q("day = DATE '2024-01-02'") == [(200 + i,) for i in range(4)]
        assert q("day IN (DATE '2024-01-01', DATE '2024-01-03')") == [(100 + i,) for i in range(4)] + [(300 + i,) for i in range(4)]
        assert len(q("day >= DATE '2024-01-02' AND day < DATE '2024-01-04'")) == 8
        assert len(q("CAST(day AS VARCHAR) = '2024-01-04'")) == 4
        assert q("day = DATE '2024-01-02' AND amount > 2") == [(203,)]

        lines = explain(conn, f"SELECT * FROM {t} WHERE day = DATE '2024-01-03'")
        assert len(lines) == 1 and "partitions 1 of 4, files 1" in lines[0], lines
        lines = explain(conn, f"SELECT * FROM {t}")
        assert "partitions 4 of 4, files 4" in lines[0], lines

        # MSCK ... SYNC drops partitions whose directories are gone.
        conn.execute(f"ALTER TABLE {t} ADD PARTITION (day = '2030-01-01')")
        assert conn.execute(f"MSCK REPAIR TABLE {t} SYNC PARTITIONS").fetchone() == (0, 1)
        assert len(conn.execute(f"SHOW PARTITIONS {t}").fetchall()) == 4


def test_pruned_partitions_are_never_listed_and_warm_queries_list_nothing(s3_gateway, hive_data, s3):
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            "CREATE EXTERNAL TABLE ev_pruned (id BIGINT, amount DOUBLE, day DATE) STORED AS PARQUET "
            f"PARTITIONED BY (day) LOCATION '{hive_data['s3']}'"
        )
        lists = s3_gateway.store_requests("LIST")
        mark = s3.log_mark()
        rows = conn.execute("SELECT sum(amount) FROM ev_pruned WHERE day = DATE '2024-01-02'").fetchone()
        assert rows == (6.0,)
        assert s3_gateway.store_requests("LIST") - lists == 1, "one LIST: the chosen partition"
        requested = s3.requests_since(mark)
        listed = [r for r in requested if "list-type=2" in r]
        assert len(listed) == 1 and "day%3D2024-01-02" in listed[0], requested
        others = [d for d in DAYS if d != "2024-01-02"]
        for d in others:
            assert not any(f"day%3D{d}" in r or f"day={d}" in r for r in requested), (d, requested)

        lists = s3_gateway.store_requests("LIST")
        mark = s3.log_mark()
        assert conn.execute("SELECT sum(amount) FROM ev_pruned WHERE day = DATE '2024-01-02'").fetchone() == (6.0,)
        assert s3_gateway.store_requests("LIST") - lists == 0, "a warm repeat lists nothing"
        assert not [r for r in s3.requests_since(mark) if "list-type=2" in r]

        # REFRESH TABLE drops the cached listing: new files in a known
        # partition show up.
        s3.put_parquet("data", "events/day=2024-01-02/part-1.parquet", day_table("2024-01-02"))
        assert conn.execute("SELECT count(*) FROM ev_pruned WHERE day = DATE '2024-01-02'").fetchone() == (4,)
        conn.execute("REFRESH TABLE ev_pruned")
        assert conn.execute("SELECT count(*) FROM ev_pruned WHERE day = DATE '2024-01-02'").fetchone() == (8,)


def test_int_partitions_and_metrics(s3_gateway, workdir):
    base = workdir / "int-parts"
    for region in (1, 2, 10):
        (base / f"region={region}").mkdir(parents=True)
        pq.write_table(pa.table({"v": pa.array([region] * 3, pa.int64())}), base / f"region={region}" / "f.parquet")
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE EXTERNAL TABLE by_region (v BIGINT, region INT) STORED AS PARQUET PARTITIONED BY (region) LOCATION '{base.as_uri()}/'"
        )
        assert conn.execute("SELECT sum(v) FROM by_region WHERE region > 1").fetchone()[0] == 36
        assert conn.execute("SELECT sum(v) FROM by_region WHERE region BETWEEN 2 AND 9").fetchone()[0] == 6
        assert conn.execute("SELECT count(*) FROM by_region WHERE region IN (1, 10)").fetchone()[0] == 6
    metrics = s3_gateway.metrics()
    assert any(k.startswith("sluice_object_store_requests_total") for k in metrics), metrics.keys()


def test_managed_partitioned_table_on_s3(s3_gateway, s3):
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA mart")
        cur = conn.execute(
            "CREATE TABLE mart.sales PARTITIONED BY (region) AS "
            "SELECT CAST(x AS BIGINT) AS id, CAST(x * 2 AS DOUBLE) AS amount, CAST(x % 3 AS INT) AS region "
            "FROM (VALUES (1), (2), (3), (4), (5), (6)) AS v(x)"
        )
        assert cur.statusmessage == "SELECT 6"
        keys = s3.keys("lake", "warehouse/mart.db/sales/")
        assert {k.split("/")[3] for k in keys} == {"region=0", "region=1", "region=2"}, keys
        assert all(re.search(r"/part-[0-9a-f]{32}-\d{5}\.zstd\.parquet$", k) for k in keys), keys

        conn.execute("INSERT INTO mart.sales VALUES (7, 14.0, 1), (8, 16.0, 5)")
        rows = conn.execute("SELECT id, region FROM mart.sales ORDER BY id").fetchall()
        assert rows == [(1, 1), (2, 2), (3, 0), (4, 1), (5, 2), (6, 0), (7, 1), (8, 5)]

        conn.execute("INSERT OVERWRITE TABLE mart.sales PARTITION (region = 1) SELECT 100, 1.5")
        rows = conn.execute("SELECT id, amount, region FROM mart.sales WHERE region = 1").fetchall()
        assert rows == [(100, 1.5, 1)]
        assert conn.execute("SELECT count(*) FROM mart.sales").fetchone()[0] == 6
        # Dynamic overwrite: only the partitions the query writes are replaced.
        conn.execute("INSERT OVERWRITE TABLE mart.sales SELECT 200, 2.5, 5")
        assert conn.execute("SELECT id FROM mart.sales WHERE region = 5").fetchall() == [(200,)]
        assert conn.execute("SELECT count(*) FROM mart.sales").fetchone()[0] == 6
        parts = [r[0] for r in conn.execute("SHOW PARTITIONS mart.sales").fetchall()]
        assert parts == ["region=0", "region=1", "region=2", "region=5"]
        lines = explain(conn, "SELECT * FROM mart.sales WHERE region = 2")
        assert "partitions 1 of 4, files 1 of 4" in lines[0], lines

        # Replaced files are deleted (grace 0 in tests); the manifest is what is read.
        live = s3.keys("lake", "warehouse/mart.db/sales/")
        assert len(live) == 4, live


def test_remote_executor_reads_s3_with_its_own_credentials(workdir, s3):
    """A gateway with no local executors; one sluice-executor whose AWS
    settings come from its own environment; plans carry no credentials."""
    s3.create_bucket("remote")
    secret = "remote-executor-test-secret-0123456789"
    # The gateway needs credentials to plan (listing); the executor has its own.
    gw = Gateway(
        workdir / "gw-remote",
        env={**s3.env(), "SLUICE_CLUSTER_SECRET": secret},
        local_executors=0,
        extra=["--warehouse", "s3://remote/wh/", "--scheduler-listen", "127.0.0.1:0", "--capacity-wait", "60"],
    )
    gw.start()
    ex = None
    try:
        ex = Executor(workdir, "s3-exec", gw.scheduler, secret, env=s3.env()).start()
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE parts PARTITIONED BY (p) AS SELECT CAST(x AS BIGINT) AS v, CAST(x % 2 AS INT) AS p "
                "FROM (VALUES (1), (2), (3), (4), (5)) AS t(x)"
            )
            before = ex.metrics().get("sluice_executor_object_store_requests_total", 0)
            assert conn.execute("SELECT p, sum(v) FROM parts GROUP BY p ORDER BY p").fetchall() == [(0, 6), (1, 9)]
        after = ex.metrics().get("sluice_executor_object_store_requests_total", 0)
        assert after > before, "the executor read the files from S3 itself"
    finally:
        if ex:
            ex.stop()
        gw.stop()


def test_parquet_footers_are_read_once(s3_gateway, s3):
    s3.create_bucket("footers")
    n = 200_000
    t = pa.table({"a": pa.array(range(n), pa.int64()), "b": pa.array([i * 0.5 for i in range(n)], pa.float64())})

    def put(part):
        buf = pa.BufferOutputStream()
        pq.write_table(t, buf, row_group_size=50_000)
        s3.client().put_object(Bucket="footers", Key=f"f/p={part}/data.parquet", Body=buf.getvalue().to_pybytes())

    put(1)
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE EXTERNAL TABLE footers (a BIGINT, b DOUBLE, p INT) STORED AS PARQUET PARTITIONED BY (p) LOCATION 's3://footers/f/'")
        # A partition added later: nothing has read its file yet.
        put(2)
        conn.execute("ALTER TABLE footers ADD PARTITION (p = 2)")
        q = "SELECT sum(a) FROM footers WHERE p = 2"
        runs = []
        for _ in range(3):
            mark = s3.log_mark()
            assert conn.execute(q).fetchone() == (sum(range(n)),)
            runs.append([r for r in s3.requests_since(mark) if "p=2/data.parquet" in r or "p%3D2/data.parquet" in r])
        cold, warm, warmer = (len(r) for r in runs)
        # Cold: footer reads (per file scan task) plus row groups; warm: row groups only.
        assert warm == warmer and warm < cold, (cold, warm, warmer, runs[0])


def test_named_stores_and_table_options(workdir, s3):
    """Credentials from a named store of the config file; a table choosing
    that store or overriding the endpoint; credentials in OPTIONS refused."""
    s3.create_bucket("named")
    s3.create_bucket("other")
    s3.put_parquet("named", "t/a.parquet", day_table("2024-01-05"))
    s3.put_parquet("other", "t/a.parquet", day_table("2024-01-06"))
    config = workdir / "named-stores.toml"
    config.write_text(
        f"""
[stores.lake]
url = "s3://named"
options = {{ aws_endpoint = "{s3.endpoint}", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "{s3.env()['AWS_ACCESS_KEY_ID']}", aws_secret_access_key = "{s3.env()['AWS_SECRET_ACCESS_KEY']}" }}
"""
    )
    # The environment points nowhere useful: only the config and OPTIONS can.
    env = {**s3.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    gw = Gateway(workdir / "gw-named", env=env, extra=["--config", str(config)]).start()
    try:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTERNAL TABLE by_bucket STORED AS PARQUET LOCATION 's3://named/t'")
            assert conn.execute("SELECT min(id) FROM by_bucket").fetchone()[0] == 500
            conn.execute("CREATE EXTERNAL TABLE by_name STORED AS PARQUET LOCATION 's3://other/t/' OPTIONS ('store' 'lake')")
            assert conn.execute("SELECT min(id) FROM by_name").fetchone()[0] == 600
            conn.execute(
                f"CREATE EXTERNAL TABLE by_option STORED AS PARQUET LOCATION 's3://other/t/' OPTIONS ('aws.endpoint' '{s3.endpoint}')"
            )
            assert conn.execute("SELECT count(*) FROM by_option").fetchone()[0] == 4
            for bad in ("'aws.secret_access_key' 'x'", "'aws.session_token' 'x'"):
                with pytest.raises(psycopg.Error) as e:
                    conn.execute(f"CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION 's3://other/t/' OPTIONS ({bad})")
                assert e.value.sqlstate == "22023" and "credential" in str(e.value), e.value
            with pytest.raises(psycopg.Error) as e:
                conn.execute("CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION 's3://other/t/' OPTIONS ('aws.role_arn' 'arn:aws:iam::1:role/x')")
            assert e.value.sqlstate == "22023" and "cannot be set per table" in str(e.value), e.value
            with pytest.raises(psycopg.Error) as e:
                conn.execute("CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION 's3://other/t/' OPTIONS ('store' 'nope')")
            assert e.value.sqlstate == "22023", e.value
            with pytest.raises(psycopg.Error) as e:
                conn.execute("CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION 'ftp://x/t/'")
            assert e.value.sqlstate == "22023", e.value
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        gw.stop()


def test_aws_profile_supplies_credentials_and_region(workdir, s3):
    """No AWS_ACCESS_KEY_ID in the environment: the keys and region come from
    the shared files of AWS_PROFILE."""
    s3.create_bucket("profiled")
    s3.put_parquet("profiled", "t/a.parquet", day_table("2024-01-07"))
    aws = workdir / "aws"
    aws.mkdir(exist_ok=True)
    (aws / "credentials").write_text(
        f"[default]\naws_access_key_id = wrong\n\n[lake]\naws_access_key_id = {s3.env()['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {s3.env()['AWS_SECRET_ACCESS_KEY']}\n"
    )
    (aws / "config").write_text(f"[profile lake]\nregion = us-east-1\nendpoint_url = {s3.endpoint}\n")
    env = {
        "AWS_PROFILE": "lake",
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_ALLOW_HTTP": "true",
        # Never reach a real metadata service from a test.
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    gw = Gateway(workdir / "gw-profile", env=env)
    import os

    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
    try:
        gw.start()
    finally:
        os.environ.update(hidden)
    try:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTERNAL TABLE profiled STORED AS PARQUET LOCATION 's3://profiled/t/'")
            assert conn.execute("SELECT count(*), min(id) FROM profiled").fetchone() == (4, 700)
    finally:
        gw.stop()


def test_null_partitions_of_typed_columns(s3_gateway, workdir):
    base = workdir / "null-parts"
    for d in ("2024-03-01", "__HIVE_DEFAULT_PARTITION__"):
        (base / f"day={d}").mkdir(parents=True)
        pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64())}), base / f"day={d}" / "f.parquet")
    with psycopg.connect(s3_gateway.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE EXTERNAL TABLE nulls (id BIGINT, day DATE) STORED AS PARQUET PARTITIONED BY (day) LOCATION '{base.as_uri()}/'"
        )
        assert conn.execute("SELECT count(*) FROM nulls").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM nulls WHERE day IS NULL").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM nulls WHERE day = DATE '2024-03-01'").fetchone() == (2,)
