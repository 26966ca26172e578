"""`ganworks train --model cyclegan`: two unpaired image sets through the real Ray trainer; flags that do not fit refused before Ray starts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ganworks.checkpoint import load_snapshot
from ganworks.cli import main
from ganworks.layout import run_info_key
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from trainer import driver
from trainer.config import TrainOptions

TINY = {"width": "4", "blocks": "1", "d_width": "4", "d_layers": "2"}


@pytest.mark.ray
@pytest.mark.slow
def test_a_cyclegan_run_on_two_digit_classes_publishes_both_generators_names_its_domains_and_resumes_with_its_pools(ray_cluster, tmp_path):
    settings = StoreSettings(store=str(tmp_path / "store"))
    opts = TrainOptions(run="cg", model="cyclegan", dataset="digits:0", dataset_b="digits:1", image_size=16, steps=2, snapshot_every=1, num_workers=2,
                        batch_size=4, metrics_port=0, log_every=1, publish_retry_seconds=30.0, model_params=dict(TINY))
    outcome = driver.train(driver.plan(opts, settings), show_progress=False)
    # The same run resumed for one more step: both workers' history pools come back from the checkpoint.
    resumed = driver.train(driver.plan(dataclasses.replace(opts, steps=3), settings), show_progress=False)

    store = open_store(settings=settings)
    assert outcome.published == [1, 2] and resumed.start_steps == [2] and resumed.published == [3]
    snapshot = load_snapshot(store, "cg", 2)
    assert snapshot.manifest.step == 2
    assert (snapshot.manifest.architecture_params["domain_a"], snapshot.manifest.architecture_params["domain_b"]) == ("digits:0", "digits:1")
    dataset = store.get_json(run_info_key("cg"))["dataset"]
    assert dataset["domain_a"]["spec"] == "digits:0" and dataset["domain_b"]["spec"] == "digits:1" and dataset["id"] == snapshot.manifest.dataset_id
    with torch.no_grad():
        out = snapshot.generator.translate(torch.zeros(2, 1, 16, 16), "b_to_a")
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    assert "cycle_l1" in snapshot.manifest.metrics


@pytest.mark.parametrize("flags, message", [
    (["--model", "cyclegan", "--dataset", "digits:0"], "give domain A as --dataset and domain B as --dataset-b"),
    (["--dataset-b", "digits:1"], "--dataset-b is domain B of a translation model"),
    (["--model", "cyclegan", "--dataset", "digits:0", "--dataset-b", "digits:1", "--conditional"], "--conditional is not supported by cyclegan"),
])
def test_two_domain_flags_that_do_not_fit_the_model_are_refused_naming_the_flag(capsys, tmp_path, flags, message):
    code = main(["train", "--no-progress", "--steps", "2", "--store", str(tmp_path / "store"), "--run", "r", *flags])
    assert code == 2
    assert message in capsys.readouterr().err
