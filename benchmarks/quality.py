"""Quality of a conditional GAN (DCGAN by default, or --model stylegan2) trained by ganworks on digits 32×32, judged by a small CNN trained on held-out real digits.

The GAN trains on the "train" split; the judge trains on the "test" split (which the GAN never sees) and its
accuracy is measured on the "train" split. Samples are drawn for uniform labels: label_accuracy is the share
classified as the label asked for; classes_covered and kl_to_uniform describe the judged class histogram.
An unconditional model is trained too (unless --conditional-only) and its judged class histogram reported.

    .venv/bin/python benchmarks/quality.py [--steps 600] [--num-workers 2] [--conditional-only]
    .venv/bin/python benchmarks/quality.py --model stylegan2 [--model-param KEY=VALUE ...] [--loss ...] --conditional-only
    .venv/bin/python benchmarks/quality.py --transfer --model stylegan2 ... [--source-steps 600] [--steps 300]   (see transfer())

Targets (issue 3): classifier ≥ 0.95, label accuracy ≥ 0.90, all 10 classes, KL to uniform ≤ 0.1 (for the
unconditional model too), ≤ 15 minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ganworks.checkpoint import load_snapshot  # noqa: E402
from ganworks.data import load_dataset  # noqa: E402
from ganworks.models import get_family  # noqa: E402
from ganworks.settings import StoreSettings  # noqa: E402
from ganworks.store import open_store  # noqa: E402


def judge_network() -> nn.Module:
    # Digits are 8×8 at source: the judge looks at 16×16, which keeps every detail and costs a quarter.
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(128, 10),
    )


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 px: the judge sees 360 images, so it needs the augmentation to generalise."""
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def train_judge(epochs: int = 80) -> tuple[nn.Module, float]:
    held_out = load_dataset("digits", image_size=32, split="test")
    check = load_dataset("digits", image_size=32, split="train")
    x, y = held_out.tensors(), torch.from_numpy(held_out.labels)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = judge_network()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(32):
            loss = F.cross_entropy(net(_shift(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    accuracy = float((classify(net, check.tensors()) == torch.from_numpy(check.labels)).float().mean())
    return net, accuracy


@torch.no_grad()
def classify(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(chunk).argmax(1) for chunk in images.split(500)])


def histogram_numbers(predicted: torch.Tensor) -> tuple[int, float]:
    counts = torch.bincount(predicted, minlength=10).double()
    p = counts / counts.sum()
    kl = float(sum(pi * math.log(pi * 10) for pi in p.tolist() if pi > 0))
    return int((counts > 0).sum()), kl


def train_gan(store_settings: StoreSettings, run: str, conditional: bool, args) -> float:
    from trainer import driver
    from trainer.config import TrainOptions

    opts = TrainOptions(run=run, dataset="digits", image_size=32, conditional=conditional, steps=args.steps, num_workers=args.num_workers,
                        cpus_per_worker=args.cpus_per_worker, snapshot_every=max(args.steps // 4, 1), metrics_port=0, seed=args.seed, **_family_options(args))
    plan = driver.plan(opts, store_settings)
    driver.connect_ray(plan.options)
    started = time.monotonic()
    driver.train(plan, show_progress=args.progress)
    return time.monotonic() - started


@torch.no_grad()
def samples(store, run: str, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    snapshot = load_snapshot(store, run)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(per_class)
    family, params = get_family(snapshot.manifest.architecture), snapshot.manifest.architecture_params
    z = family.random_latents(params, len(labels), gen)
    conditional = snapshot.manifest.num_classes > 0
    images = torch.cat([family.generate(snapshot.generator, zc, yc if conditional else None, torch.ones(len(zc))) for zc, yc in zip(z.split(250), labels.split(250))])
    return images, labels


TRANSFER_TARGET = ("bag", "ankle-boot")


def _family_options(args) -> dict:
    return {"model": args.model, "model_params": args.model_params or {},
            **{k: getattr(args, k) for k in ("loss", "r1_gamma", "pl_weight", "augment", "g_lr", "d_lr", "batch_size") if getattr(args, k) is not None}}


def _train_run(store_settings: StoreSettings, run: str, dataset: str, steps: int, snapshot_every: int, args, **extra) -> float:
    from trainer import driver
    from trainer.config import TrainOptions

    options = {**_family_options(args), **extra}
    opts = TrainOptions(run=run, dataset=dataset, image_size=32, conditional=True, steps=steps, num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker,
                        snapshot_every=snapshot_every, metrics_port=0, seed=args.seed, **options)
    plan = driver.plan(opts, store_settings)
    driver.connect_ray(plan.options)
    started = time.monotonic()
    driver.train(plan, show_progress=args.progress)
    return time.monotonic() - started


def transfer(args) -> dict:
    """Fine-tuning vs training from scratch in the small-data setting: 1,000 images of two Fashion-MNIST classes.

    A source model trains on the other 8 classes; then two runs train on `fashion-mnist:bag,ankle-boot@1000` for
    the same steps — one from scratch, one with --init-from the source (both with adaptive augmentation). Each
    snapshot is scored by classifier-FID (ganworks' classifier extractor fitted on the two classes, generated
    images vs the two classes' test split). transfer_steps_ratio = the first step at which the fine-tuned run's
    FID is at or below the from-scratch run's final FID, divided by the steps of the from-scratch run.
    """
    import numpy as np

    from evaluator_service.features import classifier
    from evaluator_service.metrics.fid import fid
    from ganworks.checkpoint import list_snapshots
    from ganworks.fashion_mnist import CLASS_NAMES

    source_classes = ",".join(name for name in CLASS_NAMES if name not in TRANSFER_TARGET)
    target = f"fashion-mnist:{','.join(TRANSFER_TARGET)}"
    started = time.monotonic()
    judge, judge_manifest = classifier.fit(target, image_size=32)
    reference = load_dataset(target, image_size=32, split="test")
    with torch.no_grad():
        real_features = judge(torch.from_numpy(reference.images).permute(0, 3, 1, 2).float().div(255.0))[0].numpy()
    print(f"judge: {judge_manifest['test_accuracy']:.4f} held-out accuracy on {target}; reference {len(reference)} test images", flush=True)

    def fid_series(store, run: str) -> dict[int, float]:
        scores = {}
        for step in list_snapshots(store, run):
            snapshot = load_snapshot(store, run, step)
            family, params = get_family(snapshot.manifest.architecture), snapshot.manifest.architecture_params
            gen = torch.Generator().manual_seed(args.seed + 1)
            labels = torch.arange(2).repeat_interleave(args.samples_per_class)
            z = family.random_latents(params, len(labels), gen)
            with torch.no_grad():
                images = torch.cat([family.generate(snapshot.generator, zc, yc, torch.ones(len(zc))) for zc, yc in zip(z.split(250), labels.split(250))])
                fake = judge((images.clamp(-1, 1) + 1) / 2)[0].numpy()
            scores[step] = round(fid(real_features.astype(np.float64), fake.astype(np.float64))["fid"], 3)
        return scores

    with tempfile.TemporaryDirectory(prefix="ganworks-transfer-") as tmp:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        stamp = int(time.time())
        source_seconds = _train_run(settings, f"source-{stamp}", f"fashion-mnist:{source_classes}", args.source_steps, args.source_steps, args)
        every = max(args.steps // args.evaluations, 1)
        scratch_seconds = _train_run(settings, f"scratch-{stamp}", f"{target}@1000", args.steps, every, args, augment="ada")
        tuned_seconds = _train_run(settings, f"tuned-{stamp}", f"{target}@1000", args.steps, every, args, augment="ada", init_from=f"source-{stamp}")
        scratch, tuned = fid_series(store, f"scratch-{stamp}"), fid_series(store, f"tuned-{stamp}")
    final = scratch[max(scratch)]
    reached = next((step for step in sorted(tuned) if tuned[step] <= final), None)
    ratio = round(reached / max(scratch), 3) if reached is not None else None
    print(f"classifier-FID by step — from scratch: {scratch}; fine-tuned: {tuned}", flush=True)
    return {"benchmark": "transfer", "model": args.model, "model_params": args.model_params or [], "source_classes": source_classes,
            "target": f"{target}@1000", "source_steps": args.source_steps, "steps": args.steps, "fid_scratch_final": final,
            "fid_tuned_final": tuned[max(tuned)], "tuned_reaches_scratch_final_at": reached, "transfer_steps_ratio": ratio,
            "fid_scratch": scratch, "fid_tuned": tuned, "judge_accuracy": round(judge_manifest["test_accuracy"], 4),
            "meets_targets": ratio is not None and ratio <= 0.5,
            "train_seconds": round(source_seconds + scratch_seconds + tuned_seconds, 1), "source_seconds": round(source_seconds, 1),
            "scratch_seconds": round(scratch_seconds, 1), "tuned_seconds": round(tuned_seconds, 1), "total_seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of each model (batch 64)")
    parser.add_argument("--model", default="dcgan", help="model family (default dcgan)")
    parser.add_argument("--model-param", dest="model_params", action="append", metavar="KEY=VALUE", help="a hyperparameter of the family, repeatable")
    parser.add_argument("--loss", help="as ganworks train (default: the trainer's)")
    parser.add_argument("--r1-gamma", type=float, help="as ganworks train")
    parser.add_argument("--pl-weight", type=float, help="as ganworks train")
    parser.add_argument("--augment", choices=["none", "ada"], help="as ganworks train")
    parser.add_argument("--g-lr", type=float, help="as ganworks train")
    parser.add_argument("--d-lr", type=float, help="as ganworks train")
    parser.add_argument("--batch-size", type=int, help="global batch (default: the trainer's, 64)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--samples-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditional-only", action="store_true", help="skip the unconditional model")
    parser.add_argument("--store", help="keep the runs in this store (default: a temporary folder)")
    parser.add_argument("--progress", action="store_true", help="show the training progress bar")
    parser.add_argument("--transfer", action="store_true", help="run the transfer-learning benchmark instead (Fashion-MNIST, see transfer())")
    parser.add_argument("--source-steps", type=int, default=600, help="--transfer: steps of the source model on the other 8 classes")
    parser.add_argument("--evaluations", type=int, default=6, help="--transfer: snapshots scored per run")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.monotonic()
    if args.transfer:
        result = transfer(args)
        import ray

        ray.shutdown()
        print(json.dumps(result))
        return 0

    judge, judge_accuracy = train_judge()
    print(f"judge: {judge_accuracy:.4f} accuracy on the train split, trained on the held-out test split", flush=True)

    with tempfile.TemporaryDirectory(prefix="ganworks-quality-") as tmp:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        run = f"quality-{int(time.time())}"
        train_seconds = train_gan(settings, run, True, args)
        images, labels = samples(store, run, args.samples_per_class, args.seed + 1)
        predicted = classify(judge, images)
        covered, kl = histogram_numbers(predicted)
        result = {"label_accuracy": round(float((predicted == labels).float().mean()), 4), "classifier_accuracy": round(judge_accuracy, 4),
                  "classes_covered": covered, "kl_to_uniform": round(kl, 5), "train_seconds": round(train_seconds, 1), "steps": args.steps,
                  "model": args.model, "model_params": args.model_params or [], "num_workers": args.num_workers, "samples": len(labels)}
        print(f"conditional: {result}", flush=True)
        if not args.conditional_only:
            seconds = train_gan(settings, run + "-uncond", False, args)
            images, _ = samples(store, run + "-uncond", args.samples_per_class, args.seed + 1)
            covered, kl = histogram_numbers(classify(judge, images))
            result.update(unconditional_classes_covered=covered, unconditional_kl_to_uniform=round(kl, 5), unconditional_train_seconds=round(seconds, 1))
    targets = result["classifier_accuracy"] >= 0.95 and result["label_accuracy"] >= 0.9 and result["classes_covered"] == 10 and result["kl_to_uniform"] <= 0.1
    if "unconditional_kl_to_uniform" in result:
        targets = targets and result["unconditional_classes_covered"] == 10 and result["unconditional_kl_to_uniform"] <= 0.1
    result["total_seconds"] = round(time.monotonic() - started, 1)
    result["meets_targets"] = bool(targets)
    import ray

    ray.shutdown()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
