"""How commands print for people and for scripts: `--output table|json|csv`, `--wide`, and numbers rounded to what they mean.

The JSON and CSV shapes are documented in docs/design/output.md ("Output for scripts") and only grow: a script that reads
today's fields keeps working. Tables go to stdout for people; progress and warnings go to stderr, so
`--output json` gives stdout that parses whatever else happens.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any, Iterable

FORMATS = ("table", "json", "csv")
# Metrics that are fractions in [0, 1]: two decimals is what a few thousand samples can tell apart.
FRACTIONS = frozenset({"precision", "recall", "density", "coverage", "class_coverage", "memorization_rate", "duplicate_fraction", "mode_coverage_classes"})


def add_output_flags(parser: argparse.ArgumentParser, formats: Iterable[str] = FORMATS, wide: bool = True) -> None:
    formats = tuple(formats)
    parser.add_argument("-o", "--output", choices=formats, default="table", help=f"{' | '.join(formats)} (default table; json and csv are for scripts: docs/design/output.md)")
    if wide:
        parser.add_argument("--wide", action="store_true", help="every column (default: the ones that matter, to fit 80 columns)")


def print_json(value: Any) -> None:
    # NaN and infinity are not JSON: a script's parser would fail on them, so they become null.
    print(json.dumps(_finite(value), indent=2))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def print_csv(rows: list[dict[str, Any]], columns: list[str]) -> None:
    writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def metric_text(name: str, value: float | None) -> str:
    """A metric as a person reads it: fractions to two decimals, the rest to three significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if name in FRACTIONS else f"{value:.3g}"


def count_text(value: int) -> str:
    """1234567 → 1.2M: a table cell, not an audit."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)
