"""A real Ray Train run on digits: snapshots, resume by run id, and recovery from a killed worker."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import threading

import pytest
import torch

from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest
from ganworks.models import get_family
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from trainer.driver import TrainingFailedError
from tests.trainer.helpers import train
from tests.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _stats_steps(store, run: str) -> list[int]:
    return [json.loads(line)["step"] for line in store.get_bytes(f"runs/{run}/stats.jsonl").decode().splitlines()]


def test_two_workers_publish_snapshots_that_rebuild_from_the_latest_manifest_alone(ray_cluster, tmp_path, monkeypatch):
    # A relative store path, as `ganworks demo` uses by default, means the caller's folder for the workers too.
    monkeypatch.chdir(tmp_path)
    local_store = open_store(str(tmp_path / "store"))

    outcome = train(StoreSettings(store="store"), "two-workers", steps=6, snapshot_every=3, loss="wgan-gp")

    assert outcome.step == 6
    assert list_snapshots(local_store, "two-workers") == [3, 6]
    assert read_latest(local_store, "two-workers") == 6
    snapshot = load_snapshot(local_store, "two-workers")  # verifies the sha256 against the manifest
    labels = torch.arange(10)
    images = snapshot.generator(torch.randn(10, snapshot.manifest.latent_dim), labels)
    assert images.shape == (10, 1, 32, 32)
    assert snapshot.manifest.images_seen == 6 * 16
    assert local_store.exists("runs/two-workers/checkpoints/000000006/samples.png")
    run_json = local_store.get_json("runs/two-workers/run.json")
    assert run_json["dataset"]["split"] == "train" and run_json["dataset"]["num_classes"] == 10
    assert run_json["dataset"]["id"] == snapshot.manifest.dataset_id
    assert run_json["options"]["num_workers"] == 2 and run_json["architecture"] == "dcgan"
    assert _stats_steps(local_store, "two-workers") == [1, 2, 3, 4, 5, 6]


def test_a_stylegan2_run_with_path_length_and_adaptive_augmentation_publishes_a_snapshot_that_loads(ray_cluster, tmp_path):
    local_store = open_store(str(tmp_path / "store"))
    tiny = {"latent_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 128, "channel_max": 16}

    outcome = train(StoreSettings(store=str(tmp_path / "store")), "sg2", steps=4, snapshot_every=4, num_workers=1, model="stylegan2",
                    model_params=tiny, loss="non-saturating", r1_gamma=1.0, r1_every=2, pl_weight=2.0, pl_every=2, augment="ada", augment_speed_images=64)

    assert outcome.step == 4 and list_snapshots(local_store, "sg2") == [4]
    snapshot = load_snapshot(local_store, "sg2")
    assert snapshot.manifest.architecture == "stylegan2" and snapshot.manifest.architecture_params["w_dim"] == 16
    assert snapshot.generator.mapping.w_avg.abs().sum() > 0  # tracked during training, carried by the snapshot
    images = get_family("stylegan2").generate(snapshot.generator, torch.randn(10, 16), torch.arange(10), torch.full((10,), 0.7))
    assert images.shape == (10, 1, 32, 32) and images.abs().max() <= 1
    stats = [json.loads(line) for line in local_store.get_bytes("runs/sg2/stats.jsonl").decode().splitlines()]
    assert all("augment_p" in line and "pl_mean" in line for line in stats)
    assert stats[-1]["pl_mean"] > 0
    assert snapshot.manifest.metrics["augment_p"] == stats[-1]["augment_p"]


@pytest.mark.s3
def test_a_run_started_again_on_s3_resumes_from_its_last_step_without_its_keys_passing_through_ray(ray_cluster, s3, monkeypatch):
    # Ray then records each run's config in its state actor, which its dashboard's Train API serves.
    monkeypatch.setenv("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
    settings = s3.store_settings(store=s3.new_bucket_url("train"))

    first = train(settings, "resumed", steps=4, snapshot_every=2)
    second = train(settings, "resumed", steps=7, snapshot_every=2)

    from ganworks.store import open_store

    store = open_store(settings=settings)
    assert (first.step, second.step) == (4, 7)
    assert second.start_steps == [4]
    assert list_snapshots(store, "resumed") == [2, 4, 6, 7]
    assert read_latest(store, "resumed") == 7
    assert load_snapshot(store, "resumed").manifest.images_seen == 7 * 16
    assert _stats_steps(store, "resumed") == list(range(1, 8))
    assert any(info.key.startswith("runs/resumed/train_state/") for info in store.list("runs/resumed/train_state/"))
    # The S3 keys never went through Ray: not in the run state Ray records (and serves from its API), not in its storage.
    from ray.train.v2._internal.state.state_actor import get_state_actor

    runs = ray_cluster.get(get_state_actor().get_train_runs.remote())
    recorded = " ".join(run.model_dump_json() for run in runs.values())
    assert "train_loop_config" in recorded and settings.s3_endpoint in recorded  # the config is there, only without keys
    assert settings.s3_secret_key not in recorded and settings.s3_access_key not in recorded
    for info in store.list("runs/resumed/train_state/"):
        if not info.key.endswith("/"):  # pyarrow writes "folder/" marker objects, which hold nothing
            assert settings.s3_secret_key.encode() not in store.get_bytes(info.key), info.key


def test_steps_with_non_finite_gradients_are_skipped_and_counted_and_never_reach_the_weights(ray_cluster, tmp_path):
    settings = StoreSettings(store=str(tmp_path / "store"))
    # Adam moves every weight by about the learning rate: after the first update the networks overflow.
    outcome = train(settings, "diverged", steps=4, snapshot_every=4, num_workers=1, g_lr=1e38, d_lr=1e38)

    store = open_store(settings=settings)
    lines = [json.loads(line) for line in store.get_bytes("runs/diverged/stats.jsonl").decode().splitlines()]
    assert outcome.step == 4 and [line["step"] for line in lines] == [1, 2, 3, 4]
    skipped = lines[-1]["nonfinite_steps"]
    assert 3 <= skipped <= 4, f"{skipped} of 4 steps counted as non-finite"
    snapshot = load_snapshot(store, "diverged")
    assert all(torch.isfinite(p).all() for p in snapshot.generator.state_dict().values()), "a skipped update reached the weights"


def _train_workers_of_this_process() -> list[int]:
    """PIDs of the Ray Train workers descending from this test process (the shared cluster's raylet is its child)."""
    me, found = os.getpid(), []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            pid = int(entry)
            while pid > 1 and pid != me:
                pid = int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if pid == me and cmdline.startswith("ray::RayTrainWorker"):
            found.append(int(entry))
    return found


def test_a_run_whose_worker_dies_more_often_than_max_failures_fails_saying_to_run_it_again(ray_cluster, tmp_path):
    store = open_store(str(tmp_path / "store"))

    def kill_the_worker() -> None:
        # Once it trains (a snapshot published): a worker lost while its group starts is Ray's start-up retry, not a failure.
        wait_until(lambda: read_latest(store, "dies"), 180, "the first snapshot", interval=0.2)
        os.kill(_train_workers_of_this_process()[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    with pytest.raises(TrainingFailedError) as failed:
        train(StoreSettings(store=str(tmp_path / "store")), "dies", steps=100_000, snapshot_every=2, num_workers=1, max_failures=0)
    killer.join(10)

    assert "run 'dies' failed after 0 restarts" in str(failed.value)
    assert "run the same command again to resume from the last checkpoint" in str(failed.value)


def test_a_taken_metrics_port_does_not_stop_the_run(ray_cluster, tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = train(StoreSettings(store=str(tmp_path / "store")), "port-taken", steps=2, snapshot_every=2, num_workers=1, metrics_port=port)

    assert outcome.step == 2 and outcome.metrics_port is None
    assert list_snapshots(open_store(str(tmp_path / "store")), "port-taken") == [2]
