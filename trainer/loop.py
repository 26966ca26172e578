"""The per-worker training loop, top to bottom: set-up, resume, the loop (one GAN step, rank 0's reports, checkpoints)."""

from __future__ import annotations

import logging
import pathlib
import tempfile
import time

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ganworks.images import from_uint8
from ganworks.models import ModelFamily, get_family
from ganworks.telemetry import setup_worker_logging
from trainer.config import TrainOptions
from trainer.device import autocast as device_autocast
from trainer.ema import make_ema
from trainer.augment import AdaptiveAugment
from trainer.losses import g_regularisers_for, get_loss, regularisers_for
from trainer.privacy import PoissonBatches, PrivacyBudget, PrivacyPlan, make_private
from trainer.reporting import Rank0Reporter
from trainer.step import GANStep, Networks, data_parallel
from trainer.metrics import serve_worker_up
from trainer.train_state import load_train_state, save_train_state
from trainer.transfer import freeze_blocks, load_into

log = logging.getLogger("trainer")


def worker_start(config: dict) -> tuple[TrainOptions, ModelFamily, dict, int, int, torch.device]:
    """What every worker loop starts with: its options, family and hyperparameters, rank, world size and device."""
    opts = TrainOptions(**config["options"])
    setup_worker_logging()
    torch.set_num_threads(opts.cpus_per_worker)
    context = ray.train.get_context()
    return opts, get_family(opts.model), config["architecture_params"], context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device()


def build_networks(family: ModelFamily, params: dict, opts: TrainOptions, rank: int, device: torch.device):
    """G, D, G_ema, their Adam optimizers and this worker's noise stream; the same initial weights on every rank (DDP also broadcasts rank 0's)."""
    torch.manual_seed(opts.seed)
    G = family.build_generator(params).to(device)
    D = family.build_discriminator(params).to(device)
    g_opt = torch.optim.Adam(G.parameters(), lr=opts.g_lr, betas=(opts.beta1, opts.beta2))
    d_opt = torch.optim.Adam(D.parameters(), lr=opts.d_lr, betas=(opts.beta1, opts.beta2))
    return G, D, make_ema(G), g_opt, d_opt, torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + rank)


def checkpoint_due(step: int, opts: TrainOptions, last_checkpoint: float, device: torch.device) -> bool:
    """The last step, or every --checkpoint-every steps once --checkpoint-min-seconds have passed (rank 0 decides for all)."""
    return step == opts.steps or (step % opts.checkpoint_interval == 0 and agree_across_ranks(time.monotonic() - last_checkpoint >= opts.checkpoint_min_seconds, device))


