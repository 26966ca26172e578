"""Table runs (ctgan): noise to table rows. The plan (the table loaded, its transformer fitted before any Ray start-up, the
privacy rules for rows) and a worker's CTGAN step.

Each worker draws its own conditions and real rows (training-by-sampling, not epochs) from an RNG seeded by
(seed, rank, step), and torch's noise from the same triple, so a run resumed from a checkpoint draws exactly
what it would have drawn and no RNG state needs saving. The generator is published as is (CTGAN keeps no
G_ema), with the run's transformer.json beside it.

With --dp-epsilon (trainer/privacy.py) D is trained with DP-SGD: PrivateCTGANStep below says what changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable

import numpy as np
import torch

from ganworks.errors import ConfigError, DatasetError
from ganworks.layout import TRANSFORMER
from ganworks.models import HyperparameterError, ModelFamily
from ganworks.optim import optimizer_step
from ganworks.settings import StoreSettings
from ganworks.store import ArtifactStore, open_store
from ganworks.tabular.data import TEST_FRACTION, load_table
from ganworks.tabular.sampler import ConditionSampler
from ganworks.tabular.synthesizer import prepare
from ganworks.tabular.transformer import DataTransformer
from trainer.config import TrainOptions
from trainer.ctgan import CTGANStep, optimizers
from trainer.losses import AdversarialLoss, get_loss
from trainer.planning import TrainPlan, check_enough, check_same_run, choose_loss, per_worker_batch, plan_privacy
from trainer.privacy import PoissonBatches, PrivacyPlan, make_private, per_sample_hooks_off, private_d_update, require_opacus
from trainer.step import Networks, StepResult, data_parallel

DEFAULT_LOSS = "wgan-gp-pac"  # CTGAN's
# What a private ctgan run trains with instead of CTGAN's WGAN-GP with pac 10 (docs/tabular.md says why).
PRIVATE_LOSSES = ("hinge", "non-saturating")


@dataclasses.dataclass
class TablePlan:
    """What a table run trains on: the fitted transformer (published with every snapshot) and the encoded rows."""

    transformer_json: str
    encoded: Any  # numpy rows × transformer width, float32
    test: Any  # the held-out rows (TabularDataset), or None with --split all


def table_split_json(spec: str, train: Any, test: Any, split: str) -> dict[str, Any]:
    """run.json's record of a table and its split: which rows trained, which were held out for evaluation."""
    held_out = None if test is None else {"id": test.id, "rows": len(test)}
    return {"spec": spec, "kind": "table", "id": train.id, "rows": len(train), "schema": train.schema.to_json(), "split": split,
            "test_fraction": TEST_FRACTION if test is not None else 0.0, "held_out": held_out,
            "split_rule": "rows shuffled by numpy RandomState(0); the last test_fraction are held out, the same rows in every run"}


def check_private_table(opts: TrainOptions) -> None:
    """ctgan under DP: one record per D sample (pac 1) and no gradient penalty; what the user set against that is refused."""
    given = opts.model_params
    if int(given.get("pac", 1)) != 1:
        raise ConfigError(f"--dp-epsilon cannot be combined with --model-param pac={given['pac']}: PacGAN packs {given['pac']} records into one "
                          "discriminator sample, and DP-SGD's unit must be one record; use --model-param pac=1 (the default under --dp-epsilon)")
    if float(given.get("gp_weight", 0)) != 0:
        raise ConfigError(f"--dp-epsilon cannot be combined with --model-param gp_weight={given['gp_weight']}: the gradient penalty differentiates "
                          "D with respect to its inputs, which Opacus' per-sample gradients cannot; use --model-param gp_weight=0 (the default under --dp-epsilon)")
    if opts.loss not in PRIVATE_LOSSES:
        raise ConfigError(f"--dp-epsilon cannot be combined with --loss {opts.loss} for a table: CTGAN's WGAN needs a gradient penalty Opacus "
                          f"cannot differentiate per sample; use --loss {PRIVATE_LOSSES[0]} (the default) or {PRIVATE_LOSSES[1]}")


