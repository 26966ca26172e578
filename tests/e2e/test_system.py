"""The whole system as separate processes on loopback, against a real S3-protocol server: what `ganworks demo` runs."""

from __future__ import annotations

import os
import subprocess

import pytest

from generator_service.client import GeneratorClient
from ganworks.checkpoint import list_snapshots, read_latest
from ganworks.system.local import LocalSystem, SystemOptions
from ganworks.system.processes import ganworks_command
from ganworks.system.status import scrape

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_system(s3, tmp_path_factory):
    """A short conditional run on digits (16×16, 2 DDP workers), served and evaluated, then left up for inspection."""
    root = tmp_path_factory.mktemp("e2e")
    url = s3.new_bucket_url("e2e")
    env = s3.env()
    # A quickly fitted classifier, so the evaluator need not fit its own first.
    subprocess.run(ganworks_command("evaluator", "fit-extractor", "--dataset", "digits", "--image-size", "16", "--epochs", "2", "--store", url), env={**os.environ, **env}, check=True, capture_output=True, timeout=300)
    options = SystemOptions(store=url, run="e2e", image_size=16, num_workers=2, steps=60, snapshot_every=20, batch_size=32, eval_samples=1000, workdir=str(root))
    system = LocalSystem(options, env=env)
    system.start()
    try:
        system.processes["trainer"].process.wait(300)
        assert system.processes["trainer"].exit_code() == 0, system.processes["trainer"].log_tail(40)
        latest = read_latest(system.store(), "e2e")
        system.wait_for_evaluation(latest, 300)
        yield system
    finally:
        system.stop()


def test_a_backend_client_gets_images_from_the_latest_snapshot(finished_system):
    latest = read_latest(finished_system.store(), "e2e")

    with GeneratorClient(finished_system.generator_address) as client:
        images = client.generate("e2e", 10, seed=7, labels=list(range(10)))

    assert images.version == latest == 60
    assert images.images.shape == (10, 16, 16, 1)
    assert list(images.labels) == list(range(10))


def test_the_evaluator_reports_metrics_for_every_snapshot(finished_system):
    store = finished_system.store()
    for step in list_snapshots(store, "e2e"):
        finished_system.wait_for_evaluation(step, 120)

    reports = finished_system.reports()

    assert sorted(reports) == [20, 40, 60]
    for report in reports.values():
        assert report["extractor"] == "digits-classifier"
        assert {"fid", "kid_mean", "precision", "recall", "coverage"} <= set(report["metrics"])


def test_the_metrics_endpoints_carry_training_serving_and_quality(finished_system):
    generator = scrape(finished_system.metrics_url("generator"))
    evaluator = scrape(finished_system.metrics_url("evaluator"))

    assert generator['ganworks_generator_model_version{model="e2e"}'] == 60
    assert any(k.startswith("ganworks_generator_requests_total") for k in generator)
    assert evaluator['ganworks_evaluator_evaluated_step{extractor="digits-classifier",run="e2e"}'] == 60
    assert evaluator['ganworks_evaluator_fid{extractor="digits-classifier",run="e2e"}'] > 0
