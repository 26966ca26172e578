"""A translation (cyclegan) run evaluated end to end: held-out images of each domain through the real generator
service's Translate, FID/KID against the real target domain, the round trip's error and the judge's verdict, in
the report and on the gauges; each number recomputed here from the published snapshot."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

from evaluator_service.cache import BoundedCache
from evaluator_service.errors import InvalidRequestError
from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.features import ExtractorCache
from evaluator_service.metrics.fid import fid
from evaluator_service.reference import reference_subset
from evaluator_service.settings import EvaluatorSettings
from ganworks.api import evaluator_pb2 as pb
from ganworks.checkpoint import load_snapshot, publish_snapshot
from ganworks.data import load_dataset, load_domains
from ganworks.images import to_uint8
from ganworks.models import get_family
from ganworks.store import open_store
from tests.evaluator.conftest import GeneratorProcess, RunningEvaluator

RUN, MIXED = "cg-digits", "cg-mixed"
SIZE = 16
PARAMS = {"image_size": SIZE, "channels": 1, "width": 4, "blocks": 1, "d_width": 4, "d_layers": 2}
MAX_REFERENCE = 300


def _publish(store, run: str, spec_a: str, spec_b: str) -> None:
    family = get_family("cyclegan")
    params = family.validate({**PARAMS, "domain_a": spec_a, "domain_b": spec_b})
    pair = load_domains(spec_a, spec_b, SIZE, 1, "train")
    dataset = {"kind": "domains", "id": pair.id, "image_size": SIZE, "channels": 1, "num_classes": 0, "split": "train",
               "domain_a": {"spec": spec_a, "id": pair.a.id, "images": len(pair.a)}, "domain_b": {"spec": spec_b, "id": pair.b.id, "images": len(pair.b)}}
    store.put_json(f"runs/{run}/run.json", {"run": run, "code_version": "test", "options": {}, "dataset": dataset, "architecture": "cyclegan", "architecture_params": params})
    torch.manual_seed(5)
    publish_snapshot(store, run=run, step=2, generator_state=family.build_generator(params).state_dict(), architecture="cyclegan",
                     architecture_params=params, dataset_id=pair.id)


@pytest.fixture(scope="module")
def pair_store(fitted_store):
    """The session's store with its quickly fitted digits classifier (the judge of two digit classes), and two runs."""
    url = fitted_store
    store = open_store(url)
    _publish(store, RUN, "digits:3", "digits:8")
    _publish(store, MIXED, "digits", "digits:8")  # domain A is a whole dataset: no classifier judges "is it A?"
    return url


