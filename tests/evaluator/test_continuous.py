"""Continuous mode evaluates every new snapshot once, in order, and a restarted evaluator does not repeat itself."""

from __future__ import annotations

from ganworks.api import evaluator_pb2 as pb
from tests.evaluator.conftest import WATCHED, publish

SETTINGS = {"continuous": True, "runs": [WATCHED], "poll_seconds": 0.5, "default_num_samples": 150, "default_metrics": ["fid", "prdc"]}


def _report_key(step: int) -> str:
    return f"runs/{WATCHED}/evals/{step:09d}/digits-classifier-legacy-pytorch-n150-default.json"


def test_every_new_snapshot_is_evaluated_once_in_order_and_not_again_after_a_restart(start_evaluator, generator, shared_store, monkeypatch):
    first = start_evaluator(generator=generator.address, **SETTINGS)
    publish(shared_store, WATCHED, 10)
    first.wait_for(lambda: shared_store.exists(_report_key(10)), what="the report of step 10")
    publish(shared_store, WATCHED, 20)
    # The report is written before the job is recorded as done: wait for the record, which sets the gauges first.
    first.wait_for(lambda: first.metric("ganworks_evaluator_evaluations_total", result="succeeded") == 2, what="step 20 recorded as evaluated")
    reports = [shared_store.get_json(_report_key(step)) for step in (10, 20)]
    assert [r["step"] for r in reports] == [10, 20] and reports[0]["created_at"] < reports[1]["created_at"]
    assert first.metric("ganworks_evaluator_evaluated_step", run=WATCHED, extractor="digits-classifier") == 20
    assert first.metric("ganworks_evaluator_evaluations_total", result="succeeded") == 2
    first.stop()

    # Each poll asks whether step 20's report exists: three asks are three polls that found nothing to do.
    asks, real_exists = [], shared_store.exists
    monkeypatch.setattr(shared_store, "exists", lambda key: (key == _report_key(20) and asks.append(key), real_exists(key))[1])
    restarted = start_evaluator(generator=generator.address, **SETTINGS)
    restarted.wait_for(lambda: len(asks) >= 3, timeout=60, what="three polls of the restarted evaluator")

    assert restarted.stub.ListEvaluations(pb.ListEvaluationsRequest(run=WATCHED), timeout=10).evaluations == []
    assert restarted.metric("ganworks_evaluator_evaluations_total", result="succeeded") == 0


def test_a_generator_outage_is_retried_at_every_poll_and_never_written_as_a_result(start_evaluator, shared_store):
    from tests.evaluator.conftest import write_run_json

    write_run_json(shared_store, "outage")
    publish(shared_store, "outage", 3)
    evaluator = start_evaluator(generator="127.0.0.1:9", generator_retry_seconds=0.3, continuous=True, runs=["outage"], poll_seconds=0.2,
                                default_num_samples=150, default_metrics=["fid"], max_attempts=2)

    evaluator.wait_for(lambda: (evaluator.metric("ganworks_evaluator_failures_total", reason="generator_unavailable") or 0) >= 4,
                       timeout=90, what="more failed attempts than max_attempts")

    assert not shared_store.exists("runs/outage/evals/000000003/digits-classifier-legacy-pytorch-n150-default.json")
    assert evaluator.metric("ganworks_evaluator_evaluated_step", run="outage", extractor="digits-classifier") is None


def test_snapshots_are_evaluated_oldest_first_and_one_that_keeps_failing_is_given_up_after_max_attempts(start_evaluator, shared_store, tmp_path):
    from ganworks.layout import WEIGHTS, snapshot_key
    from tests.evaluator.conftest import GeneratorProcess, write_run_json

    run = "ordered"
    write_run_json(shared_store, run)
    for step in (10, 20, 30):
        publish(shared_store, run, step)
    weights = snapshot_key(run, 20, WEIGHTS)
    damaged = bytearray(shared_store.get_bytes(weights))
    damaged[len(damaged) // 2] ^= 0x01  # step 20 can never be served: every attempt at it fails
    shared_store.put_bytes(weights, bytes(damaged))
    generator = GeneratorProcess(shared_store.url, [run], tmp_path / "generator.log")
    try:
        evaluator = start_evaluator(generator=generator.address, continuous=True, runs=[run], poll_seconds=0.3, default_num_samples=150,
                                    default_metrics=["fid"], max_attempts=2)

        def failures() -> float:
            return sum(float(line.rpartition(" ")[2]) for line in evaluator.metrics_text().splitlines() if line.startswith("ganworks_evaluator_failures_total{"))

        evaluator.wait_for(lambda: failures() >= 2 and shared_store.exists(_key(run, 30)), what="step 30's report and two failed attempts at step 20")
        publish(shared_store, run, 40)  # a pass that still tried step 20 would try it before step 40
        evaluator.wait_for(lambda: shared_store.exists(_key(run, 40)), what="the report of step 40")
        attempts_at_20 = failures()
    finally:
        generator.stop()

    created = {step: shared_store.get_json(_key(run, step))["created_at"] for step in (10, 30, 40)}
    assert created[10] < created[30] < created[40], "oldest first"
    assert not shared_store.exists(_key(run, 20))
    assert attempts_at_20 == 2, "step 20 was given up after max_attempts"


def _key(run: str, step: int) -> str:
    return f"runs/{run}/evals/{step:09d}/digits-classifier-legacy-pytorch-n150-default.json"
