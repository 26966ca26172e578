"""`ganworks train --model ctgan` on a table: a real Ray run with two DDP workers, snapshots that carry their
transformer, the train/test split in run.json, resume by run id; and bad table flags refused before Ray starts."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ganworks.checkpoint import list_snapshots, load_snapshot
from ganworks.cli import main
from ganworks.errors import GanworksError
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from ganworks.tabular.synthesizer import TabularModel
from trainer import driver
from trainer.config import TrainOptions

TINY = {"latent_dim": 8, "g_width": 16, "d_width": 16, "max_modes": 3}


def _options(run: str, steps: int, **overrides) -> TrainOptions:
    values = dict(run=run, dataset="credit-default", model="ctgan", model_params=dict(TINY), steps=steps, snapshot_every=2, num_workers=2,
                  batch_size=40, metrics_port=0, log_every=1, publish_retry_seconds=30.0)
    return TrainOptions(**{**values, **overrides})


@pytest.mark.ray
@pytest.mark.slow
def test_a_ctgan_run_on_credit_default_publishes_snapshots_with_their_transformer_records_the_split_and_resumes(ray_cluster, tmp_path):
    settings = StoreSettings(store=str(tmp_path / "store"))
    store = open_store(settings=settings)

    first = driver.train(driver.plan(_options("credit", 4), settings), show_progress=False)
    second = driver.train(driver.plan(_options("credit", 6), settings), show_progress=False)

    assert (first.step, second.step, second.start_steps) == (4, 6, [4])
    assert list_snapshots(store, "credit") == [2, 4, 6]
    snapshot = load_snapshot(store, "credit")
    assert snapshot.manifest.architecture == "ctgan" and "transformer.json" in snapshot.manifest.files
    assert not store.exists("runs/credit/checkpoints/000000006/samples.png")  # tables have no sample grid
    model = TabularModel.from_snapshot(snapshot)
    rows = model.sample(50, seed=1, condition=("default", "Yes"))
    assert set(rows["default"]) == {"Yes"} and np.isfinite(rows["balance"]).all()

    run_json = store.get_json("runs/credit/run.json")
    dataset = run_json["dataset"]
    assert dataset["kind"] == "table" and dataset["split"] == "train" and dataset["id"] == snapshot.manifest.dataset_id
    assert dataset["rows"] == 8000 and dataset["held_out"]["rows"] == 2000 and dataset["test_fraction"] == 0.2
    assert dataset["schema"]["target"] == "default"
    assert run_json["options"]["loss"] == "wgan-gp-pac" and run_json["architecture_params"]["data_dim"] == model.transformer.width
    stats = [json.loads(line) for line in store.get_bytes("runs/credit/stats.jsonl").decode().splitlines()]
    assert [line["step"] for line in stats] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(line["gradient_penalty"]) and line["condition_loss"] > 0 for line in stats)


@pytest.mark.parametrize("overrides, named", [
    (dict(batch_size=30), "--batch-size 30 over --num-workers 2 gives 15 rows per worker, not a multiple of pac=10"),
    (dict(conditional=True), "--conditional is for image models; ctgan conditions on the table's categorical columns by itself"),
    (dict(model_params={"width": "8"}), "--model-param width: ctgan has no such settable hyperparameter"),
    (dict(model_params={"pac": "0"}), "--model-param pac: ctgan pac must be an integer from 1 to 64"),
    (dict(dataset="digits"), "table 'digits' not found: give one of"),
])
def test_bad_table_flags_are_refused_before_ray_starts_naming_the_flag(tmp_path, overrides, named):
    with pytest.raises(GanworksError, match=re.escape(named)):
        driver.plan(_options("bad", 2, **overrides), StoreSettings(store=str(tmp_path / "store")))
    assert not (tmp_path / "store" / "runs").exists()


def test_the_dry_run_prints_the_table_its_split_and_the_model_built_from_it(capsys, tmp_path):
    code = main(["train", "--dry-run", "--model", "ctgan", "--dataset", "breast-cancer", "--batch-size", "100", "--store", str(tmp_path / "store"), "--run", "dry"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["architecture"] == "ctgan"
    assert printed["dataset"]["rows"] == 455 and printed["dataset"]["held_out"]["rows"] == 114
    assert printed["architecture_params"]["cond_dim"] == 2  # diagnosis: benign, malignant