def plan(options: TrainOptions, store_settings: StoreSettings, family: ModelFamily, store: ArtifactStore | None, began: dict | None, source: Any) -> TrainPlan:
    """The table loaded and its transformer fitted here, before any Ray start-up."""
    default_loss = PRIVATE_LOSSES[0] if options.dp_epsilon else DEFAULT_LOSS
    options.loss = options.loss or default_loss
    if options.dp_epsilon:
        from trainer import privacy

        require_opacus()
        check_private_table(options)
        privacy.check_private_trainable(options, family, {})  # refuses, naming what to use
    if options.init_from:
        raise ConfigError(f"--init-from is for image models; a {family.name} run starts from scratch (its transformer is fitted to this table)")
    for flag, given in (("--conditional", options.conditional), ("--augment ada", options.augment != "none")):
        if given:
            raise ConfigError(f"{flag} is for image models; {family.name} conditions on the table's categorical columns by itself")
    settable = family.settable()
    for key in options.model_params:
        if key not in settable:
            raise ConfigError(f"--model-param {key}: {family.name} has no such settable hyperparameter; use one of {', '.join(settable)}")
    choose_loss(options, family, default_loss)
    if options.dp_epsilon:  # one record per D sample and no gradient penalty (PrivateCTGANStep)
        options.model_params = {"pac": 1, "gp_weight": 0.0, **options.model_params}
    try:
        pac = family.validate({**options.model_params, "data_dim": 1})["pac"]
    except HyperparameterError as exc:
        raise ConfigError(f"--model-param {exc.param}: {exc}") from None
    per_worker = per_worker_batch(options)
    if per_worker % pac:
        raise ConfigError(f"--batch-size {options.batch_size} over --num-workers {options.num_workers} gives {per_worker} rows per worker, "
                          f"not a multiple of pac={pac} (the rows the discriminator judges together); e.g. --batch-size {pac * options.num_workers * 50}")
    store = open_store(settings=store_settings)
    table = load_table(options.dataset, split=options.split)
    check_enough(options, len(table), "rows")
    test = load_table(options.dataset, split="test") if options.split == "train" else None
    private_fit = None
    if options.dp_transformer_epsilon:  # ε covers the transformer too: fitted with its share of the budget
        from ganworks.tabular.private import transformer_delta
        from trainer.privacy import run_delta

        private_fit = (options.dp_transformer_epsilon, transformer_delta(table.schema, run_delta(options, len(table))))
    try:
        params, transformer, encoded, fitted = prepare(table, options.seed, private=private_fit, **options.model_params)
    except DatasetError as exc:
        if private_fit is None:
            raise
        raise ConfigError(f"--dp-transformer-epsilon {options.dp_transformer_epsilon:g}: {exc}") from None
    # first: resuming a private run without --dp-epsilon is told so
    privacy = plan_privacy(store, options, family, params, len(table), fitted, mixing_hint="--model-param pac=1",
                           covers="the networks, not the fitted transformer (--dp-transformer-epsilon 0)",
                           warning=f"--dp-epsilon {options.dp_epsilon:g} covers the networks, not the data transformer published beside them (its column "
                                   "ranges, modes, levels and counts are fitted without noise); --dp-transformer-epsilon T fits it privately with T of the budget")
    check_same_run(store, options.run, options.model, params, table.id)
    return TrainPlan(options, store_settings, store, table, params, table_split_json(options.dataset, table, test, options.split), kind="table",
                     table=TablePlan(transformer.dumps(), encoded, test), privacy=privacy)


def worker_config(p: TrainPlan, put: Callable[[Any], Any]) -> dict[str, Any]:
    return {"dataset": {"ref": put(p.table.encoded)}, "transformer": p.table.transformer_json, "snapshot_files": {TRANSFORMER: p.table.transformer_json.encode()}}


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class PrivateCTGANStep(CTGANStep):
    """A CTGAN step whose discriminator is trained with DP-SGD, the privacy unit being one record (one table row).

    What differs from CTGAN, and why:
    - pac 1 (the driver sets it): PacGAN packs several records into one D sample, so one sample's clipped gradient
      would bound a group of records, not one.
    - no gradient penalty, and a per-row loss (--loss hinge or non-saturating): WGAN-GP's penalty differentiates D
      with respect to its inputs, a double backward Opacus' per-sample gradients cannot take; without the penalty
      a WGAN critic is unbounded, so the loss is one whose terms are bounded per row.
    - real rows are this step's Poisson sample (each record joins with probability q, PoissonBatches), not rows
      looked up by a drawn condition level (training-by-sampling picks a row through the level of a column, a
      sampling scheme the subsampled-Gaussian accountant does not model). Each real row is shown with its OWN
      condition: a column drawn uniformly, data-independently, and the row's level of it (ConditionSampler.own_conditions).
    - the generated rows and their conditions are drawn first, from the step's seeded streams, so what D sees of
      them never depends on which records the Poisson sample took; one clipped, noised pass over both charges only
      the real rows (trainer/privacy.py).
    The generator's step is CTGAN's (training-by-sampling conditions, the condition cross-entropy), with the
    loss's G term, and D's per-sample hooks off: G is private by post-processing.

    dp_optimizer=None runs the same recipe without DP-SGD (a plain D update; benchmarks/privacy.py's baseline, so
    the cost of clipping and noise is told apart from the cost of the recipe).
    """

    def __init__(self, *args, batches: PoissonBatches, loss: AdversarialLoss, dp_optimizer, discriminator: torch.nn.Module, world: int, **kwargs):
        super().__init__(*args, loss=loss, **kwargs)
        self.batches, self.dp_opt, self.world = batches, dp_optimizer, world
        self.D_plain = discriminator  # self.D is Opacus' GradSampleModule around it
        self.real: torch.Tensor | None = None

    def step(self, rng: np.random.Generator, step: int):
        self.real = self.batches.at(step)[0]
        return self(rng)

    def discriminator_step(self, rng: np.random.Generator):
        fake_in, _, _ = self.fake_rows(rng)
        own = np.random.default_rng(rng.integers(2**63))  # one draw from rng whatever the sample's size
        real_in = self._with(self.real, self.sampler.own_conditions(self.real, own))
        scores_fake, scores_real = self.D(torch.cat([fake_in, real_in])).split([len(fake_in), len(real_in)])
        rows = torch.cat([self.loss.d_fake(scores_fake), self.loss.d_real(scores_real)])
        if self.dp_opt is None:
            norm_d = optimizer_step(self.opt_d, self.D_plain, rows.mean())
        else:
            norm_d = private_d_update(self.dp_opt, self.D_plain, rows.mean(), self.world)
        # What stats.jsonl shows: the usual D loss (a step may draw no real row at all: then only the fake term).
        loss_d = self.loss.d_term(scores_real, scores_fake) if len(real_in) else self.loss.d_fake(scores_fake).mean()
        return loss_d.detach(), scores_real.detach(), scores_fake.detach(), norm_d, torch.zeros(())

    def generator_step(self, rng: np.random.Generator):
        with per_sample_hooks_off(self.D) if self.dp_opt is not None else contextlib.nullcontext():
            return super().generator_step(rng)


