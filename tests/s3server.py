"""A real S3-protocol server on loopback for the tests: moto's server in its own process.

When GANWORKS_TEST_S3_ENDPOINT (with GANWORKS_TEST_S3_ACCESS_KEY / _SECRET_KEY) is set, tests use that
endpoint instead, e.g. a real MinIO.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import uuid

from orchestration.processes import free_port
from ganworks.testing.s3local import spawn_moto, wait_moto_ready


@dataclasses.dataclass
class S3Endpoint:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    secure: bool = False
    process: subprocess.Popen | None = None
    port: int = 0

    def env(self) -> dict[str, str]:
        return {
            "GANWORKS_S3_ENDPOINT": f"{'https' if self.secure else 'http'}://{self.endpoint}",
            "GANWORKS_S3_ACCESS_KEY": self.access_key,
            "GANWORKS_S3_SECRET_KEY": self.secret_key,
            "GANWORKS_S3_REGION": "us-east-1",
        }

    def store_settings(self, **overrides):
        from ganworks.settings import StoreSettings

        values = dict(s3_endpoint=f"{'https' if self.secure else 'http'}://{self.endpoint}", s3_access_key=self.access_key, s3_secret_key=self.secret_key, s3_region="us-east-1", retry_seconds=10.0)
        values.update(overrides)
        return StoreSettings(**values)

    def new_bucket_url(self, prefix: str = "t") -> str:
        return f"s3://{prefix}-{uuid.uuid4().hex[:12]}/data"

    # -- only for the moto server that the tests own ------------------------------------------------------

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    enforce_auth: bool = False

    def start(self) -> None:
        """(Re)starts the moto server on the same port; its objects are in memory, so a restart empties it."""
        self.process = spawn_moto(self.port, self.enforce_auth)
        wait_moto_ready(self.port, self.process)


def start_s3(enforce_auth: bool = False) -> S3Endpoint:
    """The test endpoint; enforce_auth gives a moto server that refuses every credential (moto only)."""
    external = os.environ.get("GANWORKS_TEST_S3_ENDPOINT")
    if external:
        secure = external.startswith("https://")
        return S3Endpoint(
            endpoint=external.split("://", 1)[-1],
            access_key=os.environ.get("GANWORKS_TEST_S3_ACCESS_KEY", ""),
            secret_key=os.environ.get("GANWORKS_TEST_S3_SECRET_KEY", ""),
            secure=secure,
        )
    port = free_port()
    endpoint = S3Endpoint(endpoint=f"127.0.0.1:{port}", access_key="testing-key", secret_key="testing-secret", port=port, enforce_auth=enforce_auth)
    endpoint.start()
    return endpoint
