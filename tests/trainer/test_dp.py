"""Differentially private training (`--dp-epsilon`): ε as Opacus' accountant gives it, the budget enforced, resume, refusals, DDP."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import threading
import urllib.request

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from mlflow.tracking import MlflowClient

from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest, read_manifest
from ganworks.errors import ConfigError
from ganworks.mlflow_tracking import RUN_TAG
from ganworks.models import get_family
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from ganworks.tabular.private import DELTA_SHARE
from ganworks.tabular.synthesizer import TabularModel
from generator_service.settings import GeneratorSettings
from orchestration.runs import snapshot_rows
from tests.generator.conftest import RunningServer
from tests.tbreader import read_tensorboard
from tests.trainer.helpers import train
from trainer import driver
from trainer.config import TrainOptions
from trainer.losses import get_loss
from trainer.privacy import PrivacyPlan, make_private
from trainer.step import GANStep, Networks

PRIVATE_DCGAN = {"width": 8, "spectral_norm": "false"}
TABLE = {"dataset": "credit-default", "conditional": False, "batch_size": 40}
TINY_CTGAN = {"latent_dim": "8", "g_width": "16", "d_width": "16", "max_modes": "3"}


def opacus_epsilon(sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    """The reference: Opacus' own RDP accountant, stepped as a DP-SGD run of that many steps steps it."""
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=sample_rate)
    return accountant.get_epsilon(delta)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScrapedValues(list):
    pages: list[str]

    def __init__(self):
        super().__init__()
        self.pages = []


@contextlib.contextmanager
def scraping(url: str, sample: str):
    """Scrapes url every 50 ms while the block runs; yields the list the sample's values are appended to (and, as
    its attribute `pages`, every page in which the sample was above 0)."""
    values, stop = ScrapedValues(), threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # no server yet, or gone
                with urllib.request.urlopen(url, timeout=2) as response:
                    page = response.read().decode()
                for line in page.splitlines():
                    if line.startswith(sample + " "):
                        values.append(float(line.split()[-1]))
                        if values[-1] > 0:
                            values.pages.append(page)
            stop.wait(0.05)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield values
    finally:
        stop.set()
        thread.join(10)


def plan_private(tmp_path, **options):
    options = {"run": "private", "dataset": "digits", "conditional": True, "batch_size": 16, "steps": 4, **options}
    opts = TrainOptions(**options)
    return driver.plan(opts, StoreSettings(store=str(tmp_path / "store")))


@pytest.mark.parametrize("options, named", [
    ({"model_params": {"width": 8}}, "--model-param spectral_norm=false"),  # dcgan's default D is spectrally normalised
    ({"model": "stylegan2"}, "--model dcgan --model-param spectral_norm=false"),  # minibatch standard deviation mixes samples
    ({"model_params": PRIVATE_DCGAN, "r1_gamma": 1.0}, "--r1-gamma 0"),
    ({"model_params": PRIVATE_DCGAN, "loss": "wgan-gp"}, "--loss hinge"),
    ({"model": "ctgan", **TABLE, "model_params": {"pac": "10"}}, "--model-param pac=1"),  # PacGAN packs 10 records into one D sample
    ({"model": "ctgan", **TABLE, "model_params": {"gp_weight": "10"}}, "--model-param gp_weight=0"),
    ({"model": "ctgan", **TABLE, "loss": "wgan-gp"}, "--loss hinge"),
    ({"model": "cyclegan", "dataset": "digits:0", "dataset_b": "digits:1", "conditional": False}, "translation family cyclegan is not available yet"),
    ({"model_params": PRIVATE_DCGAN, "augment": "ada"}, "--augment none"),  # ADA reads D's outputs on real images
], ids=["spectral-norm", "stylegan2", "r1", "wgan-gp", "ctgan-pac", "ctgan-gradient-penalty", "ctgan-wgan", "translation", "ada"])
def test_a_private_run_refuses_what_dp_sgd_cannot_train_and_names_the_option_to_use(tmp_path, options, named):
    with pytest.raises(ConfigError) as refused:
        plan_private(tmp_path, dp_epsilon=3.0, **options)
    assert "--dp-epsilon" in str(refused.value) and named in str(refused.value)


