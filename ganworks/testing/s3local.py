"""An S3-protocol server on loopback: moto's server as a child process (objects in memory, gone when it stops).

The tests' store (tests/s3server.py) and the chaos soak (benchmarks/soak.py) start it the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request


def spawn_moto(port: int, enforce_auth: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts moto's server on 127.0.0.1:port; enforce_auth makes it refuse every credential (it knows no IAM users)."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    env = dict(env or os.environ)
    if enforce_auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    return subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_moto_ready(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on port {port} within {timeout}s")
