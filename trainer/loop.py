"""The per-worker training loop, the same for every kind of run, top to bottom: set-up, resume, the loop (one step of
the kind, rank 0's reports and snapshots, the resume checkpoints), the stop at --steps or at the privacy budget.

What a step is, what the networks are and what a snapshot publishes is the kind's (trainer/kinds/<kind>.py, its `Run`).
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
import time

import ray
import ray.train
import torch
import torch.distributed as dist

from trainer.config import TrainOptions
from trainer.kinds import KINDS
from trainer.exporter import serve_worker_up
from trainer.privacy import PrivacyBudget, PrivacyPlan
from trainer.reporting import Rank0Reporter
from trainer.step import Networks
from trainer.train_state import load_rank_states, load_train_state, save_train_state
from trainer.transfer import load_into
from trainer.worker import worker_start

log = logging.getLogger("trainer")


def checkpoint_due(step: int, opts: TrainOptions, last_checkpoint: float, device: torch.device) -> bool:
    """The last step, or every --checkpoint-every steps once --checkpoint-min-seconds have passed (rank 0 decides for all)."""
    return step == opts.steps or (step % opts.checkpoint_interval == 0 and agree_across_ranks(time.monotonic() - last_checkpoint >= opts.checkpoint_min_seconds, device))


def train_worker(config: dict) -> None:
    # ---- set-up: the kind's networks and data ----------------------------------------------------------------
    opts, family, params, rank, world, device = worker_start(config)
    privacy = PrivacyPlan.from_json(config["privacy"]) if "privacy" in config else None  # --dp-epsilon (trainer/privacy.py)
    run = KINDS[family.kind].Run(config, opts, family, params, rank, world, device, privacy)

    # ---- resume from Ray's last checkpoint (a new fit of the same run, or a restart after a failure) ----------
    step, seen, nonfinite = 0, 0, 0
    budget = PrivacyBudget(privacy) if privacy is not None else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta, rng = load_train_state(pathlib.Path(folder), generator=run.G, discriminator=run.D, generator_ema=run.G_ema, g_optimizer=run.g_opt, d_optimizer=run.d_opt)
            rank_states = load_rank_states(pathlib.Path(folder))
        step, seen, nonfinite = meta["step"], meta["images_seen"], meta["nonfinite_steps"]
        if budget is not None:  # ε goes on from where it was, it never restarts
            budget.load_state(meta.get("privacy", {}))
        run.resume(meta, rng, rank_states, step)
        log.info("rank %d resumed at step %d (%d %s seen)", rank, step, seen, run.unit)
    elif "init" in config:  # a fresh start of an --init-from run: the source snapshot's weights (trainer/transfer.py)
        load_into(ray.get(config["init"]["weights"]), config["init"]["kept_fresh"], {"generator_ema": run.G_ema, "generator": run.G, "discriminator": run.D})
        log.info("rank %d starts from %s", rank, opts.init_from)
    run.start()

    reporter = Rank0Reporter(config, opts, params, step, seen, grid=run.sample_grid(config)) if rank == 0 else None
    if rank != 0 and ray.train.get_context().get_local_rank() == 0:
        serve_worker_up(opts.run, opts.metrics_port, opts.metrics_host)  # the PodMonitor scrapes every worker pod
    last_checkpoint = time.monotonic()
    if budget is not None:  # stop at the last step whose ε is within E, whatever --steps says
        budget.enforce(opts)

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        result = run(step)
        if result.skipped:
            nonfinite += 1  # gradients are all-reduced first, so every rank skips the same steps
        step += 1
        seen += opts.batch_size
        if budget is not None:
            budget.step()
        run.after_step(seen)

        # ---- rank 0: metrics and stats.jsonl, then a snapshot (published in the background) ----
        if reporter is not None:
            reporter.after_step(result, step, seen, nonfinite)
            reporter.maybe_publish(step, seen, run.published, run.G, run.D, budget.record() if budget is not None else None)
        # ---- every rank: Ray's resume checkpoint. Ones uploaded faster than Ray registers them only queue up, and a crash loses the queue.
        if checkpoint_due(step, opts, last_checkpoint, device):
            report_checkpoint(step, seen, nonfinite, world, rank, run.noise, run.nets, opts, run.state(), budget, rank_state=run.rank_state())
            last_checkpoint = time.monotonic()

    if reporter is not None:
        reporter.finish(step)


def agree_across_ranks(decision: bool, device: torch.device) -> bool:
    """Rank 0's decision on every rank: Ray's report is a barrier that all ranks must reach alike."""
    flag = torch.tensor([int(decision)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def report_checkpoint(step: int, images_seen: int, nonfinite: int, world: int, rank: int, noise: torch.Generator, nets: Networks, opts: TrainOptions,
                       step_state: dict[str, float], budget: PrivacyBudget | None = None, rank_state: dict[str, torch.Tensor] | None = None) -> None:
    """rank_state: a kind's own tensors of this worker (the same names and shapes on every rank), gathered into the checkpoint."""
    # Each rank's noise stream goes into the checkpoint, so a resumed run draws what it would have drawn.
    rng = noise.get_state()
    rng_states = [torch.empty_like(rng) for _ in range(world)]
    dist.all_gather(rng_states, rng)
    rank_states = None
    if rank_state:
        rank_states = [{} for _ in range(world)]
        for name, value in sorted(rank_state.items()):
            gathered = [torch.empty_like(value) for _ in range(world)]
            dist.all_gather(gathered, value.contiguous())
            for r, tensor in enumerate(gathered):
                rank_states[r][name] = tensor
    checkpoint = None
    if rank == 0:
        folder = tempfile.mkdtemp(prefix="ganworks-ckpt-")  # Ray deletes it once uploaded
        save_train_state(pathlib.Path(folder), generator=nets.G, discriminator=nets.D, generator_ema=nets.G_ema, g_optimizer=nets.g_opt, d_optimizer=nets.d_opt, rng_states=rng_states,
                         counters={"step": step, "images_seen": images_seen, "nonfinite_steps": nonfinite, "world_size": world, "run": opts.run,
                                   "step_state": step_state, **({"privacy": budget.state()} if budget is not None else {})}, rank_states=rank_states)
        checkpoint = ray.train.Checkpoint.from_directory(folder)
    # Uploaded in the background: a slow or unreachable store delays the checkpoint, not the training.
    ray.train.report({"step": step, "images_seen": images_seen}, checkpoint=checkpoint, checkpoint_dir_name=f"step_{step:09d}",
                     checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC, delete_local_checkpoint_after_upload=True)