@pytest.fixture(scope="module")
def pair_generator(pair_store, tmp_path_factory):
    proc = GeneratorProcess(pair_store, [RUN, MIXED], tmp_path_factory.mktemp("translation-generator") / "generator.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pair_evaluator(pair_store, pair_generator):
    evaluator = RunningEvaluator(open_store(pair_store), generator=pair_generator.address, default_num_samples=1000, max_reference_samples=MAX_REFERENCE, torch_threads=1)
    yield evaluator
    evaluator.stop()


def _offline(images: np.ndarray, translate, direction: str) -> np.ndarray:
    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.no_grad():
        return to_uint8(translate(x, direction))


def test_a_translation_run_gets_fid_kid_cycle_error_and_success_per_direction_that_match_the_snapshot(pair_evaluator, pair_store):
    result = pair_evaluator.evaluate(run=RUN, timeout=300)

    assert result.state == pb.EVALUATION_STATE_SUCCEEDED, result.error
    assert list(result.metric_names) == ["translation_fid", "translation_kid", "cycle_consistency", "translation_success"]
    assert result.extractor == "digits-classifier" and result.dataset_id.startswith("pair-digits.c3-16x16x1-train--digits.c8-16x16x1-train-")
    store = open_store(pair_store)
    report = store.get_json(f"runs/{RUN}/evals/000000002/digits-classifier-legacy-pytorch-n1000-default.json")
    metrics = report["metrics"]

    # Recompute from the snapshot: every held-out image of each domain (n=1000 is more than the split has).
    snapshot = load_snapshot(store, RUN, 2)
    translate = snapshot.generator.eval().translate
    held = {k: load_dataset(spec, image_size=SIZE, channels=1, split="test").images for k, spec in (("a", "digits:3"), ("b", "digits:8"))}
    a_to_b, b_to_a = _offline(held["a"], translate, "a_to_b"), _offline(held["b"], translate, "b_to_a")
    assert report["translated"] == {"a_to_b": len(held["a"]), "b_to_a": len(held["b"])}
    cycle_a = np.abs(_offline(a_to_b, translate, "b_to_a").astype(np.float32) - held["a"]).mean() / 255
    cycle_b = np.abs(_offline(b_to_a, translate, "a_to_b").astype(np.float32) - held["b"]).mean() / 255
    assert metrics["cycle_l1_a"] == pytest.approx(cycle_a, abs=2e-3) and metrics["cycle_l1_b"] == pytest.approx(cycle_b, abs=2e-3)

    digits = load_dataset("digits", image_size=SIZE, channels=1, split="train")
    judge = ExtractorCache(store, auto_fit=False).get("digits-classifier", digits, "digits")  # the one the evaluator fitted and stored
    assert report["judge"]["target_classes"] == {"a_to_b": [8], "b_to_a": [3]}
    for direction, translated, target in (("a_to_b", a_to_b, 8), ("b_to_a", b_to_a, 3)):
        features, logits = judge.extract(translated, "legacy-pytorch")
        assert metrics[f"translation_success_{direction}"] == pytest.approx((logits.argmax(1) == target).mean(), abs=0.05)
        real = load_dataset("digits:8" if direction == "a_to_b" else "digits:3", image_size=SIZE, channels=1, split="train")
        real_features, _ = judge.extract(reference_subset(real, MAX_REFERENCE)[0], "legacy-pytorch")
        expected = fid(real_features.astype(np.float64), features.astype(np.float64))["fid"]
        assert metrics[f"fid_{direction}"] == pytest.approx(expected, rel=0.05)
        assert metrics[f"kid_{direction}"] > 0 and metrics[f"kid_std_{direction}"] >= 0

    labels = {"run": RUN, "extractor": "digits-classifier"}
    for gauge, key in (("translation_fid_a_to_b", "fid_a_to_b"), ("translation_kid_b_to_a", "kid_b_to_a"), ("cycle_l1_a", "cycle_l1_a"),
                       ("translation_success_a_to_b", "translation_success_a_to_b"), ("translation_success_b_to_a", "translation_success_b_to_a")):
        assert pair_evaluator.metric(f"ganworks_evaluator_{gauge}", **labels) == pytest.approx(metrics[key])
    assert pair_evaluator.metric("ganworks_evaluator_fid", **labels) is None  # a translation run is not an image run


def test_image_metrics_are_refused_for_a_translation_run_naming_the_translation_metrics(pair_evaluator):
    with pytest.raises(grpc.RpcError) as caught:
        pair_evaluator.stub.Evaluate(pb.EvaluateRequest(run=RUN, metrics=["fid"]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fid is a metric of image runs; run 'cg-digits' translates images (translation metrics: translation_fid, translation_kid, cycle_consistency, translation_success)" in caught.value.details()


def test_success_without_a_classifier_of_both_domains_is_refused_with_the_reason_and_left_out_of_the_default_set(pair_evaluator, pair_store):
    with pytest.raises(grpc.RpcError) as caught:
        pair_evaluator.stub.Evaluate(pb.EvaluateRequest(run=MIXED, metrics=["translation_success"]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a domain is the whole of digits rather than some of its classes" in caught.value.details()

    planned = plan(open_store(pair_store), EvaluationRequest(run=MIXED), pair_evaluator.settings, BoundedCache("datasets", 3))
    assert planned.metrics == ["translation_fid", "translation_kid", "cycle_consistency"]


def test_a_translation_run_json_without_its_domains_is_refused_saying_what_is_missing(pair_store, tmp_path):
    info = open_store(pair_store).get_json(f"runs/{RUN}/run.json")
    del info["dataset"]["domain_b"]
    store = open_store(str(tmp_path / "store"))  # its own store: the session's is shared with other tests
    store.put_json("runs/cg-broken/run.json", info)

    with pytest.raises(InvalidRequestError, match="has no spec of domain_a/domain_b or no image_size/channels; the evaluator cannot tell what the run translates"):
        plan(store, EvaluationRequest(run="cg-broken"), EvaluatorSettings(), BoundedCache("datasets", 3))


def test_a_translation_run_planned_again_with_the_default_dataset_cache_loads_nothing_again(pair_store):
    """A continuous evaluator plans the same run over and over: its five datasets (train and test of both domains, the
    judge's labelled base set) must all stay loaded, or every evaluation reads them again."""
    store, settings = open_store(pair_store), EvaluatorSettings()
    datasets = BoundedCache("datasets", settings.max_cached_datasets)

    first = plan(store, EvaluationRequest(run=RUN), settings, datasets)
    loaded = len(datasets)
    second = plan(store, EvaluationRequest(run=RUN), settings, datasets)

    assert loaded == len(datasets) == 5 and datasets.evictions == 0
    assert second.reference is first.reference and second.domains.sources["a"] is first.domains.sources["a"]
