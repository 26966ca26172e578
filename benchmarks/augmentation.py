"""Rebalancing a rare class: ganworks-generated minority examples vs class weights and imbalanced-learn's oversamplers,
scored on the real held-out split, in one run.

Tables (credit-default: 3.3 % defaulted; breast-cancer with the malignant class cut to 10 % of the training split):
logistic regression and histogram gradient boosting (the `augmentation` metric's models and features) trained on
  real        the training split as it is
  weights     the same, classes weighted to balance (sample weights n / (2 n_class))
  ros         imbalanced-learn RandomOverSampler to 1:1
  smote       SMOTENC (SMOTE when every feature is a number) to 1:1
  adasyn      ADASYN to about 1:1 (on the encoded features)
  ganworks    the training split plus rows of the minority class drawn from a ganworks ctgan model trained on that
              split (conditioned on the minority level: TabularModel.sample, the code the generator service serves)
              to 1:1
  ganworks_checked  the same with `ganworks augment --check-class`: of 3x as many drawn rows, the first that a
              classifier fitted on the real training rows assigns to the minority class (up to 1:1)
Scores: minority PR-AUC (average precision) and F1 at 0.5 on the test split; mean and std over --seeds (each seed
trains its own ctgan model and seeds every sampler and downstream model).

Fashion-MNIST (--images): one class (shirt) cut to 1 % (60 of 6,000 training images); the `utility` metric's small
CNN is trained on real only, with a class-weighted loss, with the 60 shirts oversampled by flips and shifts, and with
ganworks shirts from a class-conditional DCGAN trained on the cut data (class-balanced labels for the generator);
minority recall and balanced accuracy on the 10,000 test images, mean and std over --image-seeds. On the shared
2-core CPU the CNN trains on --cnn-per-class images of each other class (all 60 shirts, plus what each method adds).
Every method that adds shirts adds --add of them:
  oversample        flipped/shifted copies of the 60 real shirts
  ganworks          generated shirts
  ganworks_flips    half generated shirts, half oversample's copies: ganworks on top of the usual trick (what
                    `ganworks augment --copies 0.5` writes)
Each method's CNN is trained --cnn-seeds times per image seed (its recall of a 60-image class swings with its own
seed), each with its own draw of copies and generated shirts.
--generators DIR keeps each seed's trained cGAN (G_ema, safetensors, every --save-every steps), so a later run with
the same seed and --gan-steps scores it again without training it again; the JSON's fashion_cgan_seconds is then
the training time recorded in the file. fashion_generated_spread is each seed's spread of 500 generated shirts (RMS
distance to their mean image, pixels in [0, 1]) beside fashion_real_spread, the 60 real ones': a generator that
collapsed on the class draws one image again and again, and its spread falls towards 0.

imbalanced-learn is for this benchmark only:
    .venv/bin/pip install --no-deps --target /tmp/imblearn -r benchmarks/imbalanced-learn.txt
    .venv/bin/python benchmarks/augmentation.py --imblearn-path /tmp/imblearn
Last line: a dated JSON object of the means (credit_default_pr_auc_{method}_{model}, ..., train_seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)  # before this script's folder, whose trainer.py would hide the trainer package
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import numpy as np  # noqa: E402

METHODS = ("real", "weights", "ros", "smote", "adasyn", "ganworks", "ganworks_checked")
MODELS = ("logreg", "hgb")
IMAGE_METHODS = ("real", "weights", "oversample", "ganworks", "ganworks_flips")


# ---- tables ---------------------------------------------------------------------------------------------------------


def _design(columns: dict, schema, reference: dict):
    """(numbers standardised on the reference, categorical codes over the reference's levels, the levels)."""
    numbers, codes, levels = [], [], []
    for c in schema.columns:
        if c.name == schema.target:
            continue
        values, ref = columns[c.name], reference[c.name]
        if c.kind in ("continuous", "integer"):
            ref = np.asarray(ref, float)
            numbers.append((np.asarray(values, float) - ref.mean()) / (ref.std() or 1.0))
        else:
            known = sorted(set(np.asarray(ref).astype(str)))
            lookup = {v: i for i, v in enumerate(known)}
            codes.append(np.array([lookup.get(v, 0) for v in np.asarray(values).astype(str)]))
            levels.append(len(known))
    n = len(next(iter(columns.values())))
    return (np.stack(numbers, 1) if numbers else np.zeros((n, 0))), (np.stack(codes, 1) if codes else np.zeros((n, 0), int)), levels


def _features(numbers: np.ndarray, codes: np.ndarray, levels: list[int]) -> np.ndarray:
    onehots = [np.eye(k)[np.asarray(codes[:, j], int)] for j, k in enumerate(levels)]
    return np.concatenate([numbers, *onehots], axis=1)


def cut_minority(table, share: float, seed: int = 0):
    """The table with its minority class cut to `share` of the rows (a fixed choice)."""
    from ganworks.tabular.data import TabularDataset

    labels = np.asarray(table.columns[table.schema.target]).astype(str)
    values, counts = np.unique(labels, return_counts=True)
    minority = values[counts.argmin()]
    rare, common = np.flatnonzero(labels == minority), np.flatnonzero(labels != minority)
    keep = int(round(share * len(common) / (1 - share)))
    kept = np.sort(np.concatenate([common, np.random.RandomState(seed).permutation(rare)[:keep]]))
    return TabularDataset(columns=table.rows(kept), schema=table.schema, id=f"{table.id}-cut{share}", source=table.source)


def table_benchmark(name: str, train, test, seeds: list[int], epochs: int, batch_size: int, pac: int) -> dict:
    import torch
    from imblearn.over_sampling import ADASYN, SMOTE, SMOTENC, RandomOverSampler

    from evaluator_service.metrics.augmentation import fit_and_score
    from trainer.ctgan import fit
    from orchestration.augment_filters import ClassCheck, table_features

    target = train.schema.target
    labels = np.asarray(train.columns[target]).astype(str)
    values, counts = np.unique(labels, return_counts=True)
    minority = str(values[counts.argmin()])
    y = (labels == minority).astype(int)
    y_test = (np.asarray(test.columns[target]).astype(str) == minority).astype(int)
    numbers, codes, levels = _design(train.columns, train.schema, train.columns)
    x = _features(numbers, codes, levels)
    x_test = _features(*_design(test.columns, train.schema, train.columns)[:2], levels)
    need = int((y == 0).sum() - (y == 1).sum())
    print(f"{name}: {len(y)} training rows, {y.sum()} of class {target}={minority} ({y.mean():.1%}); test {len(y_test)} rows, {y_test.sum()} minority; "
          f"each oversampler adds {need}", flush=True)
    scores = {(m, model): {"pr_auc": [], "f1": []} for m in METHODS for model in MODELS}
    gan_seconds, checked_counts = [], []
    for seed in seeds:
        sets = {"real": (x, y, None)}
        weight = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
        sets["weights"] = (x, y, weight)
        xr, yr = RandomOverSampler(random_state=seed).fit_resample(x, y)
        sets["ros"] = (xr, yr, None)
        if codes.shape[1]:
            raw = np.concatenate([numbers, codes], axis=1)
            cat = list(range(numbers.shape[1], raw.shape[1]))
            rs, ys = SMOTENC(categorical_features=cat, random_state=seed).fit_resample(raw, y)
            sets["smote"] = (_features(rs[:, : numbers.shape[1]], rs[:, numbers.shape[1]:].round(), levels), ys, None)
        else:
            xs, ys = SMOTE(random_state=seed).fit_resample(x, y)
            sets["smote"] = (xs, ys, None)
        xa, ya = ADASYN(random_state=seed).fit_resample(x, y)
        sets["adasyn"] = (xa, ya, None)
        torch.manual_seed(seed)
        start = time.perf_counter()
        model = fit(train, epochs=epochs, batch_size=batch_size, seed=seed, pac=pac)
        gan_seconds.append(time.perf_counter() - start)
        rows = model.sample(need, seed=seed, condition=(target, minority))
        xg = _features(*_design(rows, train.schema, train.columns)[:2], levels)
        sets["ganworks"] = (np.concatenate([x, xg]), np.concatenate([y, np.ones(len(xg), int)]), None)
        # `ganworks augment --check-class`: draw 3x as many, keep the first `need` rows that a classifier fitted on the
        # real training rows (HGB, balanced class weights) assigns to the minority class.
        more = model.sample(3 * need, seed=seed, start=need, condition=(target, minority))
        check = ClassCheck(table_features(train.columns, train.schema, train.columns, (target,)), labels, seed=seed)
        passed = np.flatnonzero(check.keep(table_features(more, train.schema, train.columns, (target,)), np.full(3 * need, minority)))[:need]
        kept_rows = {k: np.asarray(v)[passed] for k, v in more.items()}
        xc = _features(*_design(kept_rows, train.schema, train.columns)[:2], levels)
        sets["ganworks_checked"] = (np.concatenate([x, xc]), np.concatenate([y, np.ones(len(xc), int)]), None)
        checked_counts.append(len(passed))
        for method, (xs, ys, w) in sets.items():
            for m in MODELS:
                s = fit_and_score(m, xs, ys, x_test, y_test, seed, sample_weight=w)
                scores[(method, m)]["pr_auc"].append(s["pr_auc"])
                scores[(method, m)]["f1"].append(s["f1"])
        line = "  ".join(f"{method} {scores[(method, 'logreg')]['pr_auc'][-1]:.3f}/{scores[(method, 'hgb')]['pr_auc'][-1]:.3f}" for method in METHODS)
        print(f"  seed {seed}: PR-AUC logreg/hgb  {line}  (ctgan {gan_seconds[-1]:.0f} s)", flush=True)
    out = {}
    print(f"\n{name}: minority PR-AUC and F1 on the test split, mean ± std over seeds {seeds}")
    print(f"  {'method':9s} {'PR-AUC logreg':>16s} {'PR-AUC HGB':>16s} {'F1 logreg':>16s} {'F1 HGB':>16s}")
    for method in METHODS:
        cells = []
        for score in ("pr_auc", "f1"):
            for m in MODELS:
                v = np.array(scores[(method, m)][score])
                out[f"{name}_{score}_{method}_{m}"] = round(float(v.mean()), 4)
                out[f"{name}_{score}_{method}_{m}_std"] = round(float(v.std()), 4)
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        print(f"  {method:9s} " + " ".join(f"{c:>16s}" for c in cells))
    out[f"{name}_ctgan_seconds"] = round(float(np.mean(gan_seconds)), 1)
    out[f"{name}_ganworks_checked_rows"] = round(float(np.mean(checked_counts)), 1)
    print(f"  ganworks_checked: {np.mean(checked_counts):.0f} of {need} rows passed the class check (of {3 * need} drawn)")
    for m in MODELS:
        best = max(out[f"{name}_pr_auc_{k}_{m}"] for k in ("ros", "smote", "adasyn"))
        out[f"{name}_ganworks_minus_best_imblearn_pr_auc_{m}"] = round(out[f"{name}_pr_auc_ganworks_{m}"] - best, 4)
    return out


# ---- images ---------------------------------------------------------------------------------------------------------


def pixel_spread(images: np.ndarray) -> float:
    """RMS distance of images to their mean image, pixels in [0, 1]: how varied a set is (0: every image the same)."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean() / x.shape[1]))


CGAN = {"image_size": 32, "channels": 1, "latent_dim": 64, "width": 32}
# Two timescales: D learns 4x as fast as G. At equal rates (2e-4 or 1e-4) G collapses on the rare class within
# 3,000 steps on some seeds (the spread of its shirts falls from about 0.2 to 0.03); at these it stays near the
# real shirts' (docs/rebalancing.md).
G_LR, D_LR = 1e-4, 4e-4


def _generator_file(folder: str, seed: int, step: int, g_lr: float = G_LR, d_lr: float = D_LR) -> str:
    """The file of one seed's G_ema at one step, trained at these learning rates."""
    return os.path.join(folder, f"cgan-seed{seed}-step{step}-g{g_lr:g}-d{d_lr:g}.safetensors")


def save_generator(folder: str, G, seed: int, step: int, seconds: float, g_lr: float = G_LR, d_lr: float = D_LR) -> None:
    """G_ema's weights at `step` (safetensors; metadata: seed, step, training seconds, the commit that trained it)."""
    from safetensors.torch import save_file

    path = _generator_file(folder, seed, step, g_lr, d_lr)
    meta = {"seed": str(seed), "step": str(step), "seconds": f"{seconds:.1f}", "commit": provenance().get("commit", "")}
    save_file({k: v.detach().contiguous() for k, v in G.state_dict().items()}, path + ".part", metadata=meta)
    os.replace(path + ".part", path)
    print(f"    cgan step {step}: G_ema written to {path}", flush=True)


def load_generator(folder: str, seed: int, step: int, num_classes: int, g_lr: float = G_LR, d_lr: float = D_LR):
    """(G, training seconds) from save_generator's file, or None when there is none for this seed and step."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ganworks.models import build_generator

    path = _generator_file(folder, seed, step, g_lr, d_lr)
    if not os.path.exists(path):
        return None
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    G = build_generator("dcgan", **CGAN, num_classes=num_classes)
    G.load_state_dict(load_file(path))
    print(f"  seed {seed}: G_ema of step {step} from {path} (trained in {meta['seconds']} s at {meta['commit'][:7]})", flush=True)
    return G.eval(), float(meta["seconds"])


def train_cgan(images: np.ndarray, labels: np.ndarray, num_classes: int, steps: int, seed: int, batch: int = 64, save=None, save_every: int = 0,
               g_lr: float = G_LR, d_lr: float = D_LR):
    """A class-conditional DCGAN (ganworks' dcgan family, hinge loss, EMA of G) on the cut data, labels for G drawn
    uniformly over the classes (class-balanced) and real batches drawn class-balanced too, so the rare class is seen.

    Everything D sees goes through ganworks' adaptive augmentation (trainer/augment.py: flips and shifts), its
    strength steered by D's confidence on the rarest class's real images: with 60 of them, D learns those by heart
    long before the rest, and an unaugmented D then teaches G to copy them.

    save(step, G_ema) is called every save_every steps and at the last.
    """
    import torch
    import torch.nn.functional as F

    from ganworks.images import from_uint8
    from ganworks.models import build_discriminator, build_generator
    from trainer.augment import AdaptiveAugment
    from trainer.ema import ema_beta, make_ema, update_ema

    torch.manual_seed(seed)
    params = {**CGAN, "num_classes": num_classes}
    G, D = build_generator("dcgan", **params), build_discriminator("dcgan", **params)
    G_ema = make_ema(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=g_lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=d_lr, betas=(0.0, 0.99))
    # 28×28 → 32×32 by a 2-pixel border of background, not by resizing: resized (and resized back) samples are
    # smoother than real images, and a classifier then learns smoothness as the rare class's sign.
    x_all = F.pad(from_uint8(images), (2, 2, 2, 2), value=-1.0)
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    rare = int(np.argmin([len(members) for members in by_class]))
    ada, draws = AdaptiveAugment(1, target=0.6, speed_images=20_000), torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        yc = rng.integers(0, num_classes, batch)
        idx = np.array([by_class[c][rng.integers(len(by_class[c]))] for c in yc])
        real, y_real = x_all[idx], torch.from_numpy(yc)
        z, y_fake = torch.randn(batch, 64), torch.randint(0, num_classes, (batch,))
        fake = G(z, y_fake)
        real_logits = D(ada(real, draws), y_real)
        loss_d = F.relu(1 - real_logits).mean() + F.relu(1 + D(ada(fake.detach(), draws), y_fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        ada.observe(real_logits[y_real == rare])
        ada.adjust(step, batch)
        loss_g = -D(ada(G(z, y_fake), draws), y_fake).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # ganworks' G_ema: a 10k-image half-life, ramped up so the average does not keep the noisy young generator
        update_ema(G_ema, G, ema_beta(batch, (step + 1) * batch, 10_000, 0.05))
        if step % 500 == 0:
            print(f"    cgan step {step}: loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f} augment p {ada.p:.2f}", flush=True)
        if save is not None and (step + 1 == steps or (save_every and (step + 1) % save_every == 0)):
            save(step + 1, G_ema)
    return G_ema.eval()


def image_benchmark(seeds: list[int], gan_steps: int, per_class: int, cnn_epochs: int, add: int, samples_png: str = "",
                    generators: str = "", save_every: int = 0, cnn_seeds: int = 3, g_lr: float = G_LR, d_lr: float = D_LR) -> dict:
    import torch
    import torch.nn.functional as F

    from evaluator_service.metrics.utility import BATCH_SIZE, UtilityClassifier, as_input, predict
    from ganworks.data import load_dataset
    from ganworks.images import flipped_shifted_copies, grid_png, to_uint8

    train = load_dataset("fashion-mnist:shirt=1%", split="train")
    test = load_dataset("fashion-mnist", split="test")
    shirt = train.class_names.index("shirt")
    print(f"fashion-mnist: {int((train.labels == shirt).sum())} training shirts of {len(train)} images; test {len(test)} images", flush=True)

    def fit(images, labels, seed, class_weight=None):
        x, y = as_input(images), torch.from_numpy(labels.astype(np.int64))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = UtilityClassifier(1, 10)
            opt = torch.optim.Adam(net.parameters(), lr=2e-3)
            weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
            g = torch.Generator().manual_seed(seed)
            for _ in range(cnn_epochs):
                for idx in torch.randperm(len(x), generator=g).split(BATCH_SIZE):
                    if len(idx) < 2:
                        continue
                    loss = F.cross_entropy(net(x[idx]), y[idx], weight=weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        return net.eval()

    def score(net):
        predicted = predict(net, test.images).argmax(1)
        recalls = [(predicted[test.labels == c] == c).mean() for c in range(10)]
        return float(recalls[shirt]), float(np.mean(recalls))

    results = {k: {"recall": [], "balanced_accuracy": []} for k in IMAGE_METHODS}
    pairs = {"oversample": [], "weights": []}  # ganworks_flips − each, shirt recall, per (seed, CNN seed)
    spread, real_spread = [], pixel_spread(train.images[train.labels == shirt])
    gan_seconds = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pick = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[: per_class if c != shirt else None] for c in range(10)])
        xs, ys = train.images[pick], train.labels[pick]
        counts = np.bincount(ys, minlength=10)
        loaded = load_generator(generators, seed, gan_steps, 10, g_lr, d_lr) if generators else None
        if loaded is None:
            start = time.perf_counter()
            save = (lambda step, G: save_generator(generators, G, seed, step, time.perf_counter() - start, g_lr, d_lr)) if generators else None
            G = train_cgan(train.images, train.labels, 10, gan_steps, seed, save=save, save_every=save_every, g_lr=g_lr, d_lr=d_lr)
            gan_seconds.append(time.perf_counter() - start)
        else:
            G, seconds = loaded
            gan_seconds.append(seconds)
        with torch.no_grad():  # a collapsed generator draws one image again and again: its spread falls towards 0
            drawn = to_uint8(G(torch.randn(500, 64, generator=torch.Generator().manual_seed(seed)), torch.full((500,), shirt))[:, :, 2:30, 2:30])
        spread.append(pixel_spread(drawn))
        print(f"  seed {seed}: spread of 500 generated shirts {spread[-1]:.3f} (the 60 real ones: {real_spread:.3f})", flush=True)
        if samples_png and seed == seeds[0]:
            with open(samples_png, "wb") as out:
                out.write(grid_png(np.concatenate([drawn[:50], xs[ys == shirt][:50]]), columns=10, scale=2))
            print(f"  {samples_png}: 50 generated shirts (top), then 50 real training shirts", flush=True)
        # The small CNN's recall of a 60-image class swings by ±0.15 with its own seed alone (measured: flipped copies
        # gave 0.06–0.49 over CNN seeds on one cut), so each method is trained with --cnn-seeds seeds, each drawing
        # its own copies and generated shirts; a seed's figure is their mean, and each pair (ganworks_flips,
        # oversample) on one CNN seed is compared as well.
        per_seed = {m: {"recall": [], "balanced_accuracy": []} for m in IMAGE_METHODS}
        for cnn_seed in (seed + 100 * k for k in range(cnn_seeds)):
            with torch.no_grad():
                fake = to_uint8(G(torch.randn(add, 64, generator=torch.Generator().manual_seed(cnn_seed)), torch.full((add,), shirt))[:, :, 2:30, 2:30])
            copies, half = flipped_shifted_copies(xs[ys == shirt], add, cnn_seed), add // 2
            sets = {
                "real": (xs, ys, None),
                "weights": (xs, ys, (counts.sum() / (10 * np.maximum(counts, 1))).tolist()),
                "oversample": (np.concatenate([xs, copies]), np.concatenate([ys, np.full(add, shirt)]), None),
                "ganworks": (np.concatenate([xs, fake]), np.concatenate([ys, np.full(add, shirt)]), None),
                # the same number added: half ganworks shirts, half the flipped/shifted copies oversample adds
                "ganworks_flips": (np.concatenate([xs, copies[: add - half], fake[:half]]), np.concatenate([ys, np.full(add, shirt)]), None),
            }
            for method, (images, labels, weight) in sets.items():
                recall, balanced = score(fit(images, labels, cnn_seed, weight))
                per_seed[method]["recall"].append(recall)
                per_seed[method]["balanced_accuracy"].append(balanced)
            for other, gains in pairs.items():
                gains.append(per_seed["ganworks_flips"]["recall"][-1] - per_seed[other]["recall"][-1])
            print(f"  seed {seed}, CNN seed {cnn_seed}: shirt recall  " + "  ".join(f"{m} {per_seed[m]['recall'][-1]:.3f}" for m in per_seed), flush=True)
        for method, r in per_seed.items():
            for k, v in r.items():
                results[method][k].append(float(np.mean(v)))
        print("  seed %d: shirt recall  " % seed + "  ".join(f"{m} {results[m]['recall'][-1]:.3f}" for m in results) + f"  (cgan {gan_seconds[-1]:.0f} s)", flush=True)
    out = {}
    print(f"\nfashion-mnist (shirt cut to 60): minority recall and balanced accuracy, mean ± std over seeds {seeds}")
    for method, r in results.items():
        for k, v in r.items():
            out[f"fashion_minority_{k}_{method}" if k == "recall" else f"fashion_balanced_accuracy_{method}"] = round(float(np.mean(v)), 4)
            out[(f"fashion_minority_{k}_{method}" if k == "recall" else f"fashion_balanced_accuracy_{method}") + "_std"] = round(float(np.std(v)), 4)
        print(f"  {method:10s} recall {np.mean(r['recall']):.3f} ± {np.std(r['recall']):.3f}   balanced accuracy {np.mean(r['balanced_accuracy']):.3f} ± {np.std(r['balanced_accuracy']):.3f}")
    out["fashion_cgan_seconds"] = round(float(np.mean(gan_seconds)), 1)
    out["fashion_generated_spread"] = [round(v, 3) for v in spread]
    out["fashion_real_spread"] = round(real_spread, 3)
    for other, gains in pairs.items():
        out[f"fashion_flips_over_{other}_recall_gain"] = round(float(np.mean(gains)), 4)
        out[f"fashion_flips_over_{other}_wins"] = f"{sum(d > 0 for d in gains)} of {len(gains)}"
        print(f"  ganworks_flips − {other}, shirt recall on the same CNN seed: mean {np.mean(gains):+.3f}, ahead in {out[f'fashion_flips_over_{other}_wins']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imblearn-path", default=os.environ.get("GANWORKS_IMBLEARN_PATH", ""), help="folder imbalanced-learn was installed into (--target)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="table seeds (default 5)")
    parser.add_argument("--tables", default="credit_default,breast_cancer", help="which tables (credit_default, breast_cancer)")
    parser.add_argument("--epochs", type=int, default=50, help="ctgan epochs on credit-default (breast-cancer: 6x as many; it is 25x smaller)")
    parser.add_argument("--images", action="store_true", help="also run the Fashion-MNIST part (slow on a CPU)")
    parser.add_argument("--image-seeds", default="0,1,2")
    parser.add_argument("--gan-steps", type=int, default=6000, help="conditional DCGAN steps (batch 64) per image seed")
    parser.add_argument("--cnn-per-class", type=int, default=1000, help="images of each other class the CNN trains on")
    parser.add_argument("--cnn-epochs", type=int, default=5)
    parser.add_argument("--g-lr", type=float, default=G_LR, help="the cGAN's generator learning rate")
    parser.add_argument("--d-lr", type=float, default=D_LR, help="the cGAN's discriminator learning rate")
    parser.add_argument("--cnn-seeds", type=int, default=3, help="CNNs trained per method and image seed (seeds seed, seed+100, ...); their mean is the seed's figure")
    parser.add_argument("--add", type=int, default=940, help="images of the rare class each oversampling method adds (to 1,000 with the 60)")
    parser.add_argument("--samples-png", default="", help="write the first image seed's generated rare-class images (and real ones) to this PNG")
    parser.add_argument("--generators", default="", help="folder of trained cGANs: one for this seed and --gan-steps is loaded from it, "
                        "else it is trained and written there (with --save-every)")
    parser.add_argument("--save-every", type=int, default=0, help="with --generators: also write G_ema every this many steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: two spin against each other on a shared CPU)")
    args = parser.parse_args()
    if args.samples_png and not os.path.isdir(os.path.dirname(os.path.abspath(args.samples_png))):
        parser.error(f"--samples-png {args.samples_png}: its folder does not exist (checked now, not after the training)")
    if min(args.cnn_seeds, args.gan_steps, args.add, args.threads) < 1 or args.save_every < 0 or args.g_lr <= 0 or args.d_lr <= 0:
        parser.error("--cnn-seeds, --gan-steps, --add and --threads must be at least 1, --save-every at least 0, and --g-lr and --d-lr above 0")
    if args.generators:
        os.makedirs(args.generators, exist_ok=True)
    if args.imblearn_path:
        sys.path.insert(0, args.imblearn_path)
    import torch

    from ganworks.tabular.data import load_table

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load = os.getloadavg()
    result = {**provenance(), "seeds": args.seeds, "ctgan_epochs": args.epochs}
    tables = args.tables.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if "credit_default" in tables:
        result.update(table_benchmark("credit_default", load_table("credit-default", split="train"), load_table("credit-default", split="test"),
                                      seeds, args.epochs, 500, 10))
    if "breast_cancer" in tables:
        result.update(table_benchmark("breast_cancer", cut_minority(load_table("breast-cancer", split="train"), 0.10), load_table("breast-cancer", split="test"),
                                      seeds, args.epochs * 6, 50, 5))
    if args.images:
        result.update({"image_seeds": args.image_seeds, "gan_steps": args.gan_steps, "cnn_per_class": args.cnn_per_class, "cnn_epochs": args.cnn_epochs,
                       "cnn_seeds": args.cnn_seeds, "g_lr": args.g_lr, "d_lr": args.d_lr})
        result.update(image_benchmark([int(s) for s in args.image_seeds.split(",")], args.gan_steps, args.cnn_per_class, args.cnn_epochs, args.add, args.samples_png,
                                      args.generators, args.save_every, args.cnn_seeds, args.g_lr, args.d_lr))
    result["train_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_1m_start"], result["load_average_1m_end"] = round(load[0], 2), round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
