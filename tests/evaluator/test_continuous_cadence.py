"""Continuous mode's two cadences: the cheap classifier metrics for every snapshot, Inception metrics for every k-th and the final one."""

from __future__ import annotations

import pytest

from evaluator_service.continuous import ContinuousEvaluator
from evaluator_service.errors import InvalidRequestError
from evaluator_service.settings import EvaluatorSettings
from tests.evaluator.conftest import publish, write_run_json


@pytest.fixture
def six_snapshots(local_store):
    write_run_json(local_store, "cadence")
    info = local_store.get_json("runs/cadence/run.json")
    local_store.put_json("runs/cadence/run.json", {**info, "options": {"steps": 60}})
    for step in (10, 20, 30, 40, 50, 60):
        publish(local_store, "cadence", step)
    return local_store


def _pending(store, **settings) -> list[tuple[int, str, list[str]]]:
    evaluator = ContinuousEvaluator(store, EvaluatorSettings(runs=["cadence"], **settings), jobs=None)
    return [(r.version, r.extractor, r.metrics) for r in evaluator._pending()]


def test_inception_fid_runs_every_kth_snapshot_and_the_final_one_while_the_classifier_sees_every_snapshot(six_snapshots):
    pending = _pending(six_snapshots, continuous_inception_extractor="inception-v3-tf", continuous_inception_every=4)

    assert [step for step, extractor, _ in pending if extractor == ""] == [10, 20, 30, 40, 50, 60]
    assert [(step, metrics) for step, extractor, metrics in pending if extractor == "inception-v3-tf"] == [(40, ["fid"]), (60, ["fid"])]
    assert [step for step, _, _ in pending] == sorted(step for step, _, _ in pending)


def test_a_snapshot_with_a_report_of_one_cadence_still_waits_for_the_other(six_snapshots):
    six_snapshots.put_json("runs/cadence/evals/000000040/digits-classifier-legacy-pytorch-n5000-default.json", {"done": True})

    pending = _pending(six_snapshots, continuous_inception_extractor="inception-v3-tf", continuous_inception_every=4)

    assert (40, "", []) not in pending and (40, "inception-v3-tf", ["fid"]) in pending


def test_without_an_inception_extractor_only_the_default_cadence_runs(six_snapshots):
    assert {extractor for _, extractor, _ in _pending(six_snapshots)} == {""}


def test_an_inception_cadence_below_one_is_refused_naming_the_setting():
    with pytest.raises(InvalidRequestError, match="GANWORKS_EVALUATOR_CONTINUOUS_INCEPTION_EVERY must be >= 1"):
        EvaluatorSettings(continuous_inception_every=0)


def test_an_inception_cadence_with_a_non_inception_extractor_is_refused_listing_the_choices():
    with pytest.raises(InvalidRequestError, match="CONTINUOUS_INCEPTION_EXTRACTOR .* must be one of inception-v3-fid, inception-v3-tf, inception-v3-tf-pytorch-scaling"):
        EvaluatorSettings(continuous_inception_extractor="digits-classifier")
