"""The utility metric (train on synthetic, test on real): real images score a ratio near 1, noise near chance; it
runs through the evaluator on a conditional run's samples from the real generator service and shows as gauges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluator_service.errors import InvalidRequestError
from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.metrics import compute
from evaluator_service.settings import EvaluatorSettings
from ganworks.api import evaluator_pb2 as pb
from ganworks.data import load_dataset
from tests.evaluator.conftest import GENERATOR_PARAMS, RUN, publish, write_run_json


@pytest.fixture
def one_torch_thread():
    """The classifiers are small: on two cores shared with other tests, a second torch thread mostly waits for the first."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=32, channels=1, split="train"), load_dataset("digits", image_size=32, channels=1, split="test")


def _utility(digits, fake_images, fake_labels, **params):
    train, test = digits
    return compute("utility", test.images, fake_images, real_labels=test.labels, fake_labels=fake_labels,
                   train_images=train.images, train_labels=train.labels, **params)


def test_real_images_standing_in_for_generated_ones_score_a_ratio_near_one(digits, one_torch_thread):
    # The stand-in "generator" returns real digits with their true labels. They come from the training split, not
    # the test split the accuracy is measured on: test images would let the classifier see its exam.
    train, _ = digits
    stand_in = np.random.RandomState(1).permutation(len(train))[:600]

    result = _utility(digits, train.images[stand_in], train.labels[stand_in])

    assert result["utility_trtr"] > 0.9 and result["utility_num_train"] == 600
    assert result["utility_ratio"] == pytest.approx(1.0, abs=0.05)


def test_noise_with_random_labels_scores_near_chance(digits, one_torch_thread):
    rng = np.random.RandomState(2)

    result = _utility(digits, rng.randint(0, 256, (600, 32, 32, 1), dtype=np.uint8), rng.randint(0, 10, 600))

    assert result["utility_tstr"] < 0.2 and result["utility_trtr"] > 0.9
    assert result["utility_ratio"] < 0.25


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_ones(digits, one_torch_thread):
    train, _ = digits
    images, labels = train.images[:200], train.labels[:200]

    first, again, other = (_utility(digits, images, labels, epochs=3, seed=seed) for seed in (4, 4, 5))

    assert first == again
    assert other["utility_trtr"] != first["utility_trtr"]


def test_samples_without_class_labels_are_refused_saying_a_conditional_model_is_needed(digits):
    with pytest.raises(InvalidRequestError, match="utility needs a conditional model"):
        _utility(digits, digits[0].images[:50], np.full(50, -1))


def test_a_parameter_outside_its_range_is_refused_naming_it(digits):
    with pytest.raises(InvalidRequestError, match=r"utility\.epochs must be an integer in \[1, 100\], got 0"):
        _utility(digits, digits[0].images[:50], digits[0].labels[:50], epochs=0)


@pytest.fixture
def unconditional_run(local_store):
    write_run_json(local_store, "unconditional")
    info = local_store.get_json("runs/unconditional/run.json")
    info["architecture_params"] = {**GENERATOR_PARAMS, "num_classes": 0}
    local_store.put_json("runs/unconditional/run.json", info)
    publish(local_store, "unconditional", 3)
    return local_store


def test_a_default_set_with_utility_leaves_it_out_for_an_unconditional_run(unconditional_run):
    p = plan(unconditional_run, EvaluationRequest(run="unconditional"), EvaluatorSettings(default_metrics=["fid", "utility"]))
    assert p.metrics == ["fid"]


def test_asking_for_utility_of_an_unconditional_run_is_an_error_saying_why(unconditional_run):
    with pytest.raises(InvalidRequestError, match="utility needs class labels, but run 'unconditional' trained an unconditional model"):
        plan(unconditional_run, EvaluationRequest(run="unconditional", metrics=["utility"]), EvaluatorSettings())


def test_utility_of_an_untrained_conditional_generator_is_near_chance_and_reaches_the_gauges(start_evaluator, generator, shared_store, one_torch_thread):
    # The server's default set includes utility here, so its numbers drive the gauges like every default metric.
    evaluator = start_evaluator(generator=generator.address, default_num_samples=300, default_metrics=["fid", "utility"])

    result = evaluator.evaluate(run=RUN)

    assert result.state == pb.EVALUATION_STATE_SUCCEEDED, result.error
    metrics = dict(result.metrics)
    assert metrics["utility_num_train"] == 300 and metrics["utility_trtr"] > 0.85
    assert metrics["utility_tstr"] < 0.35 and metrics["utility_ratio"] == pytest.approx(metrics["utility_tstr"] / metrics["utility_trtr"])
    report = shared_store.get_json(f"runs/{RUN}/evals/000000002/digits-classifier-legacy-pytorch-n300-default.json")
    assert report["metrics"]["utility_ratio"] == metrics["utility_ratio"] and report["held_out_dataset_id"].startswith("digits-32x32x1-test-")
    labels = {"run": RUN, "extractor": "digits-classifier"}
    for output in ("utility_tstr", "utility_trtr", "utility_ratio"):
        assert evaluator.metric(f"ganworks_evaluator_{output}", **labels) == pytest.approx(metrics[output])
