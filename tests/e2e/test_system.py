"""The whole system as separate processes on loopback, against a real S3-protocol server: what `ganworks demo` runs."""

from __future__ import annotations

import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.checkpoint import read_latest
from orchestration.status import scrape
from tests.e2e.conftest import RUN

pytestmark = pytest.mark.slow


def test_a_backend_client_gets_images_from_the_latest_snapshot(live):
    latest = read_latest(live.system.store(), RUN)

    with GeneratorClient(live.system.generator_address) as client:
        images = client.generate(RUN, 10, seed=7, labels=list(range(10)))

    assert images.version == latest == live.published[-1]
    assert images.images.shape == (10, 16, 16, 1)
    assert list(images.labels) == list(range(10))


def test_the_evaluator_reports_metrics_for_every_snapshot(live):
    reports = live.system.reports()

    assert len(live.published) >= 2
    assert sorted(reports) == live.published
    for report in reports.values():
        assert report["extractor"] == "digits-classifier"
        assert {"fid", "kid_mean", "precision", "recall", "coverage"} <= set(report["metrics"])


def test_the_metrics_endpoints_carry_serving_and_quality_of_the_latest_snapshot(live):
    latest = live.published[-1]
    generator = scrape(live.system.metrics_url("generator"))
    evaluator = scrape(live.system.metrics_url("evaluator"))

    assert generator[f'ganworks_generator_model_version{{model="{RUN}"}}'] == latest
    assert generator['ganworks_generator_requests_total{code="OK",method="Generate"}'] > 0
    assert evaluator[f'ganworks_evaluator_evaluated_step{{extractor="digits-classifier",run="{RUN}"}}'] == latest
    assert evaluator[f'ganworks_evaluator_fid{{extractor="digits-classifier",run="{RUN}"}}'] > 0


def test_the_trainer_exported_its_progress_while_it_ran(live):
    assert "ganworks_trainer_steps_total" in live.metrics["trainer"]
    assert f'ganworks_trainer_last_snapshot_step{{run="{RUN}"}}' in live.metrics["trainer"]