def test_a_family_whose_discriminator_has_a_layer_opacus_cannot_train_is_refused_naming_the_layer():
    from ganworks.models.dcgan import DCGAN
    from trainer.privacy import check_private_trainable

    class BatchNormedD(DCGAN):
        """A new family whose D normalises over the batch: one sample's gradient would depend on the others."""

        def build_discriminator(self, p):
            return torch.nn.Sequential(super().build_discriminator(p), torch.nn.BatchNorm1d(1))

    family = BatchNormedD()
    params = family.validate({"image_size": 16, "channels": 1, "num_classes": 10, "width": 8, "spectral_norm": False})
    with pytest.raises(ConfigError) as refused:
        check_private_trainable(TrainOptions(run="private", dataset="digits", dp_epsilon=3.0), family, params)
    assert "layers Opacus cannot train privately" in str(refused.value) and "BatchNorm" in str(refused.value), str(refused.value)
    assert "--model dcgan --model-param spectral_norm=false" in str(refused.value)


def test_a_private_ctgan_run_is_planned_with_one_record_per_discriminator_sample_no_gradient_penalty_and_q_over_the_training_rows(tmp_path):
    plan = plan_private(tmp_path, model="ctgan", **TABLE, model_params=dict(TINY_CTGAN), dp_epsilon=3.0, steps=40)
    params, p, n = plan.architecture_params, plan.privacy, len(plan.dataset)
    assert (params["pac"], params["gp_weight"], plan.options.loss) == (1, 0.0, "hinge")
    assert n == 8000 and p.sample_rate == pytest.approx(40 / 8000) and p.delta == pytest.approx(8000 ** -1.5)
    assert 3.0 - 0.02 < opacus_epsilon(p.noise_multiplier, p.sample_rate, 40, p.delta) <= 3.0
    assert plan.run_json()["privacy"]["epsilon_spent"] == 0.0  # nothing published yet


def test_a_private_ctgan_run_resumed_without_its_budget_is_refused_naming_the_flag(tmp_path):
    private = plan_private(tmp_path, model="ctgan", **TABLE, model_params=dict(TINY_CTGAN), dp_epsilon=3.0, run="private-table")
    private.store.put_json("runs/private-table/run.json", private.run_json())  # what driver.train writes first

    with pytest.raises(ConfigError, match=r"run 'private-table' was trained privately \(ε budget 3.0\); resume it with --dp-epsilon 3.0"):
        driver.plan(TrainOptions(run="private-table", model="ctgan", **TABLE, model_params=dict(TINY_CTGAN), steps=4), StoreSettings(store=str(tmp_path / "store")))


@pytest.mark.parametrize("changed, named", [
    ({"dp_epsilon": 5.0}, "epsilon=3.0"),
    ({"dp_delta": 1e-6}, "delta="),
    ({"dp_max_grad_norm": 2.0}, "max_grad_norm=1.0"),
    ({"dp_noise_multiplier": 9.0}, "noise_multiplier="),
    ({"batch_size": 32}, "sample_rate="),
], ids=["epsilon", "delta", "clip-norm", "noise-multiplier", "batch-size"])
def test_a_private_run_resumed_with_another_epsilon_delta_clip_noise_or_batch_size_is_refused(tmp_path, changed, named):
    first = plan_private(tmp_path, dp_epsilon=3.0, model_params=PRIVATE_DCGAN)
    first.store.put_json("runs/private/run.json", first.run_json())  # what driver.train writes first

    with pytest.raises(ConfigError) as refused:
        plan_private(tmp_path, **{"dp_epsilon": 3.0, "model_params": PRIVATE_DCGAN, **changed})
    assert "run 'private' was trained privately with" in str(refused.value) and named in str(refused.value), str(refused.value)
    assert "resume it with the same" in str(refused.value)


def test_the_planned_noise_spends_at_most_the_budget_over_the_planned_steps_at_the_default_delta(tmp_path):
    plan = plan_private(tmp_path, dp_epsilon=3.0, model_params=PRIVATE_DCGAN, steps=50)
    p, n = plan.privacy, len(plan.dataset)
    assert p.delta == pytest.approx(n ** -1.5) and p.delta < 1 / n
    assert p.sample_rate == pytest.approx(16 / n) and p.budget_steps == 50 and p.accountant == "rdp"
    spent = opacus_epsilon(p.noise_multiplier, p.sample_rate, 50, p.delta)
    assert 3.0 - 0.02 < spent <= 3.0  # Opacus' tolerance: the smallest noise that fits, not a lavish one
    assert plan.run_json()["privacy"]["noise_multiplier"] == p.noise_multiplier


