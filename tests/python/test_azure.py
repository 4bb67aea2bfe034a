"""Azure Blob Storage (az://) against Azurite, the Azure Storage emulator:
a partitioned external table with pruning, and a managed warehouse."""

import psycopg

from sluice_fixtures import Gateway
from test_lake import day_table


def test_azure_external_and_managed_tables(workdir, azurite):
    azurite.create_container("lake")
    for day in ("2024-02-01", "2024-02-02"):
        azurite.put_parquet("lake", f"events/day={day}/part-0.parquet", day_table(day))
    gw = Gateway(workdir / "gw-azure", env=azurite.env(), extra=["--warehouse", "az://lake/warehouse/"]).start()
    try:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute(
                "CREATE EXTERNAL TABLE az_events (id BIGINT, amount DOUBLE, day DATE) STORED AS PARQUET "
                "PARTITIONED BY (day) LOCATION 'az://lake/events/'"
            )
            assert [r[0] for r in conn.execute("SHOW PARTITIONS az_events").fetchall()] == ["day=2024-02-01", "day=2024-02-02"]
            lists = gw.store_requests("LIST")
            assert conn.execute("SELECT min(id) FROM az_events WHERE day = DATE '2024-02-02'").fetchone() == (200,)
            assert gw.store_requests("LIST") - lists == 1
            conn.execute("CREATE TABLE az_managed PARTITIONED BY (day) AS SELECT id, amount, day FROM az_events")
            conn.execute("INSERT INTO az_managed VALUES (1, 1.0, DATE '2024-02-03')")
            assert conn.execute("SELECT count(*) FROM az_managed").fetchone() == (9,)
            assert conn.execute("SELECT count(*) FROM az_managed WHERE day = DATE '2024-02-03'").fetchone() == (1,)
        blobs = azurite.names("lake", "warehouse/az_managed/")
        assert len(blobs) == 3 and all(b.endswith(".zstd.parquet") for b in blobs), blobs
    finally:
        gw.stop()
