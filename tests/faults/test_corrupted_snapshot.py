"""A snapshot whose weights were modified after publishing is refused everywhere, with a reason and a metric."""

from __future__ import annotations

import time

import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.checkpoint import load_snapshot
from ganworks.layout import WEIGHTS, evals_prefix, latest_key, snapshot_key
from ganworks.errors import CheckpointIntegrityError
from ganworks.store import open_store
from orchestration.status import scrape
from tests.faults.harness import Generator, publish_tiny
from tests.storefaults import WriterKilled, killed_before

pytestmark = pytest.mark.slow


def corrupt_and_announce(store, run: str, step: int) -> None:
    """Publishes step, flips a byte of its weights, then points LATEST at it, as a damaged upload would."""
    with pytest.raises(WriterKilled):
        publish_tiny(killed_before(store, latest_key(run)), run, step)
    key = snapshot_key(run, step, WEIGHTS)
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


def test_corrupted_snapshot_fails_its_evaluation_with_the_reason_instead_of_a_number(tmp_path, fitted_store):
    from ganworks.api import evaluator_pb2 as epb
    from ganworks.api import evaluator_pb2_grpc
    from tests.faults.harness import Evaluator, write_run_json

    import grpc

    # The session's store (its classifier already fitted); the run is this test's own.
    store = open_store(fitted_store)
    write_run_json(store, "corrupt")
    publish_tiny(store, "corrupt", 100)
    generator = Generator(store.url, "corrupt", tmp_path / "logs").start()
    evaluator = Evaluator(store.url, "", tmp_path / "logs", generator.address, continuous=False, extra=("--metrics", "fid", "--num-samples", "200"))
    try:
        evaluator.start()
        corrupt_and_announce(store, "corrupt", 200)
        with grpc.insecure_channel(evaluator.address) as channel:
            stub = evaluator_pb2_grpc.EvaluatorStub(channel)
            job = stub.Evaluate(epb.EvaluateRequest(run="corrupt", version=200), timeout=30)
            final = list(stub.WatchEvaluation(epb.GetEvaluationRequest(id=job.id), timeout=120))[-1]
        failures = scrape(evaluator.metrics_url)
    finally:
        evaluator.stop()
        generator.stop()

    assert final.state == epb.EVALUATION_STATE_FAILED
    # The generator's integrity refusal, passed on: the snapshot's weights do not match their manifest.
    assert "FAILED_PRECONDITION" in final.error and "sha256" in final.error, final.error
    assert not final.metrics, "no number is reported for a refused snapshot"
    assert list(store.list(evals_prefix("corrupt", 200))) == [], "no report is written for it"
    counted = {k: v for k, v in failures.items() if k.startswith("ganworks_evaluator_failures_total")}
    assert counted == {'ganworks_evaluator_failures_total{reason="generator_error"}': 1.0}, counted