def _state_json(store_root: pathlib.Path, run: str) -> dict:
    """The newest resume checkpoint's counters, as Ray stored them."""
    newest = sorted(store_root.glob(f"runs/{run}/train_state/**/state.json"), key=lambda path: path.parent.name)[-1]
    return json.loads(newest.read_text())


@pytest.mark.ray
@pytest.mark.slow
def test_two_private_workers_account_once_per_step_resume_their_epsilon_and_stop_at_the_last_step_within_the_budget(ray_cluster, tmp_path, monkeypatch):
    store, settings = open_store(str(tmp_path / "store")), StoreSettings(store=str(tmp_path / "store"))
    # Tracked in MLflow too, so that the real-data statistics D withholds can be looked for there.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("GANWORKS_MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    q = 16 / len(plan_private(tmp_path, dp_epsilon=1.0, model_params=PRIVATE_DCGAN).dataset)
    delta = 1e-5
    # With the noise fixed at σ = 1, a budget halfway between ε(10 steps) and ε(11 steps) allows exactly 10 steps.
    budget = (opacus_epsilon(1.0, q, 10, delta) + opacus_epsilon(1.0, q, 11, delta)) / 2
    private = dict(model_params=PRIVATE_DCGAN, dp_epsilon=budget, dp_delta=delta, dp_noise_multiplier=1.0)

    first = train(settings, "dp-run", steps=3, snapshot_every=3, **private)
    port = free_port()
    with scraping(f"http://127.0.0.1:{port}/metrics", 'ganworks_trainer_dp_epsilon{run="dp-run"}') as gauge:
        beyond = train(settings, "dp-run", steps=30, snapshot_every=3, metrics_port=port, **private)  # the same run, asked for more than the budget allows

    assert first.step == 3 and beyond.start_steps == [3]
    assert beyond.step == 10 and read_latest(store, "dp-run") == 10  # the last snapshot is the last step within the budget
    assert list_snapshots(store, "dp-run") == [3, 6, 9, 10]
    p = store.get_json("runs/dp-run/run.json")["privacy"]
    assert (p["noise_multiplier"], p["sample_rate"], p["delta"], p["accountant"]) == (1.0, pytest.approx(q), delta, "rdp")
    for step in (3, 6, 9, 10):
        # Opacus' ε for that many steps: one accountant step per global step (two workers do not double it), and the
        # resumed fit goes on from the checkpoint's accountant (at step 6: six steps' worth, not three again).
        assert read_manifest(store, "dp-run", step).metrics["dp_epsilon"] == pytest.approx(opacus_epsilon(1.0, q, step, delta), rel=1e-9)
    assert read_manifest(store, "dp-run", 10).metrics["dp_epsilon"] <= budget < opacus_epsilon(1.0, q, 11, delta)
    # Rank 0's /metrics showed the ε spent while the resumed run trained: Opacus' value after one of its steps (4-10), never more.
    seen = {value for value in gauge if value > 0}
    assert seen, f"the ε gauge was never above 0 in {len(gauge)} scrapes"
    spent = [opacus_epsilon(1.0, q, step, delta) for step in range(4, 11)]
    assert all(any(value == pytest.approx(e, rel=1e-9) for e in spent) for value in seen), (sorted(seen), spent)
    # What D computes from the real images without noise (its loss, its mean output on them) is published nowhere.
    withheld = ('ganworks_trainer_loss{network="discriminator"', 'ganworks_trainer_discriminator_output{kind="real"')
    assert gauge.pages and not any(sample in page for page in gauge.pages for sample in withheld)
    assert 'ganworks_trainer_discriminator_output{kind="fake"' in gauge.pages[-1]  # on generated images: shown
    lines = [json.loads(line) for line in store.get_bytes("runs/dp-run/stats.jsonl").decode().splitlines()]
    assert lines and not any({"loss_d", "d_real"} & set(line) for line in lines) and all("d_fake" in line for line in lines)
    assert not {"loss_d", "d_real"} & set(read_manifest(store, "dp-run", 10).metrics)
    scalars = set(read_tensorboard(store, "dp-run", tmp_path / "tb").Tags()["scalars"])
    assert "train/d_fake" in scalars and not {"train/loss_d", "train/d_real"} & scalars, sorted(scalars)
    client = MlflowClient(tracking_uri=f"file://{tmp_path / 'mlruns'}")
    [tracked] = client.search_runs([client.get_experiment_by_name("ganworks").experiment_id], filter_string=f"tags.`{RUN_TAG}` = 'dp-run'")
    assert "d_fake" in tracked.data.metrics and not {"loss_d", "d_real"} & set(tracked.data.metrics), sorted(tracked.data.metrics)
    assert _state_json(tmp_path / "store", "dp-run")["privacy"]["history"] == [[1.0, q, 10]]
    # `ganworks runs` shows each snapshot's ε beside its quality metrics.
    shown = {row["step"]: row["metrics"]["dp_epsilon"] for row in snapshot_rows(store, "dp-run")}
    assert shown == {step: read_manifest(store, "dp-run", step).metrics["dp_epsilon"] for step in (3, 6, 9, 10)}


