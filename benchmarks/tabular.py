"""ganworks' ctgan family vs the `ctgan` package (SDV's CTGAN): quality, ML efficacy and training time, in one run.

Both train on the table's "train" split with the same epochs, batch size, pac and seed, on CPU; each then samples
as many rows as the train split has. The quality score is SDMetrics' QualityReport against the train split (by
sdmetrics when installed, else ganworks' port that equals it: evaluator_service/metrics/sdmetrics_quality.py);
then ML efficacy (F1 of the rarer target level, train-on-synthetic vs train-on-real, tested on the held-out
"test" split) and the share of synthetic rows closer to train than to the test split.

The `ctgan` package is for this benchmark only and pins pandas 2.x, which the shared venv does not have: install
it into a folder of its own and name it (it runs in a subprocess with that folder first on sys.path):

    .venv/bin/pip install --no-deps --target /tmp/ctgan-pkgs ctgan==0.12.1 rdt==2.0.0 Faker==40.63.0 \
        pandas==2.3.3 tqdm==4.70.1 pytz==2026.6 tzdata==2026.6
    .venv/bin/python benchmarks/tabular.py --dataset breast-cancer --ctgan-path /tmp/ctgan-pkgs
    .venv/bin/python benchmarks/tabular.py --dataset credit-default --epochs 100 --batch-size 500 --ctgan-path /tmp/ctgan-pkgs

Each model trains once per seed (--seeds, default 0,1,2) and the scores are averaged: one seed's ML efficacy
swings from about 0.1 to 0.8 on breast-cancer for either model, so a single-seed comparison says little.

Targets (issue 13): quality_ganworks ≥ quality_ctgan, seconds_ganworks ≤ seconds_ctgan. Last line: one JSON object
(the means over the seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import numpy as np  # noqa: E402

from ganworks.tabular.data import load_table  # noqa: E402
from evaluator_service.metrics.sdmetrics_quality import quality_score as quality_report  # noqa: E402  (SDMetrics' QualityReport)
from evaluator_service.metrics.table_scores import closer_to_train_share, ml_efficacy  # noqa: E402


def _baseline_worker(dataset: str, epochs: int, batch_size: int, pac: int, seeds: list[int], threads: int, out: str) -> None:
    """Runs in the subprocess: trains the ctgan package's CTGAN once per seed and writes samples and times as JSON."""
    import pandas as pd
    import torch
    from ctgan import CTGAN

    torch.set_num_threads(threads)
    table = load_table(dataset, split="train")
    frame = pd.DataFrame({name: values for name, values in table.columns.items()})
    discrete = [c.name for c in table.schema.columns if c.kind in ("categorical", "boolean")]
    for name in discrete:
        frame[name] = frame[name].astype(str)
    results = []
    for seed in seeds:
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = CTGAN(epochs=epochs, batch_size=batch_size, pac=pac, enable_gpu=False)
        model.set_random_state(seed)
        start, cpu_start = time.perf_counter(), time.process_time()
        model.fit(frame, discrete_columns=discrete)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        sample = model.sample(len(table))
        columns = {c.name: (sample[c.name].astype(str).tolist() if c.name in discrete else sample[c.name].astype(float).tolist()) for c in table.schema.columns}
        results.append({"seconds": seconds, "cpu_seconds": cpu_seconds, "columns": columns})
    with open(out, "w") as f:
        json.dump(results, f)


def _baseline(args: argparse.Namespace, seeds: list[int], threads: int) -> list[tuple[dict[str, np.ndarray], float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ctgan.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (args.ctgan_path, ROOT) if p))
        command = [sys.executable, __file__, "--baseline-worker", out, "--dataset", args.dataset, "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--pac", str(args.pac), "--seeds", ",".join(map(str, seeds)), "--threads", str(threads)]
        subprocess.run(command, env=env, check=True)
        with open(out) as f:
            results = json.load(f)
    return [({name: np.array(values, dtype=object if isinstance(values[0], str) else np.float64) for name, values in r["columns"].items()}, r["seconds"], r["cpu_seconds"])
            for r in results]


