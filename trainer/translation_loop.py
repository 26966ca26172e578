"""The per-worker loop of a translation (cyclegan) run: CycleGAN steps on two unpaired image sets under DDP, rank 0's reports, resume.

Each domain is shuffled per epoch by its own seed, so the A and B images of a step are an unrelated draw. The
snapshot is the EMA of the generator pair (both directions). Each worker's history pools go into the resume
checkpoint with its noise stream, so a resumed run shows D the same past fakes it would have seen.
"""

from __future__ import annotations

import pathlib
import time

import ray.train

from trainer.ema import ema_beta, update_ema
from trainer.loop import RealBatches, build_networks, checkpoint_due, log, report_checkpoint, worker_start
from trainer.metrics import serve_worker_up
from trainer.reporting import Rank0Reporter
from trainer.step import Networks, data_parallel
from trainer.train_state import load_rank_states, load_train_state
from trainer.translation import CycleStep, lr_factor


def train_translation_worker(config: dict) -> None:
    # ---- set-up -----------------------------------------------------------------------------------------------
    opts, family, params, rank, world, device = worker_start(config)
    per_worker = opts.batch_size // world
    domain_a = RealBatches(config["dataset"]["ref"], False, per_worker, rank, world, opts.seed, device)
    domain_b = RealBatches(config["dataset"]["ref_b"], False, per_worker, rank, world, opts.seed + 1, device)

    G, D, G_ema, g_opt, d_opt, noise = build_networks(family, params, opts, rank, device)

    # ---- resume from Ray's last checkpoint ---------------------------------------------------------------------
    step, images_seen, nonfinite, pools = 0, 0, 0, {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta, rng = load_train_state(pathlib.Path(folder), generator=G, discriminator=D, generator_ema=G_ema, g_optimizer=g_opt, d_optimizer=d_opt)
            saved_pools = load_rank_states(pathlib.Path(folder))
        step, images_seen, nonfinite = meta["step"], meta["images_seen"], meta["nonfinite_steps"]
        if meta.get("world_size") == world and rank in rng:
            noise.set_state(rng[rank])
            pools = saved_pools.get(rank, {})
        log.info("rank %d resumed at step %d (%d images of each domain seen)", rank, step, images_seen)

    nets = Networks(G, D, G_ema, data_parallel(G), data_parallel(D), g_opt, d_opt)
    cycle = CycleStep(nets, params, noise)
    if pools:
        cycle.load_pools(pools, device)
    image_shape = (params["channels"], params["image_size"], params["image_size"])

    reporter = Rank0Reporter(config, opts, params, step, images_seen) if rank == 0 else None
    if rank != 0 and ray.train.get_context().get_local_rank() == 0:
        serve_worker_up(opts.run, opts.metrics_port, opts.metrics_host)
    last_checkpoint = time.monotonic()

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        cycle.set_lr(lr_factor(step, opts.steps, params["decay_start"]), opts.g_lr, opts.d_lr)
        result = cycle(domain_a.at(step)[0], domain_b.at(step)[0])
        if result.skipped:
            nonfinite += 1
        step += 1
        images_seen += opts.batch_size
        update_ema(G_ema, G, ema_beta(opts.batch_size, images_seen, opts.ema_half_life_images, opts.ema_rampup))
        if reporter is not None:
            reporter.after_step(result, step, images_seen, nonfinite)
            reporter.maybe_publish(step, images_seen, G_ema, G, D)
        if checkpoint_due(step, opts, last_checkpoint, device):
            report_checkpoint(step, images_seen, nonfinite, world, rank, noise, nets, opts, {}, rank_state=cycle.pool_state(image_shape))
            last_checkpoint = time.monotonic()

    if reporter is not None:
        reporter.finish(step)
