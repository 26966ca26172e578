"""The continuous evaluator is killed and started again while snapshots keep arriving."""

from __future__ import annotations

import re
import time

import pytest

from ganworks.store import open_store
from tests.faults.harness import Evaluator, Generator, publish_tiny, write_run_json

pytestmark = pytest.mark.slow
FAST_METRICS = ("--metrics", "fid,prdc", "--num-samples", "300")


def report_keys(store, run: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for info in store.list(f"runs/{run}/evals/"):
        step = int(info.key.split("/")[3])
        found.setdefault(step, []).append(info.key)
    return found


def wait_for_reports(store, run: str, steps: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not steps <= set(report_keys(store, run)):
        assert time.monotonic() < deadline, f"reports for {sorted(steps - set(report_keys(store, run)))} did not appear"
        time.sleep(0.5)


def test_restarted_continuous_evaluator_evaluates_every_snapshot_exactly_once(tmp_path, fitted_store):
    # The session's store (its classifier already fitted); the run is this test's own.
    store = open_store(fitted_store)
    write_run_json(store, "restart")
    publish_tiny(store, "restart", 10)
    publish_tiny(store, "restart", 20)
    generator = Generator(store.url, "restart", tmp_path / "logs").start()
    evaluator = Evaluator(store.url, "restart", tmp_path / "logs", generator.address, extra=FAST_METRICS)
    try:
        evaluator.start()
        wait_for_reports(store, "restart", {10}, 180)
        evaluator.kill()  # possibly in the middle of step 20
        # Every report written before the kill (step 10's, and step 20's if it was finished): none may be written again.
        before = {key: store.stat(key).etag for keys in report_keys(store, "restart").values() for key in keys}
        publish_tiny(store, "restart", 30)
        publish_tiny(store, "restart", 40)
        evaluator.start()
        wait_for_reports(store, "restart", {10, 20, 30, 40}, 240)
    finally:
        evaluator.stop()
        generator.stop()

    reports = report_keys(store, "restart")
    assert sorted(reports) == [10, 20, 30, 40], "no snapshot was missed"
    assert all(len(keys) == 1 for keys in reports.values()), f"one report per snapshot: {reports}"
    assert {key: store.stat(key).etag for key in before} == before, "no report written before the kill was written again"
    reported_before = {int(key.split("/")[3]) for key in before}
    queued = [int(step) for step in re.findall(r"queued evaluation \S+ of restart step (\d+) ", evaluator.log(start=2))]
    assert sorted(queued) == sorted({10, 20, 30, 40} - reported_before), f"the restarted evaluator queued each unreported snapshot once and nothing else: {queued}"
