"""`ganworks demo`: train, publish, serve and evaluate for a few minutes, then show what came out."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ganworks.commandline import stop_on_sigterm
from ganworks.generator_client import GeneratorClient
from ganworks.images import grid_png
from orchestration.local import LocalSystem, store_env_from_args, SystemOptions
from orchestration.report import write_report
from orchestration.up import add_system_flags, options_from_args, print_addresses

DEMO = SystemOptions(steps=900, snapshot_every=300, num_workers=2)
TABLE_METRICS = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "mode_coverage_classes", "memorization_rate")
# --tabular: CTGAN on ISLP's Default table (10,000 card holders, 3.3% defaulted), about 100 epochs of 8,000 rows.
TABULAR = SystemOptions(run="credit-demo", dataset="credit-default", model="ctgan", conditional=False, steps=1600, snapshot_every=400, batch_size=500, eval_samples=2000)
TABULAR_METRICS = ("table_quality", "column_shapes", "column_pair_trends", "ml_efficacy", "f1_synthetic", "f1_real", "closer_to_train_share")
DEFAULTED = 1000


def configure(parser: argparse.ArgumentParser) -> None:
    add_system_flags(parser, DEMO)
    parser.add_argument("--steps", type=int, help=f"training steps (default {DEMO.steps}, with --tabular {TABULAR.steps}: a few minutes on 2 CPU cores)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds (default 900)")
    parser.add_argument("--tabular", dest="table_demo", action="store_true",
                        help=f"a table instead of images: CTGAN on credit-default (--run {TABULAR.run}, --batch-size {TABULAR.batch_size} unless given), "
                             f"then {DEFAULTED} defaulted customers from the generator and the quality table")


def sample_grid(address: str, run: str, num_classes: int, per_class: int = 8) -> tuple[np.ndarray, int]:
    """Asks the generator like a backend would: one call, uint8 pixels; a column per class when conditional."""
    rows = num_classes or 8
    labels = [c for _ in range(per_class) for c in range(num_classes)] if num_classes else []
    with GeneratorClient(address) as client:
        batch = client.generate(run, rows * per_class, seed=2026, labels=labels, output="uint8")
    return batch.images, batch.version


def measure_latency(address: str, run: str, calls: int = 200, concurrency: int = 8) -> dict[str, float]:
    """Single-sample calls from concurrent clients, as backends make them: p50/p99 in ms and throughput."""
    with GeneratorClient(address, timeout=30) as client:

        def one(i: int) -> float:
            started = time.perf_counter()
            client.generate(run, 1, seed=i, output="png")
            return time.perf_counter() - started

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            latencies = np.array(list(pool.map(one, range(calls))))
        elapsed = time.perf_counter() - started
    return {"calls": calls, "concurrency": concurrency, "p50_ms": float(np.percentile(latencies, 50) * 1e3), "p99_ms": float(np.percentile(latencies, 99) * 1e3), "requests_per_s": calls / elapsed}


def train_with_progress(console: Console, system: LocalSystem, deadline: float) -> None:
    columns = (TextColumn("training"), BarColumn(), TextColumn("step {task.completed:.0f}/{task.total:.0f}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=system.options.steps, info="starting Ray…")
        while system.trainer_running:
            if time.monotonic() > deadline:
                raise TimeoutError("the demo ran out of time while training; see the trainer log")
            system.check_alive()
            status = system.status()
            info = f"{status.images_per_second or 0:.0f} img/s · snapshot {status.latest_snapshot if status.latest_snapshot is not None else '–'}"
            if status.latest_fid is not None:
                info += f" · FID {status.latest_fid:.3g}"
            progress.update(task, completed=status.step or 0, info=info)
            time.sleep(1)
        progress.update(task, completed=system.options.steps)
    code = system.processes["trainer"].exit_code()
    if code != 0:
        raise RuntimeError(f"the trainer exited with {code}; its log ends:\n{system.processes['trainer'].log_tail(30)}")


def summary_table(reports: dict[int, dict], extractor: str) -> Table:
    table = Table(title=f"quality of each snapshot (features: {extractor})")
    table.add_column("step", justify="right")
    shown = [m for m in TABLE_METRICS if any(m in r.get("metrics", {}) for r in reports.values())]
    for name in shown:
        table.add_column(name, justify="right")
    for step, report in sorted(reports.items()):
        metrics = report.get("metrics", {})
        table.add_row(str(step), *(f"{metrics[m]:.4g}" if m in metrics else "–" for m in shown))
    return table


def tabular_options(args: argparse.Namespace) -> SystemOptions:
    """The demo's system for --tabular: the image defaults of the shared flags replaced by the table's."""
    options = options_from_args(args, steps=args.steps or TABULAR.steps)
    for name in ("run", "dataset", "batch_size", "snapshot_every"):
        if getattr(args, name) == getattr(DEMO, name):  # the flag was left at the image demo's default
            setattr(options, name, getattr(TABULAR, name))
    options.model, options.conditional = TABULAR.model, False
    return options


def tabular_summary(reports: dict[int, dict]) -> Table:
    table = Table(title="quality of each snapshot (SDMetrics definitions; closer-to-train: privacy, about 0.8 without copying)")
    table.add_column("step", justify="right")
    for name in TABULAR_METRICS:
        table.add_column(name, justify="right")
    for step, report in sorted(reports.items()):
        metrics = report.get("metrics", {})
        table.add_row(str(step), *(f"{metrics[m]:.3f}" if m in metrics else "–" for m in TABULAR_METRICS))
    return table


def ask_conditioned(address: str, run: str, workdir) -> tuple[dict, str]:
    """What a bank's test system asks for: DEFAULTED rows with target = Yes (the defaulters), as CSV and as Arrow."""
    with GeneratorClient(address) as client:
        described = json.loads(client.describe(run).columns_json)
        target = described["target"]
        levels = next(c["levels"] for c in described["columns"] if c["name"] == target)
        condition = f"{target}={'Yes' if 'Yes' in levels else levels[-1]}"
        csv_rows = client.generate_records(run, DEFAULTED, seed=2026, condition=condition, format="csv")
        arrow_rows = client.generate_records(run, DEFAULTED, seed=2026, condition=condition)
    path = workdir / "conditioned.csv"
    path.write_bytes(csv_rows.data)
    table = arrow_rows.table
    value = condition.partition("=")[2]
    means = {c["name"]: float(table.column(c["name"]).to_numpy().mean()) for c in described["columns"] if c["kind"] in ("continuous", "integer")}
    return {"condition": condition, "rows": table.num_rows, "version": arrow_rows.version, "matching": sum(v == value for v in table.column(target).to_pylist()), "means": means}, str(path)


