"""The per-worker loop of a tabular (ctgan) run: CTGAN steps under DDP, rank 0's reports and snapshots, resume.

Each worker draws its own conditions and real rows (training-by-sampling, not epochs) from an RNG seeded by
(seed, rank, step), and torch's noise from the same triple, so a run resumed from a checkpoint draws exactly
what it would have drawn and no RNG state needs saving. The generator is published as is (CTGAN keeps no
G_ema), with the run's transformer.json beside it.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import ray
import ray.train
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ganworks.tabular.sampler import ConditionSampler
from ganworks.tabular.synthesizer import CTGANStep, optimizers
from ganworks.tabular.transformer import DataTransformer
from trainer.loop import checkpoint_due, log, report_checkpoint, worker_start
from trainer.metrics import serve_worker_up
from trainer.reporting import Rank0Reporter
from trainer.step import Networks, StepResult
from trainer.train_state import load_train_state


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


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

    nets = Networks(G, D, None, DDP(G), DDP(D), g_opt, d_opt)
    ctgan = CTGANStep(nets.G_ddp, nets.D_ddp, g_opt, d_opt, transformer, ConditionSampler(transformer, encoded), torch.from_numpy(encoded).to(device), params, per_worker)
    reporter = Rank0Reporter(config, opts, params, step, rows_seen) if rank == 0 else None
    if rank != 0 and ray.train.get_context().get_local_rank() == 0:
        serve_worker_up(opts.run, opts.metrics_port, opts.metrics_host)
    unused_noise = torch.Generator().manual_seed(opts.seed)  # the checkpoint format's per-rank noise state; draws are seeded per step
    last_checkpoint = time.monotonic()

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        torch.manual_seed(_step_seed(opts.seed, rank, step))
        r = ctgan(np.random.default_rng([opts.seed, rank, step]))
        result = StepResult(r.loss_d, r.loss_g, r.real_scores, r.fake_scores, r.norm_d, r.norm_g,
                            {"gradient_penalty": float(r.gradient_penalty), "condition_loss": float(r.condition_loss)})
        if result.skipped:
            nonfinite += 1
        step += 1
        rows_seen += opts.batch_size
        if reporter is not None:
            reporter.after_step(result, step, rows_seen, nonfinite)
            reporter.maybe_publish(step, rows_seen, G, G, D)
        if checkpoint_due(step, opts, last_checkpoint, device):
            report_checkpoint(step, rows_seen, nonfinite, world, rank, unused_noise, nets, opts, {})
            last_checkpoint = time.monotonic()

    if reporter is not None:
        reporter.finish(step)