def _as_table_kinds(columns: dict[str, np.ndarray], schema) -> dict[str, np.ndarray]:
    """The baseline's text columns back in ganworks' representation (booleans as bool)."""
    out = dict(columns)
    for column in schema.columns:
        if column.kind == "boolean":
            out[column.name] = np.array([str(v) == "True" for v in columns[column.name]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast-cancer", help="credit-default, credit-card or breast-cancer")
    parser.add_argument("--epochs", type=int, default=300, help="CTGAN's default; both models train this many")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--pac", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; each model trains once per seed, the scores are averaged")
    # One thread: these MLPs are too small for two to help, and on a machine with any other load two OpenMP threads
    # spin against each other (credit-default, 20 epochs: 10 s with one thread, 25-90 s with two on 2 shared cores).
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both models (default 1)")
    parser.add_argument("--ctgan-path", default=os.environ.get("GANWORKS_CTGAN_PATH", ""), help="folder the ctgan package was installed into (--target)")
    parser.add_argument("--no-privacy", dest="privacy", action="store_false", help="skip the closer-to-train share (rows x rows distances)")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.baseline_worker:
        _baseline_worker(args.dataset, args.epochs, args.batch_size, args.pac, seeds, args.threads, args.baseline_worker)
        return

    import torch

    from trainer.ctgan import fit

    torch.set_num_threads(args.threads)
    train, test = load_table(args.dataset, split="train"), load_table(args.dataset, split="test")
    ours = []
    for seed in seeds:
        start, cpu_start = time.perf_counter(), time.process_time()
        model = fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=seed, pac=args.pac)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        ours.append((model.sample(len(train), seed=seed), seconds, cpu))
    theirs = [(_as_table_kinds(columns, train.schema), seconds, cpu) for columns, seconds, cpu in _baseline(args, seeds, args.threads)]

    result = {"dataset": args.dataset, "epochs": args.epochs, "batch_size": args.batch_size, "rows": len(train), "seeds": seeds}
    # One seed's ML efficacy swings widely (from 0.1 to 0.8 on breast-cancer for either model): compare means.
    # On a shared machine wall seconds follow the load of the moment; CPU seconds are the fairer comparison.
    for name, runs in (("ganworks", ours), ("ctgan", theirs)):
        scores = []
        for seed, (synthetic, seconds, cpu) in zip(seeds, runs):
            quality = quality_report(train.columns, synthetic, train.schema)
            efficacy = ml_efficacy(train.columns, synthetic, test.columns, train.schema)
            share = closer_to_train_share(synthetic, train.columns, test.columns, train.schema) if args.privacy else float("nan")
            scores.append((quality["overall"], efficacy["ratio"], share, seconds, cpu))
            print(f"{name:9s} seed {seed}  quality {quality['overall']:.3f} (shapes {quality['column_shapes']:.3f}, pairs {quality['column_pair_trends']:.3f})  "
                  f"F1 synthetic {efficacy['f1_synthetic']:.3f} / real {efficacy['f1_real']:.3f}  closer-to-train {share:.3f}  {seconds:.1f} s ({cpu:.1f} CPU s)", flush=True)
        q, e, p, s_wall, s_cpu = (float(np.mean(column)) for column in zip(*scores))
        result.update({f"quality_{name}": round(q, 4), f"efficacy_{name}": round(e, 4), f"closer_to_train_{name}": round(p, 4),
                       f"seconds_{name}": round(s_wall, 2), f"cpu_seconds_{name}": round(s_cpu, 2),
                       f"efficacy_{name}_per_seed": [round(x[1], 3) for x in scores]})
    print(json.dumps({**result, **provenance()}))


if __name__ == "__main__":
    main()
