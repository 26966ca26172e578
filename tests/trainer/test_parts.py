"""The trainer's parts on their own: EMA half-life, gradient sanitising, resume state, publishing with retries, metric names."""

from __future__ import annotations

import pathlib
import threading

import pytest
import torch
from prometheus_client import generate_latest

from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest
from ganworks.errors import StoreAuthError, StoreUnavailableError
from ganworks.images import decode_png
from ganworks.models import build_discriminator, build_generator
from trainer.ema import ema_beta, make_ema, update_ema
from trainer.exporter import StatsLog, TrainerMetrics
from trainer.publisher import SampleGrid, SnapshotJob, SnapshotPublisher
from ganworks.optim import finite_grad_norm
from trainer.train_state import load_train_state, save_train_state
from tests.tbreader import read_tensorboard

PARAMS = {"image_size": 16, "channels": 1, "num_classes": 10, "width": 8, "latent_dim": 8, "max_width": 512, "embed_dim": 32, "g_norm": "group", "spectral_norm": True}


def test_ema_forgets_half_of_the_past_after_one_half_life_of_images():
    beta = ema_beta(batch_images=64, images_seen=10**9, half_life_images=6400, rampup=0.05)

    assert beta ** (6400 / 64) == pytest.approx(0.5)


def test_ema_half_life_is_capped_early_in_training_by_the_ramp_up():
    early = ema_beta(64, images_seen=6400, half_life_images=10_000, rampup=0.05)  # half-life 320 images

    assert early ** (320 / 64) == pytest.approx(0.5)
    assert ema_beta(64, images_seen=0, half_life_images=10_000, rampup=0.05) == 0.0  # the first step copies G


def test_ema_moves_toward_the_generator_by_one_minus_beta():
    g = torch.nn.Linear(2, 2)
    ema = make_ema(g)
    with torch.no_grad():
        g.weight.add_(1.0)
    before = ema.weight.clone()

    update_ema(ema, g, beta=0.75)

    assert torch.allclose(ema.weight, before + 0.25)


def test_non_finite_gradients_are_dropped_and_never_reach_the_weights():
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    before = [p.clone() for p in net.parameters()]
    net(torch.tensor([[float("nan"), 1.0, 2.0]])).sum().backward()

    norm = finite_grad_norm(net)
    opt.step()  # what the loop would do regardless: with no gradients, nothing moves

    assert norm is None
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_finite_gradients_give_their_global_norm():
    net = torch.nn.Linear(2, 1, bias=False)
    net.weight.grad = torch.tensor([[3.0, 4.0]])

    assert finite_grad_norm(net) == pytest.approx(5.0)


def test_resume_state_round_trips_networks_optimizers_and_rng(tmp_path):
    torch.manual_seed(0)
    nets = [build_generator("dcgan", **PARAMS), build_discriminator("dcgan", **PARAMS)]
    ema = make_ema(nets[0])
    opts = [torch.optim.Adam(n.parameters(), lr=1e-3, betas=(0.0, 0.99)) for n in nets]
    for net, opt in zip(nets, opts):
        sum(p.sum() for p in net.parameters()).backward()
        opt.step()
    rng = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    save_train_state(tmp_path, generator=nets[0], discriminator=nets[1], generator_ema=ema, g_optimizer=opts[0], d_optimizer=opts[1], rng_states=rng, counters={"step": 7, "images_seen": 448})

    torch.manual_seed(1)
    fresh = [build_generator("dcgan", **PARAMS), build_discriminator("dcgan", **PARAMS)]
    fresh_ema = make_ema(fresh[0])
    fresh_opts = [torch.optim.Adam(n.parameters(), lr=1e-3, betas=(0.0, 0.99)) for n in fresh]
    meta, rng_back = load_train_state(tmp_path, generator=fresh[0], discriminator=fresh[1], generator_ema=fresh_ema, g_optimizer=fresh_opts[0], d_optimizer=fresh_opts[1])

    assert (meta["step"], meta["images_seen"]) == (7, 448)
    assert all(torch.equal(a, b) for a, b in zip(nets[1].state_dict().values(), fresh[1].state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), fresh_ema.state_dict().values()))  # G_ema resumes too
    assert torch.equal(opts[0].state_dict()["state"][0]["exp_avg"], fresh_opts[0].state_dict()["state"][0]["exp_avg"])
    assert torch.equal(rng_back[1], rng[1])
    assert not list(pathlib.Path(tmp_path).glob("*.pt*")), "no pickle files"