def start_and_train(console: Console, system: LocalSystem, deadline: float) -> int:
    """Both demos' first half: the system up, its addresses shown, training to the end; the newest snapshot's step."""
    from ganworks.checkpoint import read_latest

    with console.status("starting Ray and the trainer, the generator and the evaluator…"):
        system.start()
    print_addresses(console, system)
    train_with_progress(console, system, deadline)
    latest = read_latest(system.store(), system.options.run)
    if latest is None:
        raise RuntimeError(f"the trainer finished without publishing a snapshot to {system.options.store}; see {system.logs / 'trainer.log'}")
    return latest


def run_tabular(args: argparse.Namespace) -> int:
    console = Console()
    options = tabular_options(args)
    system = LocalSystem(options, env=store_env_from_args(args))
    stop_on_sigterm()
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    try:
        latest = start_and_train(console, system, deadline)
        with console.status(f"waiting for the evaluator to report snapshot {latest}…"):
            report = system.wait_for_evaluation(latest, max(30.0, deadline - time.monotonic()))
        with console.status(f"asking the generator for {DEFAULTED} defaulted customers over gRPC…"):
            asked, csv_path = ask_conditioned(system.generator_address, options.run, system.workdir)
        reports = system.reports()
        report_path = system.write_json("report.json", {"run": options.run, "store": options.store, "latest_step": latest, "evaluation": report,
                                                        "evaluations": {str(k): v for k, v in reports.items()}, "conditioned": asked, "seconds": time.monotonic() - started})
    finally:
        system.stop()
    console.print(tabular_summary(reports))
    means = ", ".join(f"{name} {value:.4g}" for name, value in asked["means"].items())
    console.print(f"{asked['rows']} synthetic rows asked with {asked['condition']} (snapshot {asked['version']}): {asked['matching']} have it; means: {means}")
    console.print(f"the rows as CSV: [bold]{csv_path}[/]")
    console.print(f"evaluation report: [bold]{report_path}[/]")
    console.print(f"snapshots and reports in the store: {options.store}  (list them: ganworks runs --store {options.store})")
    console.print(f"done in {time.monotonic() - started:.0f}s")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.table_demo:
        return run_tabular(args)
    console = Console()
    options = options_from_args(args, steps=args.steps or DEMO.steps)
    system = LocalSystem(options, env=store_env_from_args(args))
    stop_on_sigterm()
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    try:
        latest = start_and_train(console, system, deadline)
        store = system.store()
        from ganworks.checkpoint import read_manifest

        manifest = read_manifest(store, options.run, latest)
        with console.status(f"waiting for the evaluator to report snapshot {latest}…"):
            report = system.wait_for_evaluation(latest, max(30.0, deadline - time.monotonic()))
        with console.status("calling the generator over gRPC like a backend…"):
            pixels, version = sample_grid(system.generator_address, options.run, manifest.num_classes)
            latency = measure_latency(system.generator_address, options.run)
        grid_path = system.workdir / "samples.png"
        grid_path.write_bytes(grid_png(pixels, columns=manifest.num_classes or None, scale=2))
        reports = system.reports()
        report_path = system.write_json("report.json", {"run": options.run, "store": options.store, "latest_step": latest, "served_version": version, "evaluation": report, "evaluations": {str(k): v for k, v in reports.items()}, "serving": latency, "seconds": time.monotonic() - started})
        with console.status("writing the run report…"):
            page = write_report(store, options.run, system.workdir / "report")
    finally:
        system.stop()
    console.print(summary_table(reports, report.get("extractor", "?")))
    serving = Table(title="serving (single-sample gRPC calls, 8 concurrent clients)")
    for col in ("calls", "p50 ms", "p99 ms", "req/s"):
        serving.add_column(col, justify="right")
    serving.add_row(str(latency["calls"]), f"{latency['p50_ms']:.1f}", f"{latency['p99_ms']:.1f}", f"{latency['requests_per_s']:.0f}")
    console.print(serving)
    console.print(f"sample grid (snapshot {version}, a column per class): [bold]{grid_path}[/]")
    console.print(f"run report (metric and training curves, every snapshot's grid): [bold]{page}[/]")
    console.print(f"evaluation report: [bold]{report_path}[/]")
    console.print(f"snapshots and reports in the store: {options.store}  (list them: ganworks runs --store {options.store})")
    console.print(f"done in {time.monotonic() - started:.0f}s")
    return 0