class Run:
    """G and D (no G_ema: the generator is published as is); each step one CTGAN step from the step's seeded streams."""

    unit = "rows"

    def __init__(self, config: dict, opts: TrainOptions, family: ModelFamily, params: dict, rank: int, world: int, device: torch.device,
                 privacy: PrivacyPlan | None):
        self.opts, self.params, self.rank, self.world, self.device, self.privacy = opts, params, rank, world, device, privacy
        import ray

        self.per_worker = opts.batch_size // world
        self.encoded = np.array(ray.get(config["dataset"]["ref"]), dtype=np.float32)
        self.transformer = DataTransformer.loads(config["transformer"])
        torch.manual_seed(opts.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.G = family.build_generator(params).to(device)
        self.D = family.build_discriminator(params).to(device)
        self.G_ema = None
        self.g_opt, self.d_opt = optimizers(self.G, self.D, opts.g_lr)
        for group in self.d_opt.param_groups:
            group["lr"] = opts.d_lr
        self.published = self.G
        self.noise = torch.Generator().manual_seed(opts.seed)  # the checkpoint format's per-rank noise state; draws are seeded per step

    def resume(self, meta: dict, rng: dict[int, torch.Tensor], rank_states: dict[int, dict[str, torch.Tensor]], step: int) -> None:
        pass  # every draw is seeded by (seed, rank, step)

    def start(self) -> None:
        opts, G, D = self.opts, self.G, self.D
        data = torch.from_numpy(self.encoded)
        common = (self.transformer, ConditionSampler(self.transformer, self.encoded), data.to(self.device), self.params, self.per_worker)
        if self.privacy is None:
            self.nets = Networks(G, D, None, data_parallel(G), data_parallel(D), self.g_opt, self.d_opt)
            self.ctgan = CTGANStep(self.nets.G_ddp, self.nets.D_ddp, self.g_opt, self.d_opt, *common, loss=get_loss(opts.loss))
        else:
            D_private, dp_opt = make_private(D, self.d_opt, self.privacy, self.per_worker, self.world, opts.seed, self.device)
            self.nets = Networks(G, D, None, data_parallel(G), D_private, self.g_opt, self.d_opt)
            batches = PoissonBatches(data, None, self.privacy.sample_rate, self.rank, self.world, opts.seed, self.device)
            self.ctgan = PrivateCTGANStep(self.nets.G_ddp, D_private, self.g_opt, self.d_opt, *common, batches=batches, loss=get_loss(opts.loss),
                                          dp_optimizer=dp_opt, discriminator=D, world=self.world)

    def __call__(self, step: int) -> StepResult:
        torch.manual_seed(_step_seed(self.opts.seed, self.rank, step))
        rng = np.random.default_rng([self.opts.seed, self.rank, step])
        r = self.ctgan(rng) if self.privacy is None else self.ctgan.step(rng, step)
        return StepResult(r.loss_d, r.loss_g, r.real_scores, r.fake_scores, r.norm_d, r.norm_g,
                          {"gradient_penalty": float(r.gradient_penalty), "condition_loss": float(r.condition_loss)})

    def after_step(self, images_seen: int) -> None:
        pass

    def state(self) -> dict[str, float]:
        return {}

    def rank_state(self) -> dict[str, torch.Tensor] | None:
        return None

    def sample_grid(self, config: dict) -> None:
        return None  # rows, not images
