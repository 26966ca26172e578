"""A private run (trained with --dp-epsilon: its run.json has `privacy`) is evaluated end to end against its held-out
split only: no statistic of the training split is computed, the metrics that need training records are left out or
refused, and every sink (report, gauges, TensorBoard, MLflow) carries the held-out numbers and says so."""

from __future__ import annotations

import grpc
import pytest

from evaluator_service import evaluation
from evaluator_service.kinds import image as image_kind
from ganworks.api import evaluator_pb2 as pb
from ganworks.data import load_dataset
from ganworks.store import open_store
from tests.evaluator.conftest import GENERATOR_PARAMS, GeneratorProcess, publish
from tests.tbreader import read_tensorboard

PRIVATE = "digits-private"


@pytest.fixture(scope="module")
def private_generator(store_url, tmp_path_factory):
    shared_store = open_store(store_url)
    train = load_dataset("digits", image_size=32, channels=1, split="train")
    shared_store.put_json(f"runs/{PRIVATE}/run.json", {
        "run": PRIVATE, "code_version": "test", "options": {"dp_epsilon": 3.0},
        "dataset": {"spec": "digits", "id": train.id, "image_size": 32, "channels": 1, "num_classes": 10, "split": "train"},
        "architecture": "dcgan", "architecture_params": GENERATOR_PARAMS,
        "privacy": {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0, "accountant": "rdp"},
    })
    publish(shared_store, PRIVATE, 1)
    proc = GeneratorProcess(store_url, [PRIVATE], tmp_path_factory.mktemp("private-generator") / "generator.log")
    yield proc
    proc.stop()


def test_a_private_run_is_evaluated_against_its_held_out_split_in_every_sink(start_evaluator, private_generator, shared_store, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    from ganworks.mlflow_tracking import RUN_TAG

    train = load_dataset("digits", image_size=32, channels=1, split="train")
    held_out = load_dataset("digits", image_size=32, channels=1, split="test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("GANWORKS_MLFLOW_TRACKING_URI", uri)
    # Every set of real records the evaluation computes statistics or pixels of passes through these two.
    used = []
    real_stats, real_images = image_kind.load_or_compute, image_kind.reference_images
    monkeypatch.setattr(image_kind, "load_or_compute", lambda store, dataset, *a, **k: (used.append(dataset.id), real_stats(store, dataset, *a, **k))[1])
    monkeypatch.setattr(image_kind, "reference_images", lambda dataset, *a, **k: (used.append(dataset.id), real_images(dataset, *a, **k))[1])
    evaluator = start_evaluator(generator=private_generator.address, default_num_samples=200, default_metrics=["fid", "prdc", "diversity", "memorization"])

    result = evaluator.evaluate(run=PRIVATE, version=1)  # the default set: the one that drives the gauges
    assert evaluation.close_mlflow_runs(timeout=60)

    assert result.state == pb.EVALUATION_STATE_SUCCEEDED, result.error
    assert used and set(used) == {held_out.id}, f"statistics of {set(used) - {held_out.id}} were computed"
    [key] = [i.key for i in shared_store.list(f"runs/{PRIVATE}/evals/") if i.key.endswith(".json")]
    report = shared_store.get_json(key)
    values = report["metrics"]
    assert report["dataset_id"] == held_out.id and report["extractor_info"]["dataset_id"] == held_out.id  # the classifier too
    assert report["privacy"]["private"] and report["privacy"]["reference_split"] == "held_out"
    assert set(report["splits"]) == set(values) and set(report["splits"].values()) <= {"held_out", "generated"}
    assert "fid" in values and not any(k.startswith(("memorization", "dcr", "utility")) for k in values)
    assert any(w.startswith("memorization left out") for w in report["warnings"])
    assert train.id not in str(report)

    # Gauges, TensorBoard and MLflow show exactly the report's numbers.
    assert evaluator.metric("ganworks_evaluator_fid", run=PRIVATE, extractor=report["extractor"]) == pytest.approx(values["fid"])
    scalars = read_tensorboard(shared_store, PRIVATE, tmp_path / "tb")
    shown = {tag.rpartition("/")[2]: scalars.Scalars(tag)[-1].value for tag in scalars.Tags()["scalars"]}
    assert shown.keys() == values.keys() and all(shown[k] == pytest.approx(values[k], rel=1e-6) for k in values)
    client = MlflowClient(tracking_uri=uri)
    [tracked] = client.search_runs([client.get_experiment_by_name("ganworks").experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{PRIVATE}'")
    assert {k.rpartition("/")[2]: v for k, v in tracked.data.metrics.items()} == pytest.approx(values)


def test_a_metric_that_needs_training_records_is_refused_by_name_for_a_private_run(start_evaluator, private_generator):
    evaluator = start_evaluator(generator=private_generator.address)
    with pytest.raises(grpc.RpcError) as caught:
        evaluator.stub.Evaluate(pb.EvaluateRequest(run=PRIVATE, version=1, num_samples=200, metrics=["fid", "memorization"]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "private" in caught.value.details() and "memorization needs distances from generated samples to the training images" in caught.value.details()
