"""The per-worker loop of a tabular (ctgan) run: CTGAN steps under DDP, rank 0's reports and snapshots, resume.

Each worker draws its own conditions and real rows (training-by-sampling, not epochs) from an RNG seeded by
(seed, rank, step), and torch's noise from the same triple, so a run resumed from a checkpoint draws exactly
what it would have drawn and no RNG state needs saving. The generator is published as is (CTGAN keeps no
G_ema), with the run's transformer.json beside it.

With --dp-epsilon (trainer/privacy.py) D is trained with DP-SGD: PrivateCTGANStep below says what changes.
"""

from __future__ import annotations

import contextlib
import pathlib
import time

import numpy as np
import ray
import ray.train
import torch

from ganworks.tabular.sampler import ConditionSampler
from ganworks.tabular.synthesizer import CTGANStep, optimizers
from ganworks.optim import optimizer_step
from ganworks.tabular.transformer import DataTransformer
from trainer.losses import AdversarialLoss, get_loss
from trainer.loop import checkpoint_due, log, report_checkpoint, worker_start
from trainer.privacy import PoissonBatches, PrivacyBudget, PrivacyPlan, make_private, per_sample_hooks_off, private_d_update
from trainer.metrics import serve_worker_up
from trainer.reporting import Rank0Reporter
from trainer.step import Networks, StepResult, data_parallel
from trainer.train_state import load_train_state


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
        super().__init__(*args, **kwargs)
        self.batches, self.loss, self.dp_opt, self.world = batches, loss, dp_optimizer, world
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

    def g_term(self, scores: torch.Tensor) -> torch.Tensor:
        return self.loss.g_term(scores)

    def generator_step(self, rng: np.random.Generator):
        with per_sample_hooks_off(self.D) if self.dp_opt is not None else contextlib.nullcontext():
            return super().generator_step(rng)


def train_table_worker(config: dict) -> None:
    # ---- set-up -----------------------------------------------------------------------------------------------
    opts, family, params, rank, world, device = worker_start(config)
    per_worker = opts.batch_size // world
    encoded = np.array(ray.get(config["dataset"]["ref"]), dtype=np.float32)
    transformer = DataTransformer.loads(config["transformer"])

    torch.manual_seed(opts.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    G = family.build_generator(params).to(device)
    D = family.build_discriminator(params).to(device)
    g_opt, d_opt = optimizers(G, D, opts.g_lr)
    for group in d_opt.param_groups:
        group["lr"] = opts.d_lr

    # ---- resume from Ray's last checkpoint ---------------------------------------------------------------------
    step, rows_seen, nonfinite = 0, 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta, _ = load_train_state(pathlib.Path(folder), generator=G, discriminator=D, generator_ema=None, g_optimizer=g_opt, d_optimizer=d_opt)
        step, rows_seen, nonfinite = meta["step"], meta["images_seen"], meta["nonfinite_steps"]
        log.info("rank %d resumed at step %d (%d rows seen)", rank, step, rows_seen)

    privacy = PrivacyPlan.from_json(config["privacy"]) if "privacy" in config else None  # --dp-epsilon
    budget = PrivacyBudget(privacy) if privacy is not None else None
    if budget is not None and checkpoint is not None:  # ε goes on from where it was, it never restarts
        budget.load_state(meta.get("privacy", {}))
    data = torch.from_numpy(encoded)
    common = (transformer, ConditionSampler(transformer, encoded), data.to(device), params, per_worker)
    if privacy is None:
        nets = Networks(G, D, None, data_parallel(G), data_parallel(D), g_opt, d_opt)
        ctgan = CTGANStep(nets.G_ddp, nets.D_ddp, g_opt, d_opt, *common)
    else:
        D_private, dp_opt = make_private(D, d_opt, privacy, per_worker, world, opts.seed, device)
        nets = Networks(G, D, None, data_parallel(G), D_private, g_opt, d_opt)
        batches = PoissonBatches(data, None, privacy.sample_rate, rank, world, opts.seed, device)
        ctgan = PrivateCTGANStep(nets.G_ddp, D_private, g_opt, d_opt, *common, batches=batches, loss=get_loss(opts.loss), dp_optimizer=dp_opt,
                                 discriminator=D, world=world)
        budget.enforce(opts)  # stop at the last step whose ε is within E, whatever --steps says
    reporter = Rank0Reporter(config, opts, params, step, rows_seen) if rank == 0 else None
    if rank != 0 and ray.train.get_context().get_local_rank() == 0:
        serve_worker_up(opts.run, opts.metrics_port, opts.metrics_host)
    unused_noise = torch.Generator().manual_seed(opts.seed)  # the checkpoint format's per-rank noise state; draws are seeded per step
    last_checkpoint = time.monotonic()

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        torch.manual_seed(_step_seed(opts.seed, rank, step))
        rng = np.random.default_rng([opts.seed, rank, step])
        r = ctgan(rng) if privacy is None else ctgan.step(rng, step)
        result = StepResult(r.loss_d, r.loss_g, r.real_scores, r.fake_scores, r.norm_d, r.norm_g,
                            {"gradient_penalty": float(r.gradient_penalty), "condition_loss": float(r.condition_loss)})
        if result.skipped:
            nonfinite += 1
        step += 1
        rows_seen += opts.batch_size
        if budget is not None:
            budget.step()
        if reporter is not None:
            reporter.after_step(result, step, rows_seen, nonfinite)
            reporter.maybe_publish(step, rows_seen, G, G, D, budget.record() if budget is not None else None)
        if checkpoint_due(step, opts, last_checkpoint, device):
            report_checkpoint(step, rows_seen, nonfinite, world, rank, unused_noise, nets, opts, {}, budget)
            last_checkpoint = time.monotonic()

    if reporter is not None:
        reporter.finish(step)