@pytest.mark.ray
@pytest.mark.slow
def test_a_private_ctgan_run_on_two_workers_spends_its_transformers_share_first_accounts_once_resumes_stops_within_the_budget_and_shows_it(ray_cluster, tmp_path):
    store, settings = open_store(str(tmp_path / "store")), StoreSettings(store=str(tmp_path / "store"))
    q, delta, fitted = 40 / 8000, 1e-5, 0.5
    networks_delta = delta * (1 - DELTA_SHARE)  # the table has categorical columns: the transformer's levels spend a tenth of δ

    def spent(steps: int) -> float:  # sequential composition: the transformer's ε, then the networks' at their δ
        return fitted + opacus_epsilon(1.0, q, steps, networks_delta)

    budget = (spent(6) + spent(7)) / 2  # σ = 1 allows exactly 6 steps
    private = dict(model="ctgan", **TABLE, model_params=dict(TINY_CTGAN), dp_epsilon=budget, dp_delta=delta, dp_noise_multiplier=1.0, dp_transformer_epsilon=fitted,
                   snapshot_every=3, num_workers=2, metrics_port=0, log_every=1, publish_retry_seconds=30.0)

    def fit(steps: int):
        plan = driver.plan(TrainOptions(run="dp-table", steps=steps, **private), settings)
        driver.connect_ray(plan.options)
        return driver.train(plan, show_progress=False)

    first = fit(3)
    spent_after_first = store.get_json("runs/dp-table/run.json")["privacy"]["epsilon_spent"]
    beyond = fit(20)  # the same run, asked for more than the budget allows

    assert (first.step, beyond.start_steps, beyond.step) == (3, [3], 6)
    assert list_snapshots(store, "dp-table") == [3, 6] and read_latest(store, "dp-table") == 6
    for step in (3, 6):  # one accountant step per global step, and the resumed fit goes on from the checkpoint's accountant
        assert read_manifest(store, "dp-table", step).metrics["dp_epsilon"] == pytest.approx(spent(step), rel=1e-9)
    assert read_manifest(store, "dp-table", 6).metrics["dp_epsilon"] <= budget
    assert _state_json(tmp_path / "store", "dp-table")["privacy"]["history"] == [[1.0, q, 6]]
    # run.json: what the run was planned with, and the ε of its newest published snapshot
    info = store.get_json("runs/dp-table/run.json")
    assert spent_after_first == pytest.approx(spent(3), rel=1e-9)
    assert info["privacy"]["covers"] == "the networks and the fitted transformer" and info["privacy"]["transformer"]["epsilon"] == fitted
    assert not {"loss_d", "d_real"} & set(read_manifest(store, "dp-table", 6).metrics)  # computed from the real rows without noise
    assert info["privacy"]["epsilon_spent"] == read_manifest(store, "dp-table", 6).metrics["dp_epsilon"] and info["privacy"]["epsilon_spent_step"] == 6
    assert (info["options"]["loss"], info["architecture_params"]["pac"], info["architecture_params"]["gp_weight"]) == ("hinge", 1, 0.0)
    model = TabularModel.from_snapshot(load_snapshot(store, "dp-table"))
    rows = model.sample(20, seed=1, condition=("default", "Yes"))
    assert set(rows["default"]) == {"Yes"} and np.isfinite(rows["balance"]).all()
    # The published transformer is the private one: its ranges are the released ones, every generated value inside them.
    published = {e.name: [e.low, e.high] for e in model.transformer.encodings if hasattr(e, "low")}
    assert published == info["privacy"]["transformer"]["numeric_range"]
    assert all(low <= rows[name].min() and rows[name].max() <= high for name, (low, high) in published.items())
    # The served model's description carries the guarantee: DescribeModel over gRPC from a real generator server.
    server = RunningServer(GeneratorSettings(host="127.0.0.1", port=0, metrics_port=0, runs=["dp-table"], poll_seconds=0.2, png_threads=1, fast_path=False), store)
    try:
        with server.client() as client:
            described = client.describe("dp-table")
    finally:
        server.stop()
    assert described.version == 6 and described.architecture == "ctgan"
    assert described.metrics["dp_epsilon"] == pytest.approx(info["privacy"]["epsilon_spent"]) and described.metrics["dp_delta"] == pytest.approx(delta)
    assert described.metrics["dp_epsilon_budget"] == pytest.approx(budget)
    assert described.metrics["dp_transformer_epsilon"] == pytest.approx(fitted)  # the guarantee covers the published transformer too


