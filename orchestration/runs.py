"""`ganworks runs`: the runs in a store, their snapshots and the metrics evaluations reported."""

from __future__ import annotations

import argparse
import datetime
import json

from rich.console import Console
from rich.table import Table

from ganworks.checkpoint import list_runs, list_snapshots, read_latest, read_manifest
from ganworks.commandline import add_store_flags, open_store_from_args
from ganworks.errors import ObjectNotFoundError
from ganworks.layout import evals_prefix, metrics_set_of_report_key

SHOWN_METRICS = ("fid", "kid_mean", "precision", "recall", "coverage")


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_flags(parser)
    parser.add_argument("--run", help="show only this run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def evaluation_reports(store, run: str, step: int) -> dict[str, dict]:
    """The evaluator's reports for one snapshot, by metrics-set name."""
    reports = {}
    for info in store.list(evals_prefix(run, step)):
        metrics_set = metrics_set_of_report_key(info.key)
        if metrics_set is not None:
            try:
                reports[metrics_set] = store.get_json(info.key)
            except (ObjectNotFoundError, ValueError):
                continue
    return reports


def collect(store, only: str | None = None) -> list[dict]:
    rows = []
    for run in list_runs(store):
        if only and run != only:
            continue
        latest = read_latest(store, run)
        for step in list_snapshots(store, run):
            manifest = read_manifest(store, run, step)
            metrics: dict[str, float] = {}
            extractor = ""
            for report in evaluation_reports(store, run, step).values():
                metrics.update(report.get("metrics", {}))
                extractor = report.get("extractor", extractor)
            rows.append({"run": run, "step": step, "latest": step == latest, "images_seen": manifest.images_seen, "created_at": manifest.created_at, "extractor": extractor, "metrics": metrics})
    return rows


def run(args: argparse.Namespace) -> int:
    store = open_store_from_args(args)
    rows = collect(store, args.run)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = Console()
    if not rows:
        console.print(f"no snapshots in {store.url}" + (f" for run {args.run!r}" if args.run else ""))
        return 0
    table = Table(title=f"runs in {store.url}")
    for col in ("run", "step", "images", "published", "extractor", *SHOWN_METRICS):
        table.add_column(col, justify="right" if col not in ("run", "extractor", "published") else "left")
    for row in rows:
        when = datetime.datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        values = [f"{row['metrics'][m]:.4g}" if m in row["metrics"] else "–" for m in SHOWN_METRICS]
        table.add_row(row["run"], f"{row['step']}{' *' if row['latest'] else ''}", str(row["images_seen"]), when, row["extractor"] or "–", *values)
    console.print(table)
    return 0
