"""Fanning sampling and extraction out to Ray workers gives the numbers of a single-process evaluation."""

from __future__ import annotations

import pytest

from ganworks.api import evaluator_pb2 as pb
from tests.evaluator.conftest import RUN


@pytest.mark.slow
@pytest.mark.ray
def test_evaluation_fanned_out_to_ray_workers_matches_the_single_process_numbers(ray_cluster, start_evaluator, generator, shared_store):
    single = start_evaluator(generator=generator.address)
    fanned = start_evaluator(generator=generator.address, ray_address="local", fanout_min_samples=2, fanout_shards=2)
    request = {"run": RUN, "version": 1, "num_samples": 600, "metrics": ["fid", "prdc", "is"], "seed": 11}

    one, many = single.evaluate(**request), fanned.evaluate(**request)

    assert one.state == many.state == pb.EVALUATION_STATE_SUCCEEDED, many.error
    assert shared_store.get_json(f"runs/{RUN}/evals/000000001/digits-classifier-legacy-pytorch-n600-fid-is-prdc-seed11.json")["feature_workers"] == 2
    # The same computation, up to float32 rounding: a Ray worker extracts with its own torch thread count, so feature
    # sums may round differently (seen: FID 2.6e-9 apart); a lost, doubled or misordered shard moves them far more.
    assert many.metrics["fid"] == pytest.approx(one.metrics["fid"], rel=1e-6)
    for key in ("precision", "recall", "density", "coverage", "inception_score_mean"):
        assert many.metrics[key] == pytest.approx(one.metrics[key], rel=1e-6)
