"""Differentially private training on digits (conditional DCGAN): what each privacy budget ε costs and what it buys.

For ε = 1, 3, 10 (DP-SGD on D: Poisson-sampled real batches, per-row clipping at C = 1, noise σ chosen by Opacus'
RDP accountant so that --steps spend ε at δ = 1/(n·√n)) and ε = ∞ (the same model and steps, no privacy: shuffled
fixed-size batches, plain Adam), one run each, in this process, with the trainer's own step (trainer/step.py,
trainer/privacy.py) on one worker; Ray and snapshots are left out so the time is the training's own. Reported:

  utility_tstr     the evaluator's utility metric: accuracy on real held-out digits of a classifier trained on
                   1000 generated ones (labels as asked); utility_ratio divides by the same classifier trained on real
  memorization     the evaluator's memorization rate on pixels: generated images closer to a training image than
                   the 5% quantile of held-out images are (≈0.05: no copying; near 1: copies)
  mia_advantage    a membership-inference attack with the final discriminator's score: the best threshold's
                   TPR − FPR at telling training images from held-out ones (0: no better than chance; with
                   359 of each, values below mia_noise_level_95 ≈ 0.10 are indistinguishable from chance)
  seconds          wall time of the training steps; dp_time_ratio = seconds(ε) / seconds(∞), target ≤ 3 on CPU

    .venv/bin/python benchmarks/privacy.py [--steps 200] [--width 16] [--batch-size 64] [--threads 1]

Last line: one JSON object with a row per ε. A short run (a few hundred steps) shows the trends, not converged quality.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluator_service.metrics.memorization import memorization  # noqa: E402
from evaluator_service.metrics.utility import utility  # noqa: E402
from ganworks.data import load_dataset  # noqa: E402
from ganworks.images import to_uint8  # noqa: E402
from ganworks.models import get_family  # noqa: E402
from trainer.ema import make_ema  # noqa: E402
from trainer.losses import get_loss  # noqa: E402
from trainer.privacy import PrivacyPlan, default_delta, epsilon, make_private  # noqa: E402
from trainer.step import GANStep, Networks  # noqa: E402


class Unwrapped(torch.nn.Module):
    """Stands where DDP's wrapper stands in the trainer (one process here: nothing to all-reduce)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_one(budget: float, train, args) -> dict:
    family = get_family("dcgan")
    params = family.validate({"image_size": 32, "channels": 1, "num_classes": 10, "width": args.width, "spectral_norm": False})
    x, y = as_tensor(train.images), torch.from_numpy(train.labels.copy())
    n, batch = len(x), args.batch_size
    torch.manual_seed(args.seed)
    G, D = family.build_generator(params), family.build_discriminator(params)
    G_ema = make_ema(G)
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.99))
    row: dict = {"epsilon": budget if math.isfinite(budget) else "inf"}
    dp_opt = None
    if math.isfinite(budget):
        from opacus.accountants.utils import get_noise_multiplier

        delta, q = default_delta(n), batch / n
        sigma = get_noise_multiplier(target_epsilon=budget, target_delta=delta, sample_rate=q, steps=args.steps, accountant="rdp")
        plan = PrivacyPlan(budget, delta, 1.0, sigma, q, args.steps, args.steps)
        D_wrapped, dp_opt = make_private(D, d_opt, plan, batch, 1, args.seed, torch.device("cpu"))
        row.update(delta=delta, noise_multiplier=round(sigma, 4), sample_rate=round(q, 5), epsilon_spent=round(epsilon([(sigma, q, args.steps)], delta), 4))
    else:
        D_wrapped = Unwrapped(D)
    step = GANStep(Networks(G, D, G_ema, Unwrapped(G), D_wrapped, g_opt, d_opt), family, params, get_loss("hinge"), [],
                   torch.Generator().manual_seed(args.seed), torch.device("cpu"), contextlib.nullcontext(), batch, private=dp_opt)
    draw = torch.Generator().manual_seed(args.seed + 1)
    order = torch.randperm(n, generator=draw)
    start = time.perf_counter()
    for i in range(args.steps):
        if dp_opt is not None:  # Poisson sampling: every image joins with probability q
            index = (torch.rand(n, generator=draw) < batch / n).nonzero().squeeze(1)
        else:
            offset = (i * batch) % (n - batch + 1)
            if offset < batch and i:
                order = torch.randperm(n, generator=draw)
            index = order[offset : offset + batch]
        step(i, x[index], y[index])
        step.update_ema(batch, (i + 1) * batch, 10_000, 0.05)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row, family, params, G_ema, D


