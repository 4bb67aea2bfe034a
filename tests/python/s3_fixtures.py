"""A real S3-compatible server (moto) on loopback, started once per test
session, and helpers to put Parquet data into it."""

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ACCESS_KEY = "sluice-test-key"
SECRET_KEY = "sluice-test-secret"
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto_server on 127.0.0.1; its log lists every request."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.log_path = base / "moto.log"
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        moto = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).read()
                return self
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto exited: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        raise RuntimeError("moto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def env(self):
        """The standard AWS variables, as a gateway or executor gets them."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)

    def put_parquet(self, bucket, key, table: pa.Table):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.client().put_object(Bucket=bucket, Key=key, Body=buf.getvalue())

    def keys(self, bucket, prefix=""):
        out = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def log_mark(self):
        """Position in the request log, for `requests_since`."""
        return self.log_path.stat().st_size

    def requests_since(self, mark):
        """Request lines ("GET /bucket?list-type=2&prefix=..." ...) since `mark`."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # werkzeug colours some lines
        return [line for line in text.splitlines() if re.search(r'"(GET|PUT|HEAD|DELETE|POST) ', line)]


@pytest.fixture(scope="session")
def s3(workdir):
    server = S3Server(workdir).start()
    yield server
    server.stop()


AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """Azurite's Blob service on 127.0.0.1 (the Azure Storage emulator)."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.log_path = base / "azurite.log"
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        binary = os.environ.get("SLUICE_AZURITE_BIN", "/var/tmp/sluice-azurite/node_modules/.bin/azurite-blob")
        data = self.base / "azurite-data"
        data.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(data),
             "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl"],
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"azurite exited: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        raise RuntimeError("azurite did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def env(self):
        """The standard Azure variables for the emulator, as a process gets them."""
        return {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.endpoint}

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    def create_container(self, name):
        self.service().create_container(name)

    def put_parquet(self, container, name, table: pa.Table):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.service().get_blob_client(container, name).upload_blob(buf.getvalue(), overwrite=True)

    def names(self, container, prefix=""):
        return sorted(b.name for b in self.service().get_container_client(container).list_blobs(name_starts_with=prefix))


@pytest.fixture(scope="session")
def azurite(workdir):
    server = Azurite(workdir).start()
    yield server
    server.stop()
