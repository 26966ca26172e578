"""Fixtures for the generator tests: small published snapshots and real servers on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import urllib.request

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganworks.checkpoint import Manifest, publish_snapshot
from ganworks.models import build_generator
from ganworks.generator_client import GeneratorClient
from generator_service.server import GeneratorServer
from generator_service.settings import GeneratorSettings

SMALL = {"image_size": 16, "channels": 1, "latent_dim": 16, "width": 16}
CONDITIONAL = {**SMALL, "num_classes": 10}


def publish(store, run: str, step: int, params: dict = SMALL, weights_seed: int | None = None, **kwargs) -> Manifest:
    """Publishes a randomly initialised DCGAN; different steps get different weights unless told otherwise."""
    torch.manual_seed(step if weights_seed is None else weights_seed)
    generator = build_generator("dcgan", **params)
    return publish_snapshot(store, run=run, step=step, generator_state=generator.state_dict(), architecture="dcgan", architecture_params=params, **kwargs)


ONE_STEP = 1.0 / 255.0  # one level of an 8-bit image


def assert_same_images_in_any_batch(server, run: str, count: int, seed: int, other_sizes: tuple[int, ...], prefix: int) -> None:
    """The same request alone, mixed concurrently with others (sharing and splitting batches), and as a shorter prefix
    gives the same images and labels; and the samples differ from each other."""
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    with server.client() as client:
        alone = client.generate(run, count, seed=seed, output="float32")
        with ThreadPoolExecutor(8) as pool:
            others = [pool.submit(client.generate, run, n, seed=1000 + n, output="float32") for n in other_sizes]
            mixed = [pool.submit(client.generate, run, count, seed=seed, output="float32") for _ in range(3)]
            results = [f.result() for f in mixed]
            [f.result() for f in others]
        shorter = client.generate(run, prefix, seed=seed, output="float32")
    for result in results:
        assert np.abs(result.images - alone.images).max() <= ONE_STEP
        assert np.array_equal(result.labels, alone.labels)
    # Sample i of a larger request is sample i of a smaller one with the same seed.
    assert np.abs(shorter.images - alone.images[:prefix]).max() <= ONE_STEP
    assert np.abs(alone.images[0] - alone.images[1]).max() > 0.05


class RunningServer:
    """A GeneratorServer on its own event loop in a thread, so tests can use the blocking client."""

    def __init__(self, settings: GeneratorSettings, store, wait_ready: bool = True):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = GeneratorServer(settings, store)
        self.call(self.server.start())
        if wait_ready:
            self.call(self.server.wait_ready(60))
        self.address = f"127.0.0.1:{self.server.port}"
        self._stopped = False

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, **kwargs) -> GeneratorClient:
        return GeneratorClient(self.address, **kwargs)

    def health(self, service: str = "") -> str:
        with grpc.insecure_channel(self.address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str, **labels) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in self.metrics_text().splitlines():
            key, _, value = line.rpartition(" ")
            if key == (f"{name}{{{wanted}}}" if labels else name):
                return float(value)
        return 0.0

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.call(self.server.stop(grace=2))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture
def serve():
    """serve(store, ["run"], **settings) -> a ready RunningServer; every server is stopped after the test."""
    servers: list[RunningServer] = []

    def start(store, runs: list[str], wait_ready: bool = True, **overrides) -> RunningServer:
        # fast_path off: choosing it times every form at each load; tests/generator/test_fast_path.py turns it on.
        values = {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "runs": runs, "poll_seconds": 0.2, "png_threads": 1, "grace_seconds": 2.0, "fast_path": False}
        values.update(overrides)
        server = RunningServer(GeneratorSettings(**values), store, wait_ready=wait_ready)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def start_server_process(store_url: str, runs: str, *flags: str, hold_file: str | None = None, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, int, int | None]:
    """Runs `ganworks generator serve` as a subprocess on free ports; returns it, its gRPC and its /metrics port.

    With `hold_file`, every model call waits while that file exists (tests/generator/held_model.py)."""
    exe = os.path.join(os.path.dirname(sys.executable), "ganworks")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "ganworks.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    if hold_file:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cmd, env["GANWORKS_TEST_HOLD_FILE"], env["PYTHONPATH"] = [sys.executable, "-m", "tests.generator.held_model"], hold_file, root
    process = subprocess.Popen(
        [*cmd, "generator", "serve", "--runs", runs, "--store", store_url, "--host", "127.0.0.1", "--port", "0", *flags],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
    )
    line = process.stdout.readline()
    match = re.search(r"listening on [\d.]+:(\d+) metrics_port=(\S+)", line)
    if not match:
        process.kill()
        process.wait()
        raise AssertionError(f"`ganworks generator serve` did not start (said {line!r})")
    return process, int(match.group(1)), (None if match.group(2) == "None" else int(match.group(2)))


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    process.stdout.close()