def evaluate(row: dict, family, params, G_ema, D, train, held_out, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed + 2)
    labels = torch.arange(1000) % 10
    with torch.no_grad():
        fake = to_uint8(family.generate(G_ema.eval(), family.random_latents(params, 1000, gen), labels, torch.ones(1000)))
    scores = utility(held_out.images, fake, held_out.labels, labels.numpy(), train.images, train.labels, epochs=5, seed=seed)
    row["utility_tstr"], row["utility_ratio"] = round(scores["utility_tstr"], 4), round(scores["utility_ratio"], 4)
    flat = lambda images: images.reshape(len(images), -1).astype(np.float64) / 255.0  # noqa: E731
    row["memorization"] = round(memorization(flat(held_out.images), flat(fake), flat(train.images))["memorization_rate"], 4)
    # Membership inference: the same number of members (training images) and non-members (held out), scored by D.
    m = min(len(train), len(held_out))
    with torch.no_grad():
        members = D.eval()(as_tensor(train.images[:m]), torch.from_numpy(train.labels[:m].copy())).numpy()
        others = D(as_tensor(held_out.images[:m]), torch.from_numpy(held_out.labels[:m].copy())).numpy()
    row["mia_advantage"] = round(best_threshold_advantage(members, others), 4)
    return row


def best_threshold_advantage(members: np.ndarray, others: np.ndarray) -> float:
    """max over thresholds t of P(member score > t) − P(non-member score > t), either direction of the score."""
    thresholds = np.unique(np.concatenate([members, others]))
    tpr = (members[None, :] > thresholds[:, None]).mean(1)
    fpr = (others[None, :] > thresholds[:, None]).mean(1)
    return float(np.abs(tpr - fpr).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilons", default="1,3,10,inf")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, held_out = load_dataset("digits", image_size=32, split="train"), load_dataset("digits", image_size=32, split="test")
    budgets = [float(e) for e in args.epsilons.split(",")]
    rows = []
    for budget in sorted(budgets, key=lambda e: -e):  # ∞ first: its time is the baseline
        row, *trained = train_one(budget, train, args)
        rows.append(evaluate(row, *trained, train, held_out, args.seed))
        print(json.dumps(row), flush=True)
    baseline = next((r["seconds"] for r in rows if r["epsilon"] == "inf"), None)
    for row in rows:
        row["dp_time_ratio"] = round(row["seconds"] / baseline, 3) if baseline else None
    settings = {"dataset": "digits", "conditional": True, "model": "dcgan", "width": args.width, "spectral_norm": False, "steps": args.steps,
                "batch_size": args.batch_size, "max_grad_norm": 1.0, "accountant": "rdp", "threads": args.threads, "train_images": len(train),
                "held_out_images": len(held_out), "load_average": os.getloadavg()[0],
                # Below this the attack's advantage is sampling noise: the 5% critical value of the two-sample
                # Kolmogorov–Smirnov statistic, which the best-threshold advantage is, for m members vs m others.
                "mia_noise_level_95": round(1.36 * math.sqrt(2 / min(len(train), len(held_out))), 4)}
    print(json.dumps({"settings": settings, "rows": sorted(rows, key=lambda r: float(r["epsilon"]))}))


if __name__ == "__main__":
    main()
