"""`ganworks report RUN`: one self-contained HTML page (and its PNGs) to see at a glance how a run went.

Metric curves over steps come from the evaluator's reports, training curves from `stats.jsonl`, and the sample
grid of every snapshot sits in one strip, oldest first, so a collapse or a plateau shows without a server:
the page embeds its images and opens from a file in any browser.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import importlib.util
import pathlib
import re
from typing import Iterable

from ganworks.checkpoint import read_stats
from ganworks.commandline import add_store_flags, open_store_from_args
from ganworks.errors import GanworksError, ObjectNotFoundError
from ganworks.layout import SAMPLES, snapshot_key
from orchestration.runs import run_detail

# Training panels: a title and the stats.jsonl keys drawn on it. Any other number in stats.jsonl (augmentation
# probability p, a privacy budget ε, …) gets a panel of its own, so a new statistic shows up without a change here.
TRAINING_PANELS = (
    ("losses", ("loss_g", "loss_d")),
    ("discriminator outputs (mean logit)", ("d_real", "d_fake")),
    ("gradient norms", ("grad_norm_g", "grad_norm_d")),
    ("images per second", ("images_per_second",)),
)
FIRST_METRICS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
NOT_CURVES = {"step", "time", "images_seen"}
PANEL_NAMES = {"augment_p": "augmentation probability p", "aug_p": "augmentation probability p", "epsilon": "privacy budget ε", "dp_epsilon": "privacy budget ε"}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_part(name: str) -> str:
    """A piece of a file name from any metric or statistic name a store can hold ('../x', quotes, HTML, '/')."""
    return _UNSAFE.sub("_", name)[:48].strip(".") or "x"


def plot_text(text: str, limit: int = 80) -> str:
    """Text for a matplotlib title or legend: '$' would start mathtext (and a bad formula fails the whole page)."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


class ReportError(GanworksError):
    """The report cannot be written (a missing optional package)."""


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_flags(parser)
    parser.add_argument("run", metavar="RUN", help="the run to report on")
    parser.add_argument("--out", help="folder for index.html and the PNGs (default ./ganworks-reports/RUN)")


def run(args: argparse.Namespace) -> int:
    store = open_store_from_args(args)
    page = write_report(store, args.run, pathlib.Path(args.out or f"ganworks-reports/{args.run}"))
    print(f"report on run {args.run}: {page.resolve()}")
    return 0


