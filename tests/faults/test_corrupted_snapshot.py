"""A snapshot whose weights were modified after publishing is refused everywhere, with a reason and a metric."""

from __future__ import annotations

import time

import pytest

from generator_service.client import GeneratorClient
from ganworks.checkpoint import latest_key, load_snapshot, snapshot_prefix
from ganworks.errors import CheckpointIntegrityError
from ganworks.store import open_store
from ganworks.system.status import scrape
from tests.faults.harness import Generator, publish_tiny

pytestmark = pytest.mark.slow


def corrupt_and_announce(store, run: str, step: int) -> None:
    """Publishes step, flips a byte of its weights, then points LATEST at it, as a damaged upload would."""
    publish_tiny(store, run, step, _stop_after="manifest")
    key = f"{snapshot_prefix(run, step)}/generator.safetensors"
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))
    store.put_bytes(latest_key(run), f"{step}\n".encode())


def test_corrupted_snapshot_is_refused_by_the_generator_which_keeps_serving_the_old_one(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_tiny(store, "r", 100)
    generator = Generator(store.url, "r", tmp_path / "logs").start()
    try:
        corrupt_and_announce(store, "r", 200)
        deadline = time.monotonic() + 30
        refused = 0.0
        while time.monotonic() < deadline and not refused:
            refused = scrape(generator.metrics_url).get('ganworks_generator_model_loads_total{model="r",result="integrity_error"}', 0.0)
            time.sleep(0.5)
        with GeneratorClient(generator.address) as client:
            served = client.generate("r", 2, seed=1).version
    finally:
        generator.stop()

    assert refused >= 1, "the refusal is counted in ganworks_generator_model_loads_total{result=integrity_error}"
    assert served == 100, "the old snapshot keeps serving"
    assert "sha256" in generator.log() and "000000200" in generator.log(), "the log names the snapshot and the reason"


def test_corrupted_snapshot_is_refused_by_every_reader_of_the_store(tmp_path):
    store = open_store(str(tmp_path / "store"))
    corrupt_and_announce(store, "r", 300)

    with pytest.raises(CheckpointIntegrityError, match="sha256"):
        load_snapshot(store, "r")
