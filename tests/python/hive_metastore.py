"""A throw-away Apache Hive Metastore 2.3 for the tests: the jars of the
PyPI pyspark package (tests/requirements.txt) on Derby. The metastore binds
every interface, so it runs in a network namespace of its own, reached from
the tests over a veth pair on a private /30 (needs root, as CI runs)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def jars() -> Path:
    import pyspark

    found = Path(pyspark.__file__).parent / "jars"
    assert (found / "hive-metastore-2.3.10.jar").exists(), f"no Hive Metastore jars in {found}"
    return found


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class HiveMetastore:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-hms-"))
        pid = os.getpid()
        self.namespace = f"sluice-phms-{pid}"
        self.outside, self.inside = f"sp{pid}a", f"sp{pid}b"
        n = pid % 16000
        base = (n % 64) * 4
        self.host_ip = f"10.214.{n // 64}.{base + 1}"
        self.host = f"10.214.{n // 64}.{base + 2}"
        self.port = 9083
        self.proc = None

    @property
    def uri(self) -> str:
        return f"thrift://{self.host}:{self.port}"

    @property
    def log(self) -> str:
        return (self.dir / "log").read_text(errors="replace")

    def start(self, timeout=120):
        assert shutil.which("java"), "the Hive Metastore needs a JDK (tests/run.sh installs default-jre-headless)"
        ns = self.namespace
        _ip("netns", "add", ns)
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{self.host}/30", "dev", self.inside)
        _ip("netns", "exec", ns, "ip", "link", "set", self.inside, "up")
        d = self.dir
        args = [
            "ip", "netns", "exec", ns, "java", "-Xmx512m",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/java.net=ALL-UNNAMED",
            "--add-opens=java.base/java.util=ALL-UNNAMED",
            f"-Djavax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={d}/metastore_db;create=true",
            "-Djavax.jdo.option.ConnectionDriverName=org.apache.derby.jdbc.EmbeddedDriver",
            "-Ddatanucleus.schema.autoCreateAll=true",
            "-Dhive.metastore.schema.verification=false",
            "-Dhive.async.log.enabled=false",
            # DROP DATABASE reaches the transaction tables: a pool whose jar is
            # bundled, and Hive's test switch that creates them.
            "-Ddatanucleus.connectionPoolingType=DBCP",
            "-Dhive.in.test=true",
            f"-Dhive.metastore.warehouse.dir=file://{d}/warehouse",
            f"-Dderby.system.home={d}",
            "-cp", f"{jars()}/*",
            "org.apache.hadoop.hive.metastore.HiveMetaStore", "-p", str(self.port),
        ]
        log = open(d / "log", "wb")
        self.proc = subprocess.Popen(args, cwd=d, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.25)
        log = self.log[-4000:]
        self.stop()
        raise RuntimeError(f"the Hive Metastore did not start: {log}")

    def client(self):
        from hmsclient import hmsclient

        return hmsclient.HMSClient(host=self.host, port=self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


PARQUET_IN = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def parquet_storage(location, columns):
    """The storage descriptor of Parquet files at `location` with `columns`
    ((name, Hive type) pairs), as a metastore client sends it."""
    from hmsclient.genthrift.hive_metastore import ttypes

    return ttypes.StorageDescriptor(
        cols=[ttypes.FieldSchema(name=n, type=t) for n, t in columns],
        location=location,
        inputFormat=PARQUET_IN,
        outputFormat=PARQUET_OUT,
        compressed=False,
        numBuckets=-1,
        serdeInfo=ttypes.SerDeInfo(serializationLib=PARQUET_SERDE, parameters={}),
        bucketCols=[],
        sortCols=[],
        parameters={},
    )


def spark_session(metastore_uri, warehouse, app):
    """Spark in local mode (PyPI pyspark, the installed JDK) with its Hive
    catalog at `metastore_uri`."""
    assert shutil.which("java"), "Spark needs a JDK (tests/run.sh installs default-jre-headless)"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .appName(app)
        .config("spark.hadoop.hive.metastore.uris", metastore_uri)
        .config("spark.sql.catalogImplementation", "hive")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .enableHiveSupport()
        .getOrCreate()
    )