def metric_series(snapshots: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """metric -> metrics set -> [(step, value)]: one curve per metric, a line per way it was measured."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for snapshot in snapshots:
        for report in snapshot["reports"]:
            for name, value in report["metrics"].items():
                if isinstance(value, (int, float)):
                    series.setdefault(name, {}).setdefault(report["metrics_set"], []).append((snapshot["step"], float(value)))
    # The metrics people compare runs by come first; the rest follow by name.
    return dict(sorted(series.items(), key=lambda item: (FIRST_METRICS.index(item[0]) if item[0] in FIRST_METRICS else len(FIRST_METRICS), item[0])))


def metric_splits(snapshots: list[dict]) -> dict[str, str]:
    """metric -> the split(s) of real data its numbers were computed with, as the evaluator's reports say ("held_out"
    for a private run); metrics of reports older than the `splits` field are absent."""
    found: dict[str, set[str]] = {}
    for snapshot in snapshots:
        for report in snapshot["reports"]:
            for name, split in (report.get("splits") or {}).items():
                found.setdefault(name, set()).add(str(split))
    return {name: ", ".join(sorted(splits)) for name, splits in found.items()}


def training_panels(stats: list[dict]) -> list[tuple[str, list[str]]]:
    present = {k for line in stats for k, v in line.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} - NOT_CURVES
    panels = [(title, [k for k in keys if k in present]) for title, keys in TRAINING_PANELS]
    known = {k for _, keys in TRAINING_PANELS for k in keys}
    panels += [(PANEL_NAMES.get(k, k), [k]) for k in sorted(present - known)]
    return [(title, keys) for title, keys in panels if keys]


def _plot(title: str, lines: Iterable[tuple[str, list[tuple[int, float]]]], path: pathlib.Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(4.2, 2.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    labelled = False
    for label, points in lines:
        xs, ys = zip(*sorted(points)) if points else ((), ())
        axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, linewidth=1.4, label=plot_text(label))
        labelled = labelled or bool(label)
    axes.set_title(plot_text(title), fontsize=10)
    axes.set_xlabel("step", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if labelled:
        axes.legend(fontsize=7)
    figure.savefig(path, format="png")


def _img(path: pathlib.Path, css_class: str, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(store, run: str, out: pathlib.Path) -> pathlib.Path:
    """Writes out/index.html and its PNGs (metric-*.png, training-*.png, grid-*.png); returns the page's path."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ReportError("the report plots with matplotlib, which is not installed: pip install 'ganworks[report]' (make venv installs it)")
    detail = run_detail(store, run)
    snapshots, stats = detail["snapshots"], read_stats(store, run)
    out.mkdir(parents=True, exist_ok=True)
    series = metric_series(snapshots)
    single_set = len({s for by_set in series.values() for s in by_set}) <= 1
    splits = metric_splits(snapshots)

    metric_figures = []
    for index, (name, by_set) in enumerate(series.items()):
        path = out / f"metric-{index:03d}-{file_part(name)}.png"  # numbered: two names may share a file_part
        _plot(name, [("" if single_set else metrics_set, points) for metrics_set, points in by_set.items()], path)
        split = splits.get(name, "")
        caption = f"<figcaption>computed with split: {html.escape(split)}</figcaption>" if split else ""
        metric_figures.append(f'<figure class="metric" data-metric="{html.escape(name)}" data-split="{html.escape(split)}">{_img(path, "curve", name)}{caption}</figure>')

    training_figures = []
    for index, (title, keys) in enumerate(training_panels(stats)):
        path = out / f"training-{index}-{file_part(keys[0])}.png"
        _plot(title, [(k if len(keys) > 1 else "", [(line["step"], float(line[k])) for line in stats if isinstance(line.get(k), (int, float)) and "step" in line]) for k in keys], path)
        training_figures.append(f'<figure class="training" data-panel="{html.escape(title)}">{_img(path, "curve", title)}</figure>')

    grid_figures = []
    for snapshot in snapshots:
        step = snapshot["step"]
        path = out / f"grid-{step:09d}.png"
        try:
            path.write_bytes(store.get_bytes(snapshot_key(run, step, SAMPLES)))
        except ObjectNotFoundError:
            continue
        fid = next((r["metrics"]["fid"] for r in snapshot["reports"] if "fid" in r["metrics"]), None)
        caption = f"step {step}" + (f" · FID {fid:.3g}" if fid is not None else "")
        grid_figures.append(f'<figure class="grid" data-step="{step}">{_img(path, "grid", caption)}<figcaption>{caption}</figcaption></figure>')

    info = detail["info"]
    facts = [f"store {detail['store']}", f"{len(snapshots)} snapshots, newest step {detail['latest_step']}"]
    facts += [f"{key} {info[key]}" for key in ("architecture", "dataset_id", "loss") if info.get(key)]
    page = out / "index.html"
    page.write_text(_PAGE.format(
        run=html.escape(run), facts=" · ".join(html.escape(str(f)) for f in facts),
        written=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        metrics="\n".join(metric_figures) or "<p>No evaluation reports yet: the evaluator writes them under evals/ as it scores snapshots.</p>",
        training="\n".join(training_figures) or "<p>No stats.jsonl for this run.</p>",
        grids="\n".join(grid_figures) or "<p>No sample grids.</p>",
    ))
    return page


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ganworks run {run}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
h1 {{ margin-bottom: 0.2em; }} .facts {{ color: #555; font-size: 0.9em; }}
.curves {{ display: flex; flex-wrap: wrap; gap: 0.5em; }}
figure {{ margin: 0; }} img.curve {{ width: 390px; border: 1px solid #eee; }}
.strip {{ display: flex; gap: 0.8em; overflow-x: auto; padding-bottom: 0.5em; }}
img.grid {{ height: 210px; image-rendering: pixelated; border: 1px solid #ccc; }}
figcaption {{ text-align: center; font-size: 0.85em; color: #444; }}
</style></head>
<body>
<h1>Run {run}</h1>
<p class="facts">{facts} · written {written}</p>
<h2>Samples of every snapshot</h2>
<div class="strip">
{grids}
</div>
<h2>Quality over training</h2>
<div class="curves">
{metrics}
</div>
<h2>Training</h2>
<div class="curves">
{training}
</div>
</body></html>
"""
