"""moto's S3 server on $S3_LISTEN with the buckets of $S3_BUCKETS created;
`--check` asks a running one whether it answers (the health check)."""

import os
import signal
import sys
import threading
import urllib.request

host, port = os.environ.get("S3_LISTEN", "0.0.0.0:9000").rsplit(":", 1)

if "--check" in sys.argv:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

server = ThreadedMotoServer(ip_address=host, port=int(port))
server.start()
s3 = boto3.client(
    "s3",
    endpoint_url=f"http://127.0.0.1:{port}",
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "sluice"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "sluice-secret"),
)
for bucket in filter(None, os.environ.get("S3_BUCKETS", "").split(",")):
    s3.create_bucket(Bucket=bucket.strip())
print(f"s3: serving on {host}:{port}, buckets {os.environ.get('S3_BUCKETS', '')}", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
server.stop()
