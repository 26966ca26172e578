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

Tables (--parts tables): the ctgan family on `breast-cancer` (455 training rows, 114 held out), ε = 1, 3, 10 with the
private recipe `ganworks train --model ctgan --dp-epsilon E` trains with (trainer/kinds/table.py PrivateCTGANStep:
pac 1, no gradient penalty, --table-loss hinge, Poisson-sampled rows with their own conditions, DP-SGD on D), and
ε = ∞ as an ordinary ctgan run trains (CTGAN's WGAN-GP, pac 10, training-by-sampling). Reported per ε:

  ml_efficacy      F1 on the held-out rows' rarer diagnosis of a logistic regression trained on as many generated
                   rows as the train split has, divided by the same trained on the real rows (evaluator_service/metrics/table_scores.py)
  quality          SDMetrics' overall quality score of the generated rows against the training rows
  dcr_share        the evaluator's DCR metric: generated rows closer to a training row than to any held-out row
                   (≈ 455 / 569 = 0.80 when nothing is copied; towards 1 when training rows are reproduced)
  mia_advantage    a distance-to-closest-record attack: a record is called a member when a generated row lies within
                   a threshold of it; the best threshold's TPR − FPR over 114 training vs the 114 held-out rows
                   (below table_mia_noise_level_95 ≈ 0.18 it is indistinguishable from chance)
  dp_time_ratio    seconds per step of the private step / the ordinary CTGAN step, timed in alternating blocks of 20
                   steps (--table-timing-steps each) so the shared machine's changing load falls on both alike; it
                   includes the recipe's change (pac 1: D judges 10× more samples). dp_sgd_time_ratio: the private step
                   / the same recipe without DP-SGD, the cost of per-row clipping and noise alone. `seconds`: each
                   utility run's own wall time, for information (the load changes between runs)

    .venv/bin/python benchmarks/privacy.py [--steps 200] [--width 16] [--batch-size 64] [--threads 1]
    .venv/bin/python benchmarks/privacy.py --parts tables [--table-steps 300] [--table-batch-size 100] [--table-loss hinge]

Last line: one JSON object with a row per ε ("rows" for images, "table_rows" for tables). A short run (a few
hundred steps) shows the trends, not converged quality.
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
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

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


CTGAN_RECIPE = "pac 10, WGAN-GP"


def table_step(budget: float, recipe: str, prepared, args, seed: int):
    """(row, step(i), model) of one ctgan run on the table. recipe "private": PrivateCTGANStep, with DP-SGD at a finite
    ε, without it at ∞; recipe "ctgan": the ordinary CTGAN step (pac 10, WGAN-GP), what `ganworks train --model ctgan`
    trains without --dp-epsilon."""
    from ganworks.tabular.sampler import ConditionSampler
    from ganworks.tabular.synthesizer import FAMILY, TabularModel
    from trainer.ctgan import CTGANStep, optimizers
    from trainer.privacy import PoissonBatches
    from trainer.kinds.table import PrivateCTGANStep

    params, transformer, encoded, fitted = prepared
    if recipe == "ctgan":
        params = FAMILY.validate({**params, "pac": 10, "gp_weight": 10.0})
    n, batch, data = len(encoded), args.table_batch_size, torch.from_numpy(encoded)
    torch.manual_seed(seed)
    G, D = FAMILY.build_generator(params), FAMILY.build_discriminator(params)
    g_opt, d_opt = optimizers(G, D)
    common = (transformer, ConditionSampler(transformer, encoded), data, params, batch)
    row: dict = {"epsilon": budget if math.isfinite(budget) else "inf", "recipe": CTGAN_RECIPE if recipe == "ctgan" else f"pac 1, {args.table_loss}, no GP, Poisson"}
    # A transformer fitted privately (prepared with --table-transformer-epsilon) spent its share first; the networks get the rest.
    pre_epsilon, pre_delta = (fitted.epsilon, fitted.delta) if fitted is not None else (0.0, 0.0)
    if fitted is not None:
        row.update(recipe=row["recipe"] + f", transformer fitted at ε {pre_epsilon:g}", transformer_epsilon=pre_epsilon)
    D_wrapped, dp_opt, q = D, None, batch / n
    if math.isfinite(budget):
        from opacus.accountants.utils import get_noise_multiplier

        delta = default_delta(n)
        sigma = get_noise_multiplier(target_epsilon=budget - pre_epsilon, target_delta=delta - pre_delta, sample_rate=q, steps=args.table_steps, accountant="rdp")
        plan = PrivacyPlan(budget, delta, 1.0, sigma, q, args.table_steps, args.table_steps, preprocessing_epsilon=pre_epsilon, preprocessing_delta=pre_delta)
        D_wrapped, dp_opt = make_private(D, d_opt, plan, batch, 1, seed, torch.device("cpu"))
        row.update(delta=delta, noise_multiplier=round(sigma, 4), sample_rate=round(q, 5),
                   epsilon_spent=round(pre_epsilon + epsilon([(sigma, q, args.table_steps)], delta - pre_delta), 4))
    if recipe == "ctgan":
        step = CTGANStep(G, D, g_opt, d_opt, *common)
    else:
        step = PrivateCTGANStep(G, D_wrapped, g_opt, d_opt, *common, batches=PoissonBatches(data, None, q, 0, 1, seed, torch.device("cpu")),
                                loss=get_loss(args.table_loss), dp_optimizer=dp_opt, discriminator=D, world=1)
    rng = np.random.default_rng(seed)
    return row, (lambda i: step(rng)) if recipe == "ctgan" else (lambda i: step.step(rng, i)), TabularModel(params, transformer, G)


def train_table(budget: float, recipe: str, prepared, args, seed: int) -> tuple[dict, object]:
    row, step, model = table_step(budget, recipe, prepared, args, seed)
    start = time.perf_counter()
    for i in range(args.table_steps):
        step(i)
    row["seconds"] = round(time.perf_counter() - start, 2)
    model.generator.eval()
    return row, model


def time_table_steps(prepared, args, block: int = 20) -> dict[str, float]:
    """Seconds per step of the three recipes, measured in alternating blocks of `block` steps, so that a change of the
    shared machine's load during the run falls on all three alike (the utility runs' own times do not have that)."""
    steps = {"ctgan": table_step(math.inf, "ctgan", prepared, args, 0)[1], "recipe": table_step(math.inf, "private", prepared, args, 0)[1],
             "dp": table_step(3.0, "private", prepared, args, 0)[1]}
    spent = dict.fromkeys(steps, 0.0)
    for i in range(block):  # warm-up, not timed
        for step in steps.values():
            step(i)
    for start in range(block, block + args.table_timing_steps, block):
        for name, step in steps.items():
            begin = time.perf_counter()
            for i in range(start, start + block):
                step(i)
            spent[name] += time.perf_counter() - begin
    return {name: seconds / args.table_timing_steps for name, seconds in spent.items()}


def evaluate_table(row: dict, model, train, held_out, seed: int) -> dict:
    from evaluator_service.metrics.dcr import dcr
    from ganworks.tabular.data import NUMERIC_KINDS, TabularDataset
    from evaluator_service.metrics.table_scores import row_distances, ml_efficacy, quality_report

    schema = train.schema
    synthetic = model.sample(len(train), seed=seed + 2)
    efficacy = ml_efficacy(train.columns, synthetic, held_out.columns, schema)
    row.update(ml_efficacy=round(efficacy["ratio"], 4), f1_synthetic=round(efficacy["f1_synthetic"], 4), f1_real=round(efficacy["f1_real"], 4),
               quality=round(quality_report(train.columns, synthetic, schema)["overall"], 4))
    shares = dcr(held_out, TabularDataset(synthetic, schema, "synthetic", "benchmark"), train=train)
    row["dcr_share"] = round(shares["closer_to_train_share"], 4)
    # Membership inference by distance: members (training rows) should lie closer to some generated row than others do.
    m = min(len(train), len(held_out))
    ranges = {c.name: float(np.ptp(np.concatenate([np.asarray(train.columns[c.name], float), np.asarray(held_out.columns[c.name], float)])))
              for c in schema.columns if c.kind in NUMERIC_KINDS}
    members = row_distances(train.rows(np.arange(m)), synthetic, schema, ranges)
    others = row_distances(held_out.rows(np.arange(m)), synthetic, schema, ranges)
    row["mia_advantage"] = round(best_threshold_advantage(-members, -others), 4)
    return row


def run_tables(args, budgets: list[float]) -> tuple[dict, list[dict]]:
    from ganworks.tabular.data import load_table
    from ganworks.tabular.synthesizer import prepare

    train, held_out = load_table(args.table, split="train"), load_table(args.table, split="test")
    widths = {"latent_dim": args.table_width // 2, "g_width": args.table_width, "d_width": args.table_width}
    prepared = prepare(train, 0, pac=1, gp_weight=0.0, **widths)  # one transformer for every run (its fit is not timed)
    seeds = [int(s) for s in args.table_seeds.split(",")]
    runs = [(budget, "private") for budget in budgets if math.isfinite(budget)]
    if any(not math.isfinite(b) for b in budgets):
        runs = [(math.inf, "ctgan"), (math.inf, "private")] + runs
    fitted = {}
    if args.table_transformer_epsilon:  # and each finite budget again, with ε covering the transformer (fitted with that share)
        from ganworks.tabular.private import transformer_delta

        share = args.table_transformer_epsilon
        fitted["private-transformer"] = prepare(train, 0, private=(share, transformer_delta(train.schema, default_delta(len(train)))), pac=1, gp_weight=0.0, **widths)
        runs += [(budget, "private-transformer") for budget in budgets if math.isfinite(budget) and budget > share]
    rows = []
    for budget, recipe in runs:
        per_seed = []
        for seed in seeds:
            row, model = train_table(budget, recipe, fitted.get(recipe, prepared), args, seed)
            per_seed.append(evaluate_table(row, model, train, held_out, seed))
            print(json.dumps({"seed": seed, **row}), flush=True)
        rows.append(mean_row(per_seed))
    per_step = time_table_steps(prepared, args)
    for row in rows:  # the ratio (vs the run one gets without --dp-epsilon), and DP-SGD's own share of it; a step's
        private = row["epsilon"] != "inf"  # cost does not depend on ε (σ only scales the noise), so one measurement serves all
        # (nor on how the transformer was fitted, beyond its width)
        recipe = "dp" if private else ("ctgan" if row["recipe"] == CTGAN_RECIPE else "recipe")
        row["dp_time_ratio"] = round(per_step[recipe] / per_step["ctgan"], 3)
        row["dp_sgd_time_ratio"] = round(per_step[recipe] / per_step["recipe"], 3) if recipe != "ctgan" else None
    settings = {"dataset": args.table, "model": "ctgan", **widths, "steps": args.table_steps, "batch_size": args.table_batch_size, "loss": args.table_loss,
                "seeds": seeds, "timing_steps": args.table_timing_steps, "max_grad_norm": 1.0, "accountant": "rdp", "threads": args.threads, "train_rows": len(train), "held_out_rows": len(held_out),
                "load_average": os.getloadavg()[0], "table_mia_noise_level_95": round(1.36 * math.sqrt(2 / min(len(train), len(held_out))), 4)}
    settings["seconds_per_step"] = {name: round(seconds, 5) for name, seconds in per_step.items()}
    return settings, rows


def mean_row(per_seed: list[dict]) -> dict:
    """The seeds' mean of every measured number (the first seed's settings); ML efficacy per seed too, as it swings."""
    row = dict(per_seed[0])
    for key in ("seconds", "ml_efficacy", "f1_synthetic", "quality", "dcr_share", "mia_advantage"):
        row[key] = round(float(np.mean([r[key] for r in per_seed])), 4)
    row["ml_efficacy_per_seed"] = [r["ml_efficacy"] for r in per_seed]
    row["mia_advantage_per_seed"] = [r["mia_advantage"] for r in per_seed]
    return row


def with_ratio(rows: list[dict]) -> None:
    """dp_time_ratio = seconds(ε) / seconds(∞), the ∞ row's time measured in the same run."""
    baseline = next((r["seconds"] for r in rows if r["epsilon"] == "inf"), None)
    for row in rows:
        row["dp_time_ratio"] = round(row["seconds"] / baseline, 3) if baseline else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilons", default="1,3,10,inf")
    parser.add_argument("--parts", default="images,tables", help="images, tables, or both")
    parser.add_argument("--table", default="breast-cancer")
    parser.add_argument("--table-steps", type=int, default=300)
    parser.add_argument("--table-batch-size", type=int, default=100)
    parser.add_argument("--table-width", type=int, default=64)
    parser.add_argument("--table-loss", default="hinge", help="the private recipe's D loss: hinge or non-saturating")
    parser.add_argument("--table-timing-steps", type=int, default=200, help="tables: steps of each recipe timed in alternating blocks")
    parser.add_argument("--table-seeds", default="0,1,2", help="tables: one run per seed, means reported (ML efficacy swings from seed to seed)")
    parser.add_argument("--table-transformer-epsilon", type=float, default=0.0,
                        help="tables: also run every finite ε with the transformer fitted privately at this share of it (--dp-transformer-epsilon)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [float(e) for e in args.epsilons.split(",")]
    result: dict = {}
    if "images" in args.parts:
        result["settings"], result["rows"] = run_images(args, budgets)
    if "tables" in args.parts:
        result["table_settings"], result["table_rows"] = run_tables(args, budgets)
    print(json.dumps({**result, **provenance()}))


def run_images(args, budgets: list[float]) -> tuple[dict, list[dict]]:
    train, held_out = load_dataset("digits", image_size=32, split="train"), load_dataset("digits", image_size=32, split="test")
    rows = []
    for budget in sorted(budgets, key=lambda e: -e):  # ∞ first: its time is the baseline
        row, *trained = train_one(budget, train, args)
        rows.append(evaluate(row, *trained, train, held_out, args.seed))
        print(json.dumps(row), flush=True)
    with_ratio(rows)
    settings = {"dataset": "digits", "conditional": True, "model": "dcgan", "width": args.width, "spectral_norm": False, "steps": args.steps,
                "batch_size": args.batch_size, "max_grad_norm": 1.0, "accountant": "rdp", "threads": args.threads, "train_images": len(train),
                "held_out_images": len(held_out), "load_average": os.getloadavg()[0],
                # Below this the attack's advantage is sampling noise: the 5% critical value of the two-sample
                # Kolmogorov–Smirnov statistic, which the best-threshold advantage is, for m members vs m others.
                "mia_noise_level_95": round(1.36 * math.sqrt(2 / min(len(train), len(held_out))), 4)}
    return settings, sorted(rows, key=lambda r: float(r["epsilon"]))


if __name__ == "__main__":
    main()
