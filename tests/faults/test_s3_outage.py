"""The S3 server becomes unreachable for 15 s in the middle of training, then comes back."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest
from ganworks.errors import StoreUnavailableError
from ganworks.store import open_store
from orchestration.processes import ServiceProcess, free_port, ganworks_command
from orchestration.status import scrape, total
from ganworks.testing.faultproxy import FaultProxy
from tests.faults.harness import Generator

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 15
# The README's "What survives what" quotes the time to the first new snapshot against this bound (measured: 3–6 s).
RECOVERY_BOUND_SECONDS = 90


class LatestFollower(threading.Thread):
    """A reader as the services are one: follows LATEST through the cuttable proxy and loads and verifies what it names.

    Every failure is recorded with its type; the store being unreachable (StoreUnavailableError) is the
    outage itself, anything else is a reader seeing a snapshot it cannot use.
    """

    def __init__(self, store, run: str):
        super().__init__(daemon=True)
        self.store, self.run_id = store, run
        self.stopping = threading.Event()
        self.loaded: list[int] = []
        self.unreachable = 0
        self.failures: list[str] = []
        self.died: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    step = read_latest(self.store, self.run_id)
                    if step is not None:
                        self.loaded.append(load_snapshot(self.store, self.run_id, step).manifest.step)
                except StoreUnavailableError:
                    self.unreachable += 1
                except Exception as exc:  # noqa: BLE001 - every other failure is what this test looks for
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - a dead follower must fail the test, not warn
            self.died = exc
            raise


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
                         "--steps", "100000", "--snapshot-every", "20", "--metrics-port", str(metrics_port), "--no-progress", "--store", url),
        tmp_path / "trainer.log", env=env,
    ).start()
    generator: Generator | None = None
    served_during_outage: list[int] = []
    # Short retries: the follower should see the outage, not wait it out.
    watcher = LatestFollower(open_store(url, settings=s3.store_settings(s3_endpoint=f"http://{proxy.endpoint}", retry_seconds=1.0)), "r")
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
        recovery = time.monotonic() - restored
        print(f"outage {OUTAGE_SECONDS}s: trainer steps {step_at_cut:.0f} -> {step_at_restore:.0f} during it; "
              f"first new snapshot {recovery:.1f}s after recovery")
        # The run would go on for long: stopped like Kubernetes stops it, once publishing has resumed.
        os.kill(trainer.process.pid, signal.SIGTERM)
        trainer.process.wait(120)
        follower_alive = watcher.is_alive()
    finally:
        watcher.stopping.set()
        watcher.join(10)
        proxy.up()
        trainer.stop()
        if generator is not None:
            generator.stop()

    assert follower_alive and watcher.died is None, f"the reader following LATEST died: {watcher.died!r}"
    assert watcher.failures == [], f"a reader following LATEST hit a snapshot it could not use: {watcher.failures[:3]}"
    assert watcher.unreachable > 0, "the reader went through the proxy and saw the outage"
    assert min(watcher.loaded) <= before < max(watcher.loaded), "the reader loaded snapshots before and after the outage"
    assert trainer.exit_code() == 130, trainer.log_tail(40)  # stopped by SIGTERM, as by Ctrl-C
    assert step_at_restore > step_at_cut, "training went on while the store was unreachable"
    assert served_during_outage and all(v >= 20 for v in served_during_outage), "the generator kept serving its loaded snapshot"
    assert recovery < RECOVERY_BOUND_SECONDS, f"the first snapshot after the outage came {recovery:.0f}s after the store was back"
    snapshots = list_snapshots(direct, "r")
    assert any(step > before for step in snapshots), "new snapshots appeared after recovery"
    for step in snapshots:
        load_snapshot(direct, "r", step)  # every published snapshot verifies
