"""`ganworks runs [RUN]`: the runs in a store, their snapshots and the metrics evaluations reported; one run in detail."""

from __future__ import annotations

import argparse
import datetime

from rich.console import Console
from rich.table import Table

from ganworks.checkpoint import list_runs, list_snapshots, read_latest, read_manifest
from ganworks.commandline import CommandError, add_store_flags, open_store_from_args
from ganworks.errors import ObjectNotFoundError
from ganworks.layout import SAMPLES, evals_prefix, metrics_set_of_report_key, run_info_key, snapshot_key
from ganworks.output import add_output_flags, count_text, metric_text, print_csv, print_json

# The columns that fit 80 columns; `--wide` adds the publication time, the extractor and every other metric.
SHOWN_METRICS = ("fid", "kid_mean", "precision", "recall")
PRIVACY_METRICS = ("dp_epsilon", "dp_delta")  # shown (ε) for runs trained with --dp-epsilon
SNAPSHOT_FIELDS = ["run", "step", "latest", "images_seen", "created_at", "extractor"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_flags(parser)
    parser.add_argument("name", nargs="?", metavar="RUN", help="show this run in detail: every snapshot, its metrics, its grid and its reports")
    parser.add_argument("--run", help="list only this run's snapshots")
    add_output_flags(parser)
    parser.add_argument("--json", action="store_true", help="the same as --output json")


def evaluation_reports(store, run: str, step: int) -> dict[str, dict]:
    """The evaluator's reports for one snapshot, by metrics-set name."""
    reports = {}
    for info in store.list(evals_prefix(run, step)):
        metrics_set = metrics_set_of_report_key(info.key)
        if metrics_set is not None:
            try:
                reports[metrics_set] = {**store.get_json(info.key), "url": store.url_for(info.key)}
            except (ObjectNotFoundError, ValueError):
                continue
    return reports


def snapshot_rows(store, run: str, detail: bool = False) -> list[dict]:
    """One row per published snapshot of a run (grid and reports too with detail), oldest first."""
    latest = read_latest(store, run)
    rows = []
    for step in list_snapshots(store, run):
        manifest = read_manifest(store, run, step)
        reports = evaluation_reports(store, run, step)
        # A private run's ε spent (and δ) come from the manifest: a consumer sees the guarantee beside the quality.
        metrics: dict[str, float] = {k: v for k, v in manifest.metrics.items() if k in PRIVACY_METRICS}
        extractor = ""
        for report in reports.values():
            metrics.update(report.get("metrics", {}))
            extractor = report.get("extractor", extractor)
        row = {"run": run, "step": step, "latest": step == latest, "images_seen": manifest.images_seen, "created_at": manifest.created_at, "extractor": extractor, "metrics": metrics}
        if detail:
            row["grid"] = store.url_for(snapshot_key(run, step, SAMPLES))
            row["reports"] = [{"metrics_set": name, "url": r["url"], "extractor": r.get("extractor", ""), "num_samples": r.get("num_samples"), "metrics": r.get("metrics", {}),
                               "splits": r.get("splits", {})}
                              for name, r in sorted(reports.items())]
        rows.append(row)
    return rows


def collect(store, only: str | None = None) -> list[dict]:
    return [row for run in list_runs(store) if not only or run == only for row in snapshot_rows(store, run)]


def run_detail(store, run: str) -> dict:
    snapshots = snapshot_rows(store, run, detail=True)
    if not snapshots:
        known = ", ".join(list_runs(store)) or "none"
        raise CommandError(f"RUN {run!r}: no snapshots in {store.url} (runs there: {known})")
    try:
        info = store.get_json(run_info_key(run))
    except (ObjectNotFoundError, ValueError):
        info = {}
    return {"store": store.url, "run": run, "latest_step": read_latest(store, run), "info": info, "snapshots": snapshots}


def run(args: argparse.Namespace) -> int:
    output = "json" if args.json else args.output
    store = open_store_from_args(args)
    if args.name:
        detail = run_detail(store, args.name)
        rows, title = detail["snapshots"], f"run {args.name} in {store.url}"
    else:
        detail, rows, title = None, collect(store, args.run), f"runs in {store.url}"
    if output == "json":
        print_json(detail if detail else {"store": store.url, "snapshots": rows})
    elif output == "csv":
        names = sorted({m for row in rows for m in row["metrics"]})
        print_csv([{**row, **row["metrics"]} for row in rows], SNAPSHOT_FIELDS + (["grid"] if detail else []) + names)
    elif not rows:
        Console().print(f"no snapshots in {store.url}" + (f" for run {args.run!r}" if args.run else ""))
    else:
        console = Console()
        console.print(snapshot_table(rows, title, args.wide, show_run=detail is None))
        if detail:
            print_links(detail)
    return 0


def snapshot_table(rows: list[dict], title: str, wide: bool, show_run: bool = True) -> Table:
    metrics = list(SHOWN_METRICS) + (["dp_epsilon"] if any("dp_epsilon" in row["metrics"] for row in rows) else [])
    if wide:
        metrics += sorted({m for row in rows for m in row["metrics"]} - set(SHOWN_METRICS))
    table = Table(title=title, title_justify="left")
    if show_run:
        table.add_column("run", overflow="fold")
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("images", justify="right", no_wrap=True)
    if wide:
        table.add_column("published", no_wrap=True)
        table.add_column("extractor", overflow="fold")
    for name in metrics:
        table.add_column({"kid_mean": "kid", "dp_epsilon": "ε"}.get(name, name), justify="right", no_wrap=True)
    for row in rows:
        cells = [row["run"]] if show_run else []
        cells += [f"{row['step']}{'*' if row['latest'] else ''}", count_text(row["images_seen"])]
        if wide:
            cells += [datetime.datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M"), row["extractor"] or "–"]
        table.add_row(*cells, *(metric_text(m, row["metrics"].get(m)) for m in metrics))
    table.caption = "* the newest snapshot" + ("" if wide else "; --wide for every metric, --output json for scripts")
    return table


def print_links(detail: dict) -> None:
    """Grids and reports as plain lines: a URL is never cut, and a terminal makes it clickable."""
    for row in detail["snapshots"]:
        print(f"step {row['step']}: grid {row['grid']}")
        for report in row["reports"]:
            print(f"  report {report['metrics_set']}: {report['url']}")