def private_step(noise_multiplier: float, max_grad_norm: float):
    """The trainer's GAN step on one worker with a private D (no Ray: the step alone)."""
    class Unwrapped(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    family = get_family("dcgan")
    params = family.validate({"image_size": 16, "channels": 1, "num_classes": 10, "width": 8, "spectral_norm": False})
    torch.manual_seed(0)
    G, D = family.build_generator(params), family.build_discriminator(params)
    g_opt, d_opt = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    plan = PrivacyPlan(1.0, 1e-5, max_grad_norm, noise_multiplier, 0.01, 10, 10)
    wrapped, dp_opt = make_private(D, d_opt, plan, 8, 1, 0, torch.device("cpu"))
    nets = Networks(G, D, G, Unwrapped(G), wrapped, g_opt, d_opt)
    return GANStep(nets, family, params, get_loss("hinge"), [], torch.Generator().manual_seed(0), torch.device("cpu"), contextlib.nullcontext(), 8,
                   private=dp_opt), D


@pytest.mark.parametrize("real_count", [0, 3, 12])
def test_a_private_step_clips_every_row_and_updates_d_even_when_its_poisson_sample_holds_no_real_image(real_count):
    step, D = private_step(noise_multiplier=0.0, max_grad_norm=0.01)  # no noise: what is left is the clipped sum
    before = [p.detach().clone() for p in D.parameters()]

    result = step(0, torch.randn(real_count, 1, 16, 16), torch.randint(0, 10, (real_count,)))

    # Each of the real_count + 8 rows contributes at most C = 0.01; the sum is divided by the expected batch (8).
    assert 0 < result.norm_d <= (real_count + 8) * 0.01 / 8 + 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))
    assert torch.isfinite(torch.as_tensor(result.stats()["d_real"]))


@pytest.mark.parametrize("real_count", [0, 12])
def test_a_private_ctgan_step_clips_every_row_on_its_own_and_updates_d_even_without_real_rows(real_count):
    from ganworks.tabular.sampler import ConditionSampler
    from ganworks.tabular.synthesizer import prepare
    from trainer.ctgan import optimizers
    from tests.tabular.test_ctgan import _dataset
    from trainer.privacy import PoissonBatches
    from trainer.kinds.table import PrivateCTGANStep

    params, transformer, encoded, _ = prepare(_dataset(n=200), 0, latent_dim=8, g_width=16, d_width=16, max_modes=2, pac=1, gp_weight=0.0)
    family = get_family("ctgan")
    torch.manual_seed(0)
    G, D = family.build_generator(params), family.build_discriminator(params)
    g_opt, d_opt = optimizers(G, D)
    rate = real_count / len(encoded)  # q = 0 draws no row; otherwise about real_count rows
    plan = PrivacyPlan(1.0, 1e-5, 0.01, 0.0, rate, 10, 10)  # no noise: what is left is the clipped sum
    wrapped, dp_opt = make_private(D, d_opt, plan, 8, 1, 0, torch.device("cpu"))
    data = torch.from_numpy(encoded)
    step = PrivateCTGANStep(G, wrapped, g_opt, d_opt, transformer, ConditionSampler(transformer, encoded), data, params, 8,
                            batches=PoissonBatches(data, None, rate, 0, 1, 0, torch.device("cpu")), loss=get_loss("non-saturating"),
                            dp_optimizer=dp_opt, discriminator=D, world=1)
    before = [p.detach().clone() for p in D.parameters()]

    result = step.step(np.random.default_rng(0), 0)

    drawn = len(result.real_scores)
    assert (drawn == 0) == (real_count == 0)
    assert 0 < result.norm_d <= (drawn + 8) * 0.01 / 8 + 1e-6  # each of the drawn + 8 generated rows adds at most C = 0.01
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))
    assert result.norm_g is not None and torch.isfinite(result.loss_g)
