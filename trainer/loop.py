"""The per-worker training loop: set-up, resume, the GAN step, logging, publishing, checkpointing — top to bottom."""

from __future__ import annotations

import contextlib
import logging
import pathlib
import tempfile
import time

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from ganworks.models import build_discriminator, build_generator
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from trainer.config import TrainOptions
from trainer.ema import ema_beta, make_ema, update_ema
from trainer.losses import d_loss, g_loss, input_gradient_penalty
from trainer.metrics import StatsLog, TrainerMetrics
from trainer.publisher import SampleGrid, SnapshotJob, SnapshotPublisher
from trainer.train_state import load_train_state, save_train_state

log = logging.getLogger("trainer")


def train_worker(config: dict) -> None:
    # ---- set-up -----------------------------------------------------------------------------------------------
    opts = TrainOptions(**config["options"])
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s trainer %(name)s: %(message)s")
    params, run = config["architecture_params"], opts.run
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(opts.cpus_per_worker)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and opts.mixed_precision else contextlib.nullcontext()
    conditional = params.get("num_classes", 0) > 0

    images_u8, labels_np = ray.get(config["dataset"]["ref"])
    images = torch.from_numpy(images_u8.copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
    labels = torch.from_numpy(labels_np.copy()).to(device) if conditional else None
    per_worker = opts.batch_size // world
    sampler = DistributedSampler(range(len(images)), num_replicas=world, rank=rank, shuffle=True, seed=opts.seed, drop_last=True)
    batches_per_epoch = len(sampler) // per_worker

    torch.manual_seed(opts.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    G = build_generator(opts.architecture, **params).to(device)
    D = build_discriminator(opts.architecture, **params).to(device)
    G_ema = make_ema(G)
    g_opt = torch.optim.Adam(G.parameters(), lr=opts.g_lr, betas=(opts.beta1, opts.beta2))
    d_opt = torch.optim.Adam(D.parameters(), lr=opts.d_lr, betas=(opts.beta1, opts.beta2))
    noise = torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + rank)

    # ---- resume from Ray's last checkpoint (a new fit of the same run, or a restart after a failure) ----------
    step, images_seen, nonfinite = 0, 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta, rng = load_train_state(pathlib.Path(folder), generator=G, discriminator=D, generator_ema=G_ema, g_optimizer=g_opt, d_optimizer=d_opt)
        step, images_seen, nonfinite = meta["step"], meta["images_seen"], meta["nonfinite_steps"]
        if meta.get("world_size") == world and rank in rng:
            noise.set_state(rng[rank])
        else:  # a different number of workers: fresh but reproducible noise streams
            noise.manual_seed(opts.seed * 1000 + rank + 7919 * step)
        log.info("rank %d resumed at step %d (%d images seen)", rank, step, images_seen)

    G_ddp, D_ddp = DDP(G), DDP(D)

    # ---- rank 0's outputs: metrics, stats.jsonl, the snapshot publisher, progress for the driver -----------------
    publisher = metrics = stats = None
    progress = config.get("progress")
    if rank == 0:
        store_settings = StoreSettings(**config["store"]["settings"])
        store = open_store(config["store"]["url"], settings=store_settings)
        metrics = TrainerMetrics(run)
        metrics_port = metrics.serve(opts.metrics_port)
        metrics.steps.inc(step)
        metrics.images_seen.inc(images_seen)
        stats = StatsLog(store, run, step)
        publisher = SnapshotPublisher(
            lambda: open_store(config["store"]["url"], settings=store_settings), run=run, architecture=opts.architecture,
            architecture_params=params, dataset_id=config["dataset"]["id"], grid=SampleGrid(opts.architecture, params, opts.sample_grid_seed),
            retry_seconds=opts.publish_retry_seconds, on_failure=metrics.publish_failures.inc,
            on_published=lambda at: (metrics.snapshot_published(at), _tell(progress, {"event": "published", "step": at})),
        )
        _tell(progress, {"event": "start", "step": step, "metrics_port": metrics_port})

    order: dict[int, torch.Tensor] = {}

    def batch_of_real(at_step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The epoch's shuffle depends on (seed, epoch) only, so a resumed run picks up mid-epoch exactly.
        epoch, offset = divmod(at_step, batches_per_epoch)
        if epoch not in order:
            sampler.set_epoch(epoch)
            order.clear()
            order[epoch] = torch.tensor(list(sampler), device=device)
        index = order[epoch][offset * per_worker : (offset + 1) * per_worker]
        return images[index], (labels[index] if conditional else None)

    def latents(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, params["latent_dim"], generator=noise).to(device)
        y = torch.randint(0, params["num_classes"], (n,), generator=noise).to(device) if conditional else None
        return z, y

    interval = {"loss_g": 0.0, "loss_d": 0.0, "d_real": 0.0, "d_fake": 0.0, "grad_norm_g": 0.0, "grad_norm_d": 0.0, "n": 0}
    interval_start, interval_images = time.perf_counter(), 0
    last_checkpoint = time.monotonic()

    # ---- the loop -----------------------------------------------------------------------------------------------
    while step < opts.steps:
        # D step: one forward over real and fake together (DDP wants one forward per backward).
        real, real_y = batch_of_real(step)
        z, fake_y = latents(per_worker)
        with torch.no_grad(), autocast:
            fake = G_ddp.module(z, fake_y)
        r1_now = opts.r1_gamma > 0 and step % opts.r1_every == 0
        gp_now = opts.loss == "wgan-gp"
        parts, part_y = [real.detach().requires_grad_(r1_now), fake], [real_y, fake_y]
        if gp_now:
            alpha = torch.rand(per_worker, 1, 1, 1, generator=noise).to(device)
            parts.append(real.lerp(fake, alpha).requires_grad_(True))
            part_y.append(real_y)
        with autocast:
            logits = D_ddp(torch.cat(parts), torch.cat(part_y) if conditional else None).float()
        real_logits, fake_logits = logits[:per_worker], logits[per_worker : 2 * per_worker]
        loss_d = d_loss(opts.loss, real_logits, fake_logits)
        if r1_now:  # lazy R1: every k steps, weighted by k so the average strength is as asked
            loss_d = loss_d + (opts.r1_gamma / 2) * opts.r1_every * input_gradient_penalty(real_logits, parts[0], None)
        if gp_now:
            loss_d = loss_d + opts.gp_weight * input_gradient_penalty(logits[2 * per_worker :], parts[2], 1.0)
        d_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        norm_d = _finite_grad_norm(D)
        if norm_d is not None:
            d_opt.step()

        # G step: through D's plain module, so D's DDP does not wait for gradients D does not get.
        D.requires_grad_(False)
        z, fake_y = latents(per_worker)
        with autocast:
            loss_g = g_loss(opts.loss, D(G_ddp(z, fake_y), fake_y).float())
        g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        D.requires_grad_(True)
        norm_g = _finite_grad_norm(G)
        if norm_g is not None:
            g_opt.step()
        if norm_d is None or norm_g is None:
            nonfinite += 1  # gradients are all-reduced first, so every rank skips the same steps
            if metrics:
                metrics.nonfinite_steps.inc()

        step += 1
        images_seen += opts.batch_size
        update_ema(G_ema, G, ema_beta(opts.batch_size, images_seen, opts.ema_half_life_images, opts.ema_rampup))

        # ---- logging (rank 0) ----
        if rank == 0:
            for key, value in (("loss_g", loss_g), ("loss_d", loss_d), ("d_real", real_logits.mean()), ("d_fake", fake_logits.mean()),
                               ("grad_norm_g", norm_g or 0.0), ("grad_norm_d", norm_d or 0.0)):
                interval[key] += float(value.detach()) if isinstance(value, torch.Tensor) else value
            interval["n"] += 1
            interval_images += opts.batch_size
            metrics.steps.inc()
            metrics.images_seen.inc(opts.batch_size)
            if step % opts.log_every == 0 or step == opts.steps:
                elapsed = time.perf_counter() - interval_start
                line = {key: interval[key] / interval["n"] for key in interval if key != "n"}
                line.update(step=step, images_seen=images_seen, time=time.time(), nonfinite_steps=nonfinite,
                            images_per_second=interval_images / max(elapsed, 1e-9))
                metrics.record(line)
                stats.append(line)
                _tell(progress, {"event": "log", **line})
                interval = dict.fromkeys(interval, 0.0)
                interval["n"] = 0
                interval_start, interval_images = time.perf_counter(), 0

        # ---- publishing (rank 0, in the background) and checkpointing (every rank reports) ----
        if rank == 0 and (step % opts.snapshot_every == 0 or step == opts.steps):
            last = stats.lines[-1] if stats.lines else {}
            publisher.submit(SnapshotJob(step=step, images_seen=images_seen, generator_state={k: v.detach().cpu().clone() for k, v in G_ema.state_dict().items()},
                                         metrics={k: float(last[k]) for k in ("loss_g", "loss_d", "d_real", "d_fake") if k in last}, stats_jsonl=stats.encoded()))
        # Checkpoints uploaded faster than Ray registers them only queue up, and a crash loses the queue.
        if step == opts.steps or (step % opts.checkpoint_interval == 0 and _agree(time.monotonic() - last_checkpoint >= opts.checkpoint_min_seconds, device)):
            _report_checkpoint(step, images_seen, nonfinite, world, rank, noise, G, D, G_ema, g_opt, d_opt, opts)
            last_checkpoint = time.monotonic()

    if rank == 0:
        if not publisher.close(timeout=opts.publish_retry_seconds + 30):
            log.error("the last snapshot was still uploading when the run ended")
        _tell(progress, {"event": "done", "step": step, "published": publisher.published, "failed": publisher.failed})


def _finite_grad_norm(module: torch.nn.Module) -> float | None:
    """The global gradient norm, or None (and the gradients dropped) when any gradient is NaN or infinite."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    if not torch.isfinite(norm):
        for p in module.parameters():
            p.grad = None
        return None
    return float(norm)


def _agree(decision: bool, device: torch.device) -> bool:
    """Rank 0's decision on every rank: Ray's report is a barrier that all ranks must reach alike."""
    flag = torch.tensor([int(decision)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _report_checkpoint(step, images_seen, nonfinite, world, rank, noise, G, D, G_ema, g_opt, d_opt, opts) -> None:
    # Each rank's noise stream goes into the checkpoint, so a resumed run draws what it would have drawn.
    rng = noise.get_state()
    rng_states = [torch.empty_like(rng) for _ in range(world)]
    dist.all_gather(rng_states, rng)
    checkpoint = None
    if rank == 0:
        folder = tempfile.mkdtemp(prefix="ganworks-ckpt-")  # Ray deletes it once uploaded
        save_train_state(pathlib.Path(folder), generator=G, discriminator=D, generator_ema=G_ema, g_optimizer=g_opt, d_optimizer=d_opt, rng_states=rng_states,
                         counters={"step": step, "images_seen": images_seen, "nonfinite_steps": nonfinite, "world_size": world, "run": opts.run})
        checkpoint = ray.train.Checkpoint.from_directory(folder)
    # Uploaded in the background: a slow or unreachable store delays the checkpoint, not the training.
    ray.train.report({"step": step, "images_seen": images_seen}, checkpoint=checkpoint, checkpoint_dir_name=f"step_{step:09d}",
                     checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC, delete_local_checkpoint_after_upload=True)


def _tell(progress, message: dict) -> None:
    """Progress for the driver's console; losing a message only costs a stale bar."""
    if progress is None:
        return
    try:
        progress.put_nowait(message)
    except Exception:  # noqa: BLE001 - a full or gone queue must not stop training
        pass
