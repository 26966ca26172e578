"""ganworks' ctgan family vs the `ctgan` package (SDV's CTGAN): quality, ML efficacy and training time, in one run.

Both train on the table's "train" split with the same epochs, batch size, pac and seed, on CPU; each then samples
as many rows as the train split has. Scores use ganworks.tabular.quality (SDMetrics' definitions): the quality
score against the train split, ML efficacy (F1 of the rarer target level, train-on-synthetic vs train-on-real,
tested on the held-out "test" split) and the share of synthetic rows closer to train than to the test split.

The `ctgan` package is for this benchmark only and pins pandas 2.x, which the shared venv does not have: install
it into a folder of its own and name it (it runs in a subprocess with that folder first on sys.path):

    .venv/bin/pip install --no-deps --target /tmp/ctgan-pkgs ctgan==0.12.1 rdt==2.0.0 Faker==40.63.0 \
        pandas==2.3.3 tqdm==4.70.1 pytz==2026.6 tzdata==2026.6
    .venv/bin/python benchmarks/tabular.py --dataset breast-cancer --epochs 30 --ctgan-path /tmp/ctgan-pkgs

Targets (issue 13): quality_ganworks ≥ quality_ctgan, seconds_ganworks ≤ seconds_ctgan. Last line: one JSON object.
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

import numpy as np  # noqa: E402

from ganworks.tabular.data import load_table  # noqa: E402
from ganworks.tabular.quality import closer_to_train_share, ml_efficacy, quality_report  # noqa: E402


def _baseline_worker(dataset: str, epochs: int, batch_size: int, pac: int, seed: int, out: str) -> None:
    """Runs in the subprocess: trains the ctgan package's CTGAN and writes its samples and time as JSON."""
    import pandas as pd
    import torch
    from ctgan import CTGAN

    table = load_table(dataset, split="train")
    frame = pd.DataFrame({name: values for name, values in table.columns.items()})
    discrete = [c.name for c in table.schema.columns if c.kind in ("categorical", "boolean")]
    for name in discrete:
        frame[name] = frame[name].astype(str)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = CTGAN(epochs=epochs, batch_size=batch_size, pac=pac, enable_gpu=False)
    model.set_random_state(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(frame, discrete_columns=discrete)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    sample = model.sample(len(table))
    columns = {c.name: (sample[c.name].astype(str).tolist() if c.name in discrete else sample[c.name].astype(float).tolist()) for c in table.schema.columns}
    with open(out, "w") as f:
        json.dump({"seconds": seconds, "cpu_seconds": cpu_seconds, "columns": columns}, f)


def _baseline(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ctgan.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (args.ctgan_path, ROOT) if p))
        command = [sys.executable, __file__, "--baseline-worker", out, "--dataset", args.dataset, "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--pac", str(args.pac), "--seed", str(args.seed)]
        subprocess.run(command, env=env, check=True)
        with open(out) as f:
            result = json.load(f)
    return {name: np.array(values, dtype=object if isinstance(values[0], str) else np.float64) for name, values in result["columns"].items()}, result["seconds"], result["cpu_seconds"]


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
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--pac", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ctgan-path", default=os.environ.get("GANWORKS_CTGAN_PATH", ""), help="folder the ctgan package was installed into (--target)")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        _baseline_worker(args.dataset, args.epochs, args.batch_size, args.pac, args.seed, args.baseline_worker)
        return

    import torch

    from ganworks.tabular.synthesizer import fit

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    train, test = load_table(args.dataset, split="train"), load_table(args.dataset, split="test")
    start, cpu_start = time.perf_counter(), time.process_time()
    model = fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, pac=args.pac)
    seconds_ganworks, cpu_ganworks = time.perf_counter() - start, time.process_time() - cpu_start
    ours = model.sample(len(train), seed=args.seed)
    theirs, seconds_ctgan, cpu_ctgan = _baseline(args)
    theirs = _as_table_kinds(theirs, train.schema)

    result = {"dataset": args.dataset, "epochs": args.epochs, "batch_size": args.batch_size, "rows": len(train)}
    # On a shared machine wall seconds follow the load of the moment; CPU seconds are the fairer comparison.
    for name, synthetic, seconds, cpu in (("ganworks", ours, seconds_ganworks, cpu_ganworks), ("ctgan", theirs, seconds_ctgan, cpu_ctgan)):
        quality = quality_report(train.columns, synthetic, train.schema)
        efficacy = ml_efficacy(train.columns, synthetic, test.columns, train.schema)
        share = closer_to_train_share(synthetic, train.columns, test.columns, train.schema)
        print(f"{name:9s} quality {quality['overall']:.3f} (shapes {quality['column_shapes']:.3f}, pairs {quality['column_pair_trends']:.3f})  "
              f"F1 synthetic {efficacy['f1_synthetic']:.3f} / real {efficacy['f1_real']:.3f}  closer-to-train {share:.3f}  {seconds:.1f} s ({cpu:.1f} CPU s)", flush=True)
        result.update({f"quality_{name}": round(quality["overall"], 4), f"efficacy_{name}": round(efficacy["ratio"], 4),
                       f"closer_to_train_{name}": round(share, 4), f"seconds_{name}": round(seconds, 2), f"cpu_seconds_{name}": round(cpu, 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
