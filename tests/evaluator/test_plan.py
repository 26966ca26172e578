"""Requests are resolved against the run's record in the store: its dataset, its snapshots and the server's defaults."""

from __future__ import annotations

import pytest

from evaluator_service.errors import InvalidRequestError, NotFoundError
from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.settings import EvaluatorSettings
from tests.evaluator.conftest import publish, write_run_json


@pytest.fixture
def run_on_all_data(local_store):
    write_run_json(local_store, "all-data")
    info = local_store.get_json("runs/all-data/run.json")
    info["dataset"]["split"] = "all"
    local_store.put_json("runs/all-data/run.json", info)
    publish(local_store, "all-data", 5)
    return local_store


def test_the_default_metrics_leave_out_memorization_for_a_run_without_held_out_data(run_on_all_data):
    p = plan(run_on_all_data, EvaluationRequest(run="all-data"), EvaluatorSettings())
    assert p.step == 5 and "memorization" not in p.metrics and "fid" in p.metrics
    assert p.held_out is None and p.reference.id.startswith("digits-32x32x1-all-")


def test_asking_for_memorization_without_held_out_data_is_an_error_saying_why(run_on_all_data):
    with pytest.raises(InvalidRequestError, match="memorization needs held-out data, but run 'all-data' trained on split 'all'"):
        plan(run_on_all_data, EvaluationRequest(run="all-data", metrics=["memorization"]), EvaluatorSettings())


def test_a_run_that_has_not_published_yet_is_not_found_with_what_to_wait_for(local_store):
    write_run_json(local_store, "fresh")
    with pytest.raises(NotFoundError, match="has not published a snapshot yet"):
        plan(local_store, EvaluationRequest(run="fresh"), EvaluatorSettings())


def test_settings_refuse_a_default_sample_count_below_the_kid_subset():
    with pytest.raises(InvalidRequestError, match=r"smaller than kid.subset_size \(1000\)"):
        EvaluatorSettings(default_num_samples=500)
    assert EvaluatorSettings(default_num_samples=500, default_metrics=["fid", "prdc"]).default_num_samples == 500
