"""The generator process is killed under load and started again."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.store import open_store
from tests.faults.harness import Generator, publish_tiny

pytestmark = pytest.mark.slow


def test_generator_killed_under_load_serves_the_latest_snapshot_again_and_retrying_clients_see_no_error(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_tiny(store, "r", 100)
    publish_tiny(store, "r", 200)
    generator = Generator(store.url, "r", tmp_path / "logs").start()
    results: list[tuple[float, int]] = []
    errors: list[tuple[float, str]] = []
    stop = threading.Event()

    def backend(worker: int) -> None:
        # A backend with retries: up to ~13 s of exponential backoff on UNAVAILABLE.
        with GeneratorClient(generator.address, retries=10, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    images = client.generate("r", 1, seed=worker * 100_000 + i)
                    results.append((time.monotonic(), images.version))
                except grpc.RpcError as exc:
                    errors.append((time.monotonic(), exc.code().name))

    threads = [threading.Thread(target=backend, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        served_before = len(results)
        killed_at = time.monotonic()
        generator.kill()
        generator.start()
        ready_at = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        generator.stop()

    after = [version for at, version in results if at > ready_at]
    print(f"restart window {ready_at - killed_at:.1f}s; {served_before} calls before the kill, {len(after)} after")
    assert served_before > 0 and after, "calls were served before the kill and after the restart"
    assert set(after) == {200}, "after the restart the latest snapshot is served"
    assert errors == [], f"retrying clients saw errors: {errors[:5]}"