class FlakyStore:
    """The real local store, but the first `failures` manifest writes fail as an unreachable S3 would."""

    def __init__(self, store, failures: int, error=StoreUnavailableError):
        self.store, self.failures, self.error, self.visible_during_failure = store, failures, error, []

    def put_json(self, key, value):
        if key.endswith("manifest.json") and self.failures > 0:
            self.failures -= 1
            self.visible_during_failure.append((list_snapshots(self.store, "r"), read_latest(self.store, "r")))
            raise self.error("endpoint did not answer")
        return self.store.put_json(key, value)

    def __getattr__(self, name):
        return getattr(self.store, name)


def _publisher(store, metrics: TrainerMetrics, retry_seconds: float = 20.0) -> SnapshotPublisher:
    return SnapshotPublisher(lambda: store, run="r", architecture="dcgan", architecture_params=PARAMS, dataset_id="digits-test",
                             grid=SampleGrid("dcgan", PARAMS, seed=0), retry_seconds=retry_seconds,
                             on_published=metrics.snapshot_published, on_failure=metrics.publish_failures.inc)


def _job(step: int) -> SnapshotJob:
    torch.manual_seed(step)
    return SnapshotJob(step=step, images_seen=step * 64, generator_state=build_generator("dcgan", **PARAMS).state_dict(), metrics={"loss_g": 1.0})


def test_a_failed_upload_is_retried_and_no_partial_snapshot_is_ever_visible(local_store):
    flaky = FlakyStore(local_store, failures=2)
    metrics = TrainerMetrics("r")
    publisher = _publisher(flaky, metrics)

    publisher.submit(_job(50))
    assert publisher.close(timeout=60)

    assert flaky.visible_during_failure == [([], None), ([], None)]
    assert publisher.published == [50] and read_latest(local_store, "r") == 50
    assert load_snapshot(local_store, "r").manifest.images_seen == 50 * 64
    text = generate_latest(metrics.registry).decode()
    assert 'ganworks_trainer_publish_failures_total{run="r"} 2.0' in text
    assert 'ganworks_trainer_last_snapshot_step{run="r"} 50.0' in text


def test_a_refused_credential_is_not_retried_and_training_goes_on(local_store):
    flaky = FlakyStore(local_store, failures=100, error=StoreAuthError)
    publisher = _publisher(flaky, TrainerMetrics("r"))

    publisher.submit(_job(10))
    assert publisher.close(timeout=30)

    assert publisher.failed == [10] and flaky.failures == 99
    assert read_latest(local_store, "r") is None


