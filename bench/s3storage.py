"""Durable storage for the embedded broker in the drills: Tansu's ``s3://`` storage engine on a
local moto S3 server, so that topics, records and committed offsets survive a broker restart as
they would on Kafka (shared/BROKER.md, "A broker that survives its own restart")."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devmesh.tansu import HOST, free_port
from devmesh.supervise import ProcessError, wait_until


class S3Storage:
    """A moto S3 server on a free loopback port with the bucket Tansu's ``s3://tansu/``
    storage engine writes to; ``env`` is what the broker needs to reach it."""

    BUCKET = "tansu"
    URL = f"s3://{BUCKET}/"

    def __init__(self, log_dir: Path) -> None:
        self.log_path = Path(log_dir) / "moto_server.log"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        try:
            import boto3  # ships with moto: the 'test' extra
            import moto.server  # noqa: F401
        except ImportError:
            raise ProcessError("the durable broker drill needs moto: pip install "
                               "'referral-mesh[test]' (or the 'drills' extra)") from None
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        endpoint = f"http://{HOST}:{port}"
        self.env = {"AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true",
                    "AWS_ACCESS_KEY_ID": "drill", "AWS_SECRET_ACCESS_KEY": "drill",
                    "AWS_DEFAULT_REGION": "eu-west-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="drill",
                          aws_secret_access_key="drill", region_name="eu-west-1")

        def bucket():
            if self.proc.poll() is not None:
                raise ProcessError(f"moto_server exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            try:
                s3.create_bucket(Bucket=self.BUCKET, CreateBucketConfiguration={
                    "LocationConstraint": "eu-west-1"})
                return True
            except Exception:  # noqa: BLE001 (not listening yet)
                return False

        try:
            wait_until(bucket, timeout, "moto_server to create the bucket", 0.2)
        except BaseException:
            self.stop()
            raise
        return self.env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
