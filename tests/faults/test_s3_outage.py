"""The S3 server becomes unreachable for 15 s in the middle of training, then comes back."""

from __future__ import annotations

import threading
import time

import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest
from ganworks.errors import StoreError
from ganworks.store import open_store
from orchestration.processes import ServiceProcess, free_port, ganworks_command
from orchestration.status import scrape, total
from tests.faultproxy import FaultProxy
from tests.faults.harness import Generator

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 15


def test_s3_outage_during_training_keeps_training_and_serving_loses_nothing_and_publishing_resumes(s3, tmp_path):
    proxy = FaultProxy(*s3.endpoint.split(":")[0:1], int(s3.endpoint.split(":")[1]))
    url = s3.new_bucket_url("outage")
    env = {**s3.env(), "GANWORKS_S3_ENDPOINT": f"http://{proxy.endpoint}", "GANWORKS_RETRY_SECONDS": "60"}
    direct = open_store(url, settings=s3.store_settings())  # the test's own view, around the proxy
    metrics_port = free_port()

    def trainer_step() -> float:
        return total(scrape(f"http://127.0.0.1:{metrics_port}/metrics"), "ganworks_trainer_steps_total") or 0.0
    trainer = ServiceProcess(
        "trainer",
        ganworks_command("train", "--run", "r", "--dataset", "digits", "--image-size", "16", "--model-param", "width=8", "--num-workers", "1",
                         "--steps", "400", "--snapshot-every", "20", "--metrics-port", str(metrics_port), "--no-progress", "--store", url),
        tmp_path / "trainer.log", env=env,
    ).start()
    generator: Generator | None = None
    torn: list[str] = []
    served_during_outage: list[int] = []
    stop = threading.Event()

    def watch_latest() -> None:
        # A reader that follows LATEST must always find a complete snapshot behind it.
        while not stop.is_set():
            try:
                step = read_latest(direct, "r")
                if step is not None:
                    load_snapshot(direct, "r", step)
            except StoreError as exc:
                torn.append(str(exc))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_latest)
    try:
        watcher.start()
        deadline = time.monotonic() + 240
        while (read_latest(direct, "r") or 0) < 40:
            assert trainer.running, trainer.log_tail(40)
            assert time.monotonic() < deadline, "no snapshot before the outage"
            time.sleep(0.5)
        generator = Generator(url, "r", tmp_path / "logs", env=env).start()
        with GeneratorClient(generator.address) as client:
            proxy.down()
            outage_started = time.monotonic()
            before, step_at_cut = read_latest(direct, "r"), trainer_step()
            while time.monotonic() - outage_started < OUTAGE_SECONDS:
                served_during_outage.append(client.generate("r", 1, seed=len(served_during_outage)).version)
                time.sleep(0.5)
            step_at_restore = trainer_step()
            proxy.up()
            restored = time.monotonic()
        while (read_latest(direct, "r") or 0) <= before and time.monotonic() - restored < 120:
            time.sleep(0.2)
        print(f"outage {OUTAGE_SECONDS}s: trainer steps {step_at_cut:.0f} -> {step_at_restore:.0f} during it; "
              f"first new snapshot {time.monotonic() - restored:.1f}s after recovery")
        trainer.process.wait(300)
    finally:
        stop.set()
        watcher.join(10)
        proxy.up()
        trainer.stop()
        if generator is not None:
            generator.stop()

    assert trainer.exit_code() == 0, trainer.log_tail(40)
    assert step_at_restore > step_at_cut, "training went on while the store was unreachable"
    assert served_during_outage and all(v >= 20 for v in served_during_outage), "the generator kept serving its loaded snapshot"
    snapshots = list_snapshots(direct, "r")
    assert max(snapshots) == 400 and any(step > before for step in snapshots), "new snapshots appeared after recovery"
    assert torn == [], f"a reader saw a partial snapshot: {torn[:3]}"
    for step in snapshots:
        load_snapshot(direct, "r", step)  # every published snapshot verifies