class SlowStore:
    """The real local store, but the first snapshot's weights upload waits until the test lets it go: a store slower than --snapshot-every."""

    def __init__(self, store):
        self.store, self.uploading, self.go = store, threading.Event(), threading.Event()

    def put_bytes(self, key, data, *args, **kwargs):
        if key.endswith("generator.safetensors") and not self.go.is_set():
            self.uploading.set()
            assert self.go.wait(60), "the slow upload was never let go"
        return self.store.put_bytes(key, data, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_slow_store_replaces_a_waiting_snapshot_with_the_newer_one(local_store, caplog):
    slow = SlowStore(local_store)
    publisher = _publisher(slow, TrainerMetrics("r"))

    publisher.submit(_job(10))
    assert slow.uploading.wait(60), "step 10's upload did not start"
    publisher.submit(_job(20))  # waits behind step 10's upload…
    publisher.submit(_job(30))  # …and is replaced by step 30 before its turn comes
    slow.go.set()
    assert publisher.close(timeout=60)

    assert publisher.published == [10, 30]
    assert list_snapshots(local_store, "r") == [10, 30] and read_latest(local_store, "r") == 30
    assert "snapshot of step 20 dropped: the store is slower than --snapshot-every; step 30 replaces it" in caplog.text


def _stats_line(step: int) -> dict:
    return {"step": step, "time": 1.8e9 + step, "images_seen": 64 * step, "loss_g": 1.0 / step, "loss_d": 0.5, "d_real": 0.3, "d_fake": -0.2,
            "grad_norm_g": 2.0, "grad_norm_d": 3.0, "images_per_second": 100.0, "nonfinite_steps": 0, "augment_p": 0.01 * step}


def test_tensorboard_reads_the_training_curves_and_each_snapshots_grid_from_the_run_folder(local_store, tmp_path):
    stats = StatsLog(local_store, "r", resume_step=0)
    publisher = _publisher(local_store, TrainerMetrics("r"))
    for step in (10, 20):
        stats.append(_stats_line(step))
        publisher.submit(SnapshotJob(**{**vars(_job(step)), "stats_jsonl": stats.encoded(), "events": stats.events}))
    assert publisher.close(timeout=60)
    events = read_tensorboard(local_store, "r", tmp_path / "tb")

    tags = events.Tags()
    assert {"train/loss_g", "train/loss_d", "train/d_real", "train/d_fake", "train/grad_norm_g", "train/images_per_second", "train/augment_p"} <= set(tags["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("train/loss_g")] == [(10, pytest.approx(0.1)), (20, pytest.approx(0.05))]
    grids = events.Images("samples")
    assert [g.step for g in grids] == publisher.published and publisher.published[-1] == 20
    samples = decode_png(local_store.get_bytes("runs/r/checkpoints/000000020/samples.png"))
    assert (grids[-1].height, grids[-1].width) == samples.shape[:2]


def test_a_resumed_run_keeps_the_tensorboard_curves_up_to_its_resume_step(local_store, tmp_path):
    first = StatsLog(local_store, "r", resume_step=0)
    for step in (10, 20, 30):
        first.append(_stats_line(step))
    local_store.put_bytes("runs/r/stats.jsonl", first.encoded())

    resumed = StatsLog(local_store, "r", resume_step=20)
    resumed.append(_stats_line(30))
    local_store.put_bytes("runs/r/tb/events.out.tfevents.trainer", resumed.events.encoded())

    assert [e.step for e in read_tensorboard(local_store, "r", tmp_path / "tb").Scalars("train/loss_g")] == [10, 20, 30]


def test_the_trainer_exports_the_metric_names_dashboards_use():
    metrics = TrainerMetrics("demo")
    metrics.record({"images_per_second": 100.0, "loss_g": 1.0, "loss_d": 2.0, "d_real": 0.5, "d_fake": -0.5, "grad_norm_g": 3.0, "grad_norm_d": 4.0})
    metrics.steps.inc()
    metrics.nonfinite_steps.inc(0)

    text = generate_latest(metrics.registry).decode()

    for name in ("ganworks_trainer_steps_total", "ganworks_trainer_images_seen_total", "ganworks_trainer_images_per_second", "ganworks_trainer_last_snapshot_step",
                 "ganworks_trainer_last_snapshot_timestamp_seconds", "ganworks_trainer_snapshots_published_total", "ganworks_trainer_publish_failures_total",
                 "ganworks_trainer_nonfinite_steps_total"):
        assert f'{name}{{run="demo"}}' in text, name
    assert 'ganworks_trainer_loss{network="generator",run="demo"} 1.0' in text
    assert 'ganworks_trainer_discriminator_output{kind="fake",run="demo"} -0.5' in text
    assert 'ganworks_trainer_grad_norm{network="discriminator",run="demo"} 4.0' in text


def test_a_worker_pod_without_rank_0_answers_its_scrape_with_worker_up_only():
    import urllib.request

    from trainer.exporter import serve_worker_up

    port = serve_worker_up("r", 0, "127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()

    assert 'ganworks_trainer_worker_up{run="r"} 1.0' in text
    assert "ganworks_trainer_steps_total" not in text  # the training numbers come from rank 0 alone
