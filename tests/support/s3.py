"""An S3 store for a test: SeaweedFS (`weed server` with its S3 gateway; Apache-2.0), the binary
infra/seaweedfs/provision.py builds, on loopback ports, one identity with fresh keys, one bucket.

    with s3_store(tmp_path / "s3", tmp_path / "s3.log") as s3:
        env = {**env, **s3.env()}  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL
        s3.url("dvc")              # s3://ragops/dvc
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from components.settings import Settings
from flows.process import stop_process_group
from infra.seaweedfs.provision import binary_path
from tests.support.processes import free_port, wait_for

BUCKET = "ragops"


@dataclass
class S3Store:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """What a client of the store needs: boto3, s3fs (DVC) and MLflow read these."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` in the bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _bucket_made(store: S3Store) -> bool:
    assert store.process.poll() is None, "the SeaweedFS server exited"
    try:
        store.client().create_bucket(Bucket=BUCKET)
        return True
    except ClientError as error:
        return error.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    except BotoCoreError:  # not listening yet
        return False


@contextlib.contextmanager
def s3_store(folder: Path, log_path: Path, access_key: str | None = None,
             secret_key: str | None = None) -> Iterator[S3Store]:
    """Master, volume server, filer and S3 gateway in one `weed server` process: its data in
    `folder`/data, the identity with the keys (new ones unless given) in `folder`/identities.json."""
    binary = binary_path(Settings())
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: run `python infra/seaweedfs/provision.py` (make test does)")
    folder.mkdir(parents=True)
    access, secret = access_key or secrets.token_hex(10), secret_key or secrets.token_urlsafe(30)
    config = folder / "identities.json"
    config.write_text(json.dumps({"identities": [{"name": "ragops", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                                                  "credentials": [{"accessKey": access, "secretKey": secret}]}]}))
    # Every port named (gRPC ones default to HTTP + 10000, past 65535 for a high free port); no
    # Iceberg catalog, no telemetry (it would call seaweedfs.com); small volumes (64 MB, not 30 GB).
    ports = {f"{part}.port{kind}": free_port() for part in ("master", "volume", "filer", "s3") for kind in ("", ".grpc")}
    command = [str(binary), "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{flag}={port}" for flag, port in ports.items()),
               "-filer", "-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-master.telemetry=false",
               "-master.volumeSizeLimitMB=64", "-volume.max=8"]
    (folder / "data").mkdir()
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    store = S3Store(f"http://127.0.0.1:{ports['s3.port']}", access, secret, process)
    try:
        wait_for(lambda: _bucket_made(store), 120, "SeaweedFS's S3 gateway", interval=0.5)
        yield store
    finally:  # it stops its parts one by one for up to 30 s; what a test wrote is on disk already
        stop_process_group(process, signal.SIGTERM, timeout_s=3)
