"""Trainer speed: steady-state images/s of a plain single-process PyTorch GAN loop vs ganworks on Ray, in one run.

Measured, same model (conditional DCGAN, digits 32×32) and global batch throughout:
  plain          a single-process loop (D step, G step, EMA) with OMP_NUM_THREADS torch threads, no Ray, no DDP
  ray_1          ganworks, 1 Ray worker with the same threads, publishing never (only at the end)
  ray_1_publish  the same, publishing G_ema every 50 steps
  ray_2          ganworks, 2 Ray workers (DDP over gloo), each with the same threads, publishing never
Steady state: the first intervals (start-up) are dropped; the median of the rest is taken. The plain loop
runs first and last and its two figures are averaged, since neighbours on a shared machine come and go.

    [OMP_NUM_THREADS=1] .venv/bin/python benchmarks/trainer.py [--steps 300] [--batch-size 64]

Targets (issue 3): ray_over_plain ≥ 0.9, publish_over_none ≥ 0.95; two_over_one_workers is reported and explained.

modconv_speedup (issue 12): stylegan2's modulated 3×3 convolutions with demodulation, at the shapes of the default
32 px model's synthesis layers (4×4, 8×8, 16×16 at 256 channels, 32×32 at 128), forward and backward at batch 32:
the batched form ganworks uses on this device (grouped convolution on CUDA, style-scaled input elsewhere) vs a Python
loop of per-sample convolutions; both batched forms are reported per layer too. Medians of interleaved repeats,
summed over the layers; the input and weights need gradients, as in training. Target ≥ 3. `modconv_narrow` repeats
the comparison at the widths of the narrower model benchmarks/quality.py trains on CPUs (64 channels throughout),
beside the default model's figure, not instead of it. `--modconv-only` measures just that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The same priority as the plain loop (Ray's default nice 15 would lose any contest for the CPUs); ganworks'
# local cluster does the same.
os.environ.setdefault("RAY_worker_niceness", "0")
# Ray starts each worker with OMP_NUM_THREADS = its CPUs; the plain loop gets the same before torch loads,
# since idle OpenMP threads spinning on a busy machine cost more than they give.
THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))
os.environ["OMP_NUM_THREADS"] = str(THREADS)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import torch  # noqa: E402

from ganworks.data import load_dataset  # noqa: E402
from ganworks.layout import stats_key  # noqa: E402
from ganworks.models import build_discriminator, build_generator, get_family  # noqa: E402
from ganworks.settings import StoreSettings  # noqa: E402
from ganworks.store import open_store  # noqa: E402
from trainer.ema import ema_beta, make_ema, update_ema  # noqa: E402
from trainer.losses import d_loss, g_loss  # noqa: E402

LOG_EVERY = 10
WARMUP_INTERVALS = 3


def plain_images_per_second(args, params: dict) -> float:
    """The baseline: what one process does for the same GAN without any framework."""
    torch.set_num_threads(args.threads)
    data = load_dataset("digits", image_size=32, split="train")
    images, labels = data.tensors(), torch.from_numpy(data.labels)
    torch.manual_seed(0)
    G, D = build_generator("dcgan", **params), build_discriminator("dcgan", **params)
    G_ema = make_ema(G)
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.99))
    b, seen, times = args.batch_size, 0, []
    order = torch.randperm(len(images))
    start = time.perf_counter()
    for step in range(args.steps):
        index = order[(step * b) % (len(order) - b) :][:b]
        real, real_y = images[index], labels[index]
        y = torch.randint(0, 10, (b,))
        with torch.no_grad():
            fake = G(torch.randn(b, params["latent_dim"]), y)
        logits = D(torch.cat([real, fake]), torch.cat([real_y, y]))
        loss = d_loss("hinge", logits[:b], logits[b:])
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()
        D.requires_grad_(False)
        y = torch.randint(0, 10, (b,))
        loss = g_loss("hinge", D(G(torch.randn(b, params["latent_dim"]), y), y))
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        D.requires_grad_(True)
        g_opt.step()
        seen += b
        update_ema(G_ema, G, ema_beta(b, seen, 10_000, 0.05))
        if (step + 1) % LOG_EVERY == 0:
            now = time.perf_counter()
            times.append(LOG_EVERY * b / (now - start))
            start = now
    return statistics.median(times[WARMUP_INTERVALS:])


def ganworks_images_per_second(args, store_root: str, name: str, workers: int, snapshot_every: int) -> float:
    from trainer import driver
    from trainer.config import TrainOptions

    settings = StoreSettings(store=os.path.join(store_root, name))
    opts = TrainOptions(run=name, dataset="digits", image_size=32, conditional=True, steps=args.steps, batch_size=args.batch_size, num_workers=workers,
                        cpus_per_worker=args.threads, snapshot_every=snapshot_every, checkpoint_every=args.steps, log_every=LOG_EVERY, metrics_port=0)
    plan = driver.plan(opts, settings)
    driver.connect_ray(plan.options)
    driver.train(plan, show_progress=False)
    lines = open_store(settings=settings).get_bytes(stats_key(name)).decode().splitlines()
    speeds = [json.loads(line)["images_per_second"] for line in lines]
    return statistics.median(speeds[WARMUP_INTERVALS:])


# (resolution, channels) of the default 32 px stylegan2's synthesis layers (channel_base 4096, channel_max 256).
MODCONV_LAYERS = ((4, 256), (8, 256), (16, 256), (32, 128))
# ... and of the narrower model benchmarks/quality.py trains on CPUs (channel_base 2048, channel_max 64).
MODCONV_LAYERS_NARROW = ((4, 64), (8, 64), (16, 64), (32, 64))


def modconv_speedup(batch: int = 32, repeats: int = 5, layers: tuple = MODCONV_LAYERS) -> dict:
    from ganworks.models.stylegan2 import modulated_conv2d

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shipped = "grouped" if device == "cuda" else "scaled"
    totals = {"loop": 0.0, "grouped": 0.0, "scaled": 0.0}
    per_layer = {}
    for size, channels in layers:
        gen = torch.Generator().manual_seed(0)
        # The input needs its gradient too, as every synthesis layer's does in training (its input is the previous layer's
        # output, or the learned constant): without it both forms skip the input-gradient convolution and the loop looks
        # cheaper than it is.
        x = torch.randn(batch, channels, size, size, generator=gen).to(device).requires_grad_(True)
        weight = torch.randn(channels, channels, 3, 3, generator=gen).to(device).requires_grad_(True)
        styles = (torch.randn(batch, channels, generator=gen) + 1).to(device).requires_grad_(True)

        def per_sample_loop() -> torch.Tensor:
            out = []
            for i in range(batch):
                w = weight * styles[i].reshape(1, -1, 1, 1)
                w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
                out.append(torch.nn.functional.conv2d(x[i : i + 1], w, padding=1))
            return torch.cat(out)

        def timed(fn) -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn().square().mean().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        forms = {"loop": per_sample_loop, "grouped": lambda: modulated_conv2d(x, weight, styles, form="grouped"),
                 "scaled": lambda: modulated_conv2d(x, weight, styles, form="scaled")}
        for fn in forms.values():
            timed(fn)  # warm-up
        seconds = {name: [] for name in forms}
        for _ in range(repeats):
            for name, fn in forms.items():
                seconds[name].append(timed(fn))
        medians = {name: statistics.median(v) for name, v in seconds.items()}
        for name, value in medians.items():
            totals[name] += value
        per_layer[f"{size}x{size}x{channels}"] = {name: round(v * 1000, 1) for name, v in medians.items()}
    return {"modconv_speedup": round(totals["loop"] / totals[shipped], 2), "modconv_form": shipped, "modconv_device": device,
            "modconv_grouped_speedup": round(totals["loop"] / totals["grouped"], 2), "modconv_scaled_speedup": round(totals["loop"] / totals["scaled"], 2),
            "modconv_ms": per_layer, "modconv_batch": batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--modconv-only", action="store_true", help="measure only stylegan2's grouped modulated conv against the per-sample loop")
    parser.add_argument("--modconv-repeats", type=int, default=5, help="interleaved repeats per form and layer (medians are compared; more is steadier on a busy machine)")
    args = parser.parse_args()
    args.threads = THREADS  # torch threads of the plain loop and of each Ray worker
    modconv = modconv_speedup(repeats=args.modconv_repeats)
    # The same comparison at the narrower widths the CPU benchmarks train: reported beside, never instead of, the
    # default model's (the target is read off modconv_speedup).
    narrow = modconv_speedup(repeats=args.modconv_repeats, layers=MODCONV_LAYERS_NARROW)
    modconv["modconv_narrow"] = {key.removeprefix("modconv_"): value for key, value in narrow.items() if key not in ("modconv_form", "modconv_device", "modconv_batch")}
    print(json.dumps(modconv), flush=True)
    if args.modconv_only:
        return 0
    import ray

    params = get_family("dcgan").validate({"image_size": 32, "channels": 1, "num_classes": 10})  # the trainer's defaults
    speeds = {}
    # Before Ray starts: its start-up (daemons, pre-started workers importing) would slow the baseline. A fresh
    # process runs the loop measurably slower at first (seen: 150, 206, 281 images/s in three calls), so one
    # short unmeasured pass warms it up, as the Ray worker is warmed up by its own start-up.
    plain_images_per_second(argparse.Namespace(steps=LOG_EVERY * (WARMUP_INTERVALS + 3), batch_size=args.batch_size, threads=args.threads), params)
    speeds["plain_first"] = plain_images_per_second(args, params)
    print(f"plain loop: {speeds['plain_first']:.0f} images/s", flush=True)
    ray.init(num_cpus=max(2 * args.threads, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="ganworks-bench-") as root:
        for name, workers, every in (("ray_1", 1, 10**9), ("ray_1_publish", 1, 50), ("ray_2", 2, 10**9)):
            speeds[name] = ganworks_images_per_second(args, root, name, workers, every)
            print(f"{name}: {speeds[name]:.0f} images/s", flush=True)
        speeds["plain_last"] = plain_images_per_second(args, params)
        print(f"plain loop again: {speeds['plain_last']:.0f} images/s", flush=True)
        speeds["plain"] = (speeds["plain_first"] + speeds["plain_last"]) / 2
    ray.shutdown()
    result = {
        "ray_over_plain": round(speeds["ray_1"] / speeds["plain"], 3),
        "publish_over_none": round(speeds["ray_1_publish"] / speeds["ray_1"], 3),
        "two_over_one_workers": round(speeds["ray_2"] / speeds["ray_1"], 3),
        "images_per_second": {k: round(v, 1) for k, v in speeds.items()},
        **modconv,
        "steps": args.steps, "batch_size": args.batch_size, "threads_per_worker": args.threads, "cpus": os.cpu_count(), **provenance(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
