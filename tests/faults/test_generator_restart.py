"""The generator process is killed under load and started again."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.store import open_store
from tests.faults.harness import Generator, publish_tiny
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
# The README's "What survives what" quotes the restart window against this bound (measured: about 5 s).
RESTART_BOUND_SECONDS = 60


def retries_covering(seconds: float) -> int:
    """How many retries GeneratorClient needs so that even its shortest backoff sequence waits `seconds`.

    Its backoff before retry a is min(0.1·2^a, 2 s) times a jitter in [0.5, 1.5).
    """
    retries, waited = 0, 0.0
    while waited < seconds:
        waited += 0.5 * min(0.1 * 2**retries, 2.0)
        retries += 1
    return retries


def test_generator_killed_under_load_serves_the_latest_snapshot_again_and_retrying_clients_see_no_error(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_tiny(store, "r", 100)
    publish_tiny(store, "r", 200)
    generator = Generator(store.url, "r", tmp_path / "logs")
    started = time.monotonic()
    generator.start()
    # A backend's retry budget covers the restart it must ride out: thrice a cold start on this machine, now, plus 10 s.
    retries = retries_covering(3 * (time.monotonic() - started) + 10)
    results: list[tuple[float, int]] = []
    errors: list[tuple[float, str]] = []
    stop = threading.Event()

    def backend(worker: int) -> None:
        with GeneratorClient(generator.address, retries=retries, timeout=60) as client:
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
        wait_until(lambda: len(results) >= 20, 60, "calls served before the kill")
        served_before = len(results)
        killed_at = time.monotonic()
        generator.kill()
        generator.start()
        ready_at = time.monotonic()
        wait_until(lambda: sum(at > ready_at for at, _ in results) >= 20, 60, "calls served after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        generator.stop()

    after = [version for at, version in results if at > ready_at]
    window = ready_at - killed_at
    print(f"restart window {window:.1f}s (client retries {retries}); {served_before} calls before the kill, {len(after)} after")
    assert set(after) == {200}, "after the restart the latest snapshot is served"
    assert errors == [], f"retrying clients saw errors: {errors[:5]}"
    assert window < RESTART_BOUND_SECONDS, f"the generator took {window:.0f}s to serve again after a kill"
