"""SDMetrics' single-table QualityReport score (sdmetrics 0.32), computed by the `sdmetrics` package or, without it, by
ganworks' own code that a test proves equal to it within 1e-3 (tests/evaluator/test_table_quality_sdmetrics.py).

The report's definitions, as sdmetrics 0.32 applies them (sdmetrics/reports/single_table/):
- column shapes: KSComplement (1 − KS statistic, values rounded to 15 decimals) for numbers, TVComplement for
  categories and booleans; their mean.
- column pair trends: CorrelationSimilarity (1 − |ρ_real − ρ_syn| / 2, Pearson) for two numbers, counted only when
  the real |ρ| > 0.5; ContingencySimilarity (1 − total variation of the joint frequencies) otherwise, counted only
  when the real pair's Cramér's V > 0.3. A number paired with a category is binned into 10 bins, the real column on
  the real column's histogram edges and the synthetic column on its own (np.histogram_bin_edges, np.digitize).
- the score: the mean of the two properties, ignoring one that has no counted pair.
"""

from __future__ import annotations

import itertools
import math
from importlib import metadata

import numpy as np
from scipy.stats import ks_2samp
from scipy.stats.contingency import association

from ganworks.tabular.data import NUMERIC_KINDS, Schema

REFERENCE_VERSION = "0.32.0"  # the sdmetrics release the fallback is tested against
CORRELATION_THRESHOLD, ASSOCIATION_THRESHOLD = 0.5, 0.3  # sdmetrics.reports.utils defaults
_DECIMALS = 15


def sdmetrics_version() -> str | None:
    """The installed sdmetrics version, or None when the package is not installed."""
    try:
        return metadata.version("sdmetrics")
    except metadata.PackageNotFoundError:
        return None


def quality_score(real: dict, synthetic: dict, schema: Schema, engine: str = "auto") -> dict[str, float]:
    """{"overall", "column_shapes", "column_pair_trends"} of SDMetrics' QualityReport on the same rows.

    engine: "sdmetrics" (the package itself), "ganworks" (the fallback) or "auto" (sdmetrics when installed).
    A property with nothing to count (no pair above the thresholds) is NaN, as in SDMetrics.
    """
    if engine == "auto":
        engine = "sdmetrics" if sdmetrics_version() is not None else "ganworks"
    if engine == "sdmetrics":
        return _by_sdmetrics(real, synthetic, schema)
    if engine != "ganworks":
        raise ValueError(f"engine must be auto, sdmetrics or ganworks, got {engine!r}")
    shapes = [_shape(c.kind, real[c.name], synthetic[c.name]) for c in schema.columns]
    pairs = [_pair_trend(a, b, real, synthetic) for a, b in itertools.combinations(schema.columns, 2)]
    return _combine(_nanmean(shapes), _nanmean(pairs))


def _combine(shapes: float, trends: float) -> dict[str, float]:
    return {"overall": _nanmean([shapes, trends]), "column_shapes": shapes, "column_pair_trends": trends}


def _nanmean(values) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _shape(kind: str, real: np.ndarray, synthetic: np.ndarray) -> float:
    if kind in NUMERIC_KINDS:
        r, s = _finite(real), _finite(synthetic)
        if not len(r) or not len(s):
            return math.nan
        return 1.0 - float(ks_2samp(np.round(r, _DECIMALS), np.round(s, _DECIMALS)).statistic)
    return _tv_complement(_text(real), _text(synthetic))


def _tv_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    levels = np.union1d(real, synthetic)
    f_real = np.array([np.mean(real == level) for level in levels])
    f_syn = np.array([np.mean(synthetic == level) for level in levels])
    return 1.0 - 0.5 * float(np.abs(f_real - f_syn).sum())


def _pair_trend(a, b, real: dict, synthetic: dict) -> float:
    ra, rb, sa, sb = real[a.name], real[b.name], synthetic[a.name], synthetic[b.name]
    a_num, b_num = a.kind in NUMERIC_KINDS, b.kind in NUMERIC_KINDS
    if a_num and b_num:
        r_rho, s_rho = _pearson(ra, rb), _pearson(sa, sb)
        if math.isnan(r_rho) or math.isnan(s_rho) or abs(r_rho) <= CORRELATION_THRESHOLD:
            return math.nan
        return 1.0 - abs(r_rho - s_rho) / 2.0
    # Numbers paired with a category are binned, each table's column on its own histogram (as SDMetrics 0.32 does).
    ra, sa = (_binned(ra), _binned(sa)) if a_num else (_text(ra), _text(sa))
    rb, sb = (_binned(rb), _binned(sb)) if b_num else (_text(rb), _text(sb))
    real_pairs, syn_pairs = _joint(ra, rb), _joint(sa, sb)
    levels_a, levels_b = np.unique(ra), np.unique(rb)
    if min(len(levels_a), len(levels_b)) < 2:
        return math.nan
    counts = np.zeros((len(levels_a), len(levels_b)), dtype=np.int64)
    np.add.at(counts, (np.searchsorted(levels_a, ra), np.searchsorted(levels_b, rb)), 1)
    if association(counts, method="cramer") <= ASSOCIATION_THRESHOLD:
        return math.nan
    return _tv_complement(real_pairs, syn_pairs)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # SDMetrics refuses a constant column: the pair is not counted
    return float(np.corrcoef(a, b)[0, 1])


def _binned(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, float)
    edges = np.histogram_bin_edges(values[np.isfinite(values)])
    return np.digitize(values, bins=edges).astype(str)


def _text(values: np.ndarray) -> np.ndarray:
    return np.asarray([str(v) for v in np.asarray(values, dtype=object)])


def _joint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add(a.astype(str), "\x1f"), b.astype(str))


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, float)
    return values[~np.isnan(values)]


def _by_sdmetrics(real: dict, synthetic: dict, schema: Schema) -> dict[str, float]:
    import warnings

    import pandas as pd
    from sdmetrics.reports.single_table import QualityReport

    sdtypes = {"continuous": "numerical", "integer": "numerical", "categorical": "categorical", "boolean": "boolean"}
    meta = {"columns": {c.name: {"sdtype": sdtypes[c.kind]} for c in schema.columns}}

    def frame(table: dict) -> pd.DataFrame:
        return pd.DataFrame({c.name: (np.asarray(table[c.name], float) if c.kind in NUMERIC_KINDS else np.asarray(table[c.name], dtype=object))
                             for c in schema.columns})

    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice for the single-table report
        report.generate(frame(real), frame(synthetic), meta, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    return _combine(float(properties["Column Shapes"]), float(properties["Column Pair Trends"]))