def train_worker(config: dict) -> None:
    # ---- set-up -----------------------------------------------------------------------------------------------
    opts, family, params, rank, world, device = worker_start(config)
    autocast = device_autocast(device, opts.mixed_precision)
    per_worker = opts.batch_size // world
    conditional = params.get("num_classes", 0) > 0
    privacy = PrivacyPlan.from_json(config["privacy"]) if "privacy" in config else None  # --dp-epsilon (trainer/privacy.py)
    if privacy is not None:  # a Poisson sample of the data each step, as the accountant assumes
        real_batches = PoissonBatches.of_images(config["dataset"]["ref"], conditional, privacy.sample_rate, rank, world, opts.seed, device)
    else:
        real_batches = RealBatches(config["dataset"]["ref"], conditional, per_worker, rank, world, opts.seed, device)

    G, D, G_ema, g_opt, d_opt, noise = build_networks(family, params, opts, rank, device)
    if opts.freeze_d_blocks:
        freeze_blocks(family, D, opts.freeze_d_blocks)

    # ---- resume from Ray's last checkpoint (a new fit of the same run, or a restart after a failure) ----------
    step, images_seen, nonfinite, step_state = 0, 0, 0, {}
    budget = PrivacyBudget(privacy) if privacy is not None else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta, rng = load_train_state(pathlib.Path(folder), generator=G, discriminator=D, generator_ema=G_ema, g_optimizer=g_opt, d_optimizer=d_opt)
        step, images_seen, nonfinite = meta["step"], meta["images_seen"], meta["nonfinite_steps"]
        step_state = meta.get("step_state", {})  # augmentation p, path-length mean
        if budget is not None:  # ε goes on from where it was, it never restarts
            budget.load_state(meta.get("privacy", {}))
        if meta.get("world_size") == world and rank in rng:
            noise.set_state(rng[rank])
        else:  # a different number of workers: fresh but reproducible noise streams
            noise.manual_seed(opts.seed * 1000 + rank + 7919 * step)
        log.info("rank %d resumed at step %d (%d images seen)", rank, step, images_seen)
    elif "init" in config:  # a fresh start of an --init-from run: the source snapshot's weights (trainer/transfer.py)
        load_into(ray.get(config["init"]["weights"]), config["init"]["kept_fresh"], {"generator_ema": G_ema, "generator": G, "discriminator": D})
        log.info("rank %d starts from %s", rank, opts.init_from)

    dp_opt = None
    if privacy is not None:  # DP-SGD: per-sample gradients of D, clipped and noised; d_opt stays what the checkpoint saves
        D_ddp, dp_opt = make_private(D, d_opt, privacy, per_worker, world, opts.seed, device)
    else:
        D_ddp = data_parallel(D)
    nets = Networks(G, D, G_ema, data_parallel(G), D_ddp, g_opt, d_opt)
    # The loss, its regularisers on D and G (trainer/losses.py), and the augmentation of what D sees (trainer/augment.py).
    augment = AdaptiveAugment(params.get("channels", 1), opts.augment_target, opts.augment_speed_images) if opts.augment == "ada" else None
    gan_step = GANStep(nets, family, params, get_loss(opts.loss), regularisers_for(opts), noise, device, autocast, per_worker,
                       g_regularisers=g_regularisers_for(opts), augment=augment, global_batch=opts.batch_size, private=dp_opt, world=world)
    gan_step.load_state(step_state)
    reporter = Rank0Reporter(config, opts, params, step, images_seen) if rank == 0 else None
    if rank != 0 and ray.train.get_context().get_local_rank() == 0:
        serve_worker_up(opts.run, opts.metrics_port, opts.metrics_host)  # the PodMonitor scrapes every worker pod
    last_checkpoint = time.monotonic()
    if budget is not None:  # stop at the last step whose ε is within E, whatever --steps says
        budget.enforce(opts)

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        result = gan_step(step, *real_batches.at(step))
        if result.skipped:
            nonfinite += 1  # gradients are all-reduced first, so every rank skips the same steps
        step += 1
        images_seen += opts.batch_size
        if budget is not None:
            budget.step()
        gan_step.update_ema(opts.batch_size, images_seen, opts.ema_half_life_images, opts.ema_rampup)

        # ---- rank 0: metrics and stats.jsonl, then a snapshot (published in the background) ----
        if reporter is not None:
            reporter.after_step(result, step, images_seen, nonfinite)
            reporter.maybe_publish(step, images_seen, G_ema, G, D, budget.record() if budget is not None else None)
        # ---- every rank: Ray's resume checkpoint. Ones uploaded faster than Ray registers them only queue up, and a crash loses the queue.
        if checkpoint_due(step, opts, last_checkpoint, device):
            report_checkpoint(step, images_seen, nonfinite, world, rank, noise, nets, opts, gan_step.state(), budget)
            last_checkpoint = time.monotonic()

    if reporter is not None:
        reporter.finish(step)


class RealBatches:
    """This worker's share of each epoch's shuffle; the shuffle depends on (seed, epoch) only, so a resumed run picks up mid-epoch exactly."""

    def __init__(self, dataset_ref, conditional: bool, per_worker: int, rank: int, world: int, seed: int, device: torch.device):
        images_u8, labels_np = ray.get(dataset_ref)
        self.images = from_uint8(images_u8).to(device)
        self.labels = torch.from_numpy(labels_np.copy()).to(device) if conditional else None
        self.sampler = DistributedSampler(range(len(self.images)), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.per_worker, self.device = per_worker, device
        self.per_epoch = len(self.sampler) // per_worker
        self._order: dict[int, torch.Tensor] = {}

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch not in self._order:
            self.sampler.set_epoch(epoch)
            self._order.clear()
            self._order[epoch] = torch.tensor(list(self.sampler), device=self.device)
        index = self._order[epoch][offset * self.per_worker : (offset + 1) * self.per_worker]
        return self.images[index], (self.labels[index] if self.labels is not None else None)


def agree_across_ranks(decision: bool, device: torch.device) -> bool:
    """Rank 0's decision on every rank: Ray's report is a barrier that all ranks must reach alike."""
    flag = torch.tensor([int(decision)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def report_checkpoint(step: int, images_seen: int, nonfinite: int, world: int, rank: int, noise: torch.Generator, nets: Networks, opts: TrainOptions,
                       step_state: dict[str, float], budget: PrivacyBudget | None = None, rank_state: dict[str, torch.Tensor] | None = None) -> None:
    """rank_state: a family's own tensors of this worker (the same names and shapes on every rank), gathered into the checkpoint."""
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
