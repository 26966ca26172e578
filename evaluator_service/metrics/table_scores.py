"""Quality of a synthetic table against the real one, with the definitions of SDV's SDMetrics (so numbers compare).

Every score is in [0, 1], higher is better, except `closer_to_train_share` (privacy: lower is better, 0.5 for
a generator that does not copy when train and holdout are the same size). Tables are dicts of numpy columns
with a Schema, as ganworks.tabular.data loads them; numbers in, numbers out, no I/O.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import ks_2samp

from ganworks.tabular.data import NUMERIC_KINDS, Schema

Table = dict[str, np.ndarray]
CONTINGENCY_BINS = 10  # SDMetrics' num_discrete_bins for numbers paired with a category


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 − the two-sample Kolmogorov–Smirnov statistic (SDMetrics KSComplement)."""
    return 1.0 - float(ks_2samp(np.asarray(real, float), np.asarray(synthetic, float)).statistic)


def _frequencies(values: np.ndarray, levels: list) -> np.ndarray:
    lookup = {level: i for i, level in enumerate(levels)}
    counts = np.bincount([lookup[v] for v in values], minlength=len(levels)).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def tv_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 − the total variation distance between the category frequencies (SDMetrics TVComplement)."""
    real, synthetic = np.asarray(real).astype(str), np.asarray(synthetic).astype(str)
    levels = sorted(set(real) | set(synthetic))
    return 1.0 - 0.5 * float(np.abs(_frequencies(real, levels) - _frequencies(synthetic, levels)).sum())


def correlation_similarity(real_a: np.ndarray, real_b: np.ndarray, syn_a: np.ndarray, syn_b: np.ndarray) -> float:
    """1 − |ρ_real − ρ_synthetic| / 2 with Pearson's ρ (SDMetrics CorrelationSimilarity)."""
    def rho(a, b):
        if np.std(a) == 0 or np.std(b) == 0:
            return 0.0
        return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])

    return 1.0 - abs(rho(real_a, real_b) - rho(syn_a, syn_b)) / 2.0


def contingency_similarity(real_a: np.ndarray, real_b: np.ndarray, syn_a: np.ndarray, syn_b: np.ndarray) -> float:
    """1 − the total variation distance between the two joint frequency tables (SDMetrics ContingencySimilarity)."""
    real_pairs = [f"{a}\x1f{b}" for a, b in zip(np.asarray(real_a).astype(str), np.asarray(real_b).astype(str))]
    syn_pairs = [f"{a}\x1f{b}" for a, b in zip(np.asarray(syn_a).astype(str), np.asarray(syn_b).astype(str))]
    return tv_complement(np.array(real_pairs), np.array(syn_pairs))


def _bin(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as bin indices, the bins set on the real column (as SDMetrics discretises for contingency)."""
    edges = np.histogram_bin_edges(real, bins=CONTINGENCY_BINS)
    inner = edges[1:-1]
    return np.digitize(real, inner), np.digitize(np.clip(synthetic, edges[0], edges[-1]), inner)


def column_shapes(real: Table, synthetic: Table, schema: Schema) -> dict[str, float]:
    return {c.name: (ks_complement if c.kind in NUMERIC_KINDS else tv_complement)(real[c.name], synthetic[c.name]) for c in schema.columns}


def column_pair_trends(real: Table, synthetic: Table, schema: Schema) -> dict[tuple[str, str], float]:
    scores = {}
    for a, b in itertools.combinations(schema.columns, 2):
        ra, rb, sa, sb = real[a.name], real[b.name], synthetic[a.name], synthetic[b.name]
        if a.kind in NUMERIC_KINDS and b.kind in NUMERIC_KINDS:
            scores[(a.name, b.name)] = correlation_similarity(ra, rb, sa, sb)
            continue
        if a.kind in NUMERIC_KINDS:
            ra, sa = _bin(ra, sa)
        if b.kind in NUMERIC_KINDS:
            rb, sb = _bin(rb, sb)
        scores[(a.name, b.name)] = contingency_similarity(ra, rb, sa, sb)
    return scores


def quality_report(real: Table, synthetic: Table, schema: Schema) -> dict[str, float]:
    """SDMetrics' QualityReport: the mean column-shape score, the mean pair-trend score, and their mean (overall)."""
    shapes = float(np.mean(list(column_shapes(real, synthetic, schema).values())))
    pairs = column_pair_trends(real, synthetic, schema)
    trends = float(np.mean(list(pairs.values()))) if pairs else shapes
    return {"column_shapes": shapes, "column_pair_trends": trends, "overall": (shapes + trends) / 2.0}


# ---- ML efficacy --------------------------------------------------------------------------------------------------------


def _features(table: Table, schema: Schema, reference: Table) -> np.ndarray:
    """Numbers standardised on the reference table, categories one-hot over the reference's levels."""
    parts = []
    for column in schema.columns:
        if column.name == schema.target:
            continue
        values, ref = table[column.name], reference[column.name]
        if column.kind in NUMERIC_KINDS:
            ref = np.asarray(ref, float)
            parts.append(((np.asarray(values, float) - ref.mean()) / (ref.std() or 1.0))[:, None])
        else:
            levels = sorted(set(np.asarray(ref).astype(str)))
            text = np.asarray(values).astype(str)
            parts.append(np.stack([text == level for level in levels], axis=1).astype(np.float64))
    return np.concatenate(parts, axis=1)


def _fit_score(train: Table, test: Table, schema: Schema, reference: Table, positive: str) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    y_train = np.asarray(train[schema.target]).astype(str)
    y_test = np.asarray(test[schema.target]).astype(str)
    if len(set(y_train)) < 2:
        return 0.0  # a synthetic table with one class teaches nothing about the other
    model = LogisticRegression(max_iter=1000).fit(_features(train, schema, reference), y_train)
    predicted = model.predict(_features(test, schema, reference))
    return float(f1_score(y_test, predicted, pos_label=positive, average="binary" if len(set(y_test) | set(y_train)) <= 2 else "macro"))


def ml_efficacy(real_train: Table, synthetic: Table, real_test: Table, schema: Schema) -> dict[str, float]:
    """F1 on real held-out rows of a logistic regression trained on synthetic rows vs on real ones, and their ratio.

    F1 is for the rarer target level (the defaulters, the malignant tumours): the class users care about.
    """
    if schema.target is None:
        raise ValueError("ML efficacy needs a target column; declare one in the schema ('target')")
    levels, counts = np.unique(np.asarray(real_train[schema.target]).astype(str), return_counts=True)
    positive = str(levels[counts.argmin()])
    real_f1 = _fit_score(real_train, real_test, schema, real_train, positive)
    synthetic_f1 = _fit_score(synthetic, real_test, schema, real_train, positive)
    return {"f1_real": real_f1, "f1_synthetic": synthetic_f1, "ratio": synthetic_f1 / real_f1 if real_f1 else 0.0}


# ---- privacy: distance to closest record ------------------------------------------------------------------------------


def row_distances(rows: Table, others: Table, schema: Schema, ranges: dict[str, float], chunk: int = 1024) -> np.ndarray:
    """Per row of `rows`, the distance to the closest row of `others`: the mean over columns of |a − b| / range
    for numbers and 0/1 mismatch for categories (the Gower-style distance SDMetrics' DCR metrics use).
    Computed `chunk` rows at a time, so memory stays at chunk × len(others) whatever the table size."""
    n = len(rows[schema.columns[0].name])
    columns = []
    for column in schema.columns:
        if column.kind in NUMERIC_KINDS:
            scale = ranges[column.name] or 1.0
            columns.append((True, np.asarray(rows[column.name], float) / scale, np.asarray(others[column.name], float) / scale))
        else:
            columns.append((False, np.asarray(rows[column.name]).astype(str), np.asarray(others[column.name]).astype(str)))
    closest = np.empty(n)
    for start in range(0, n, chunk):
        total = 0.0
        for numeric, a, b in columns:
            part = a[start : start + chunk, None]
            total = total + (np.abs(part - b[None, :]) if numeric else part != b[None, :])
        closest[start : start + chunk] = np.min(total, axis=1) if n else 0.0
    return closest / len(schema.columns)


def closer_to_train_share(synthetic: Table, real_train: Table, real_holdout: Table, schema: Schema) -> float:
    """The share of synthetic rows strictly closer to a training row than to any holdout row (SDMetrics
    DCROverfittingProtection's measure; its score is min(1, 2 (1 − share)) when train and holdout are equal in size)."""
    ranges = {}
    for column in schema.columns:
        if column.kind in NUMERIC_KINDS:
            both = np.concatenate([np.asarray(real_train[column.name], float), np.asarray(real_holdout[column.name], float)])
            ranges[column.name] = float(both.max() - both.min())
    to_train = row_distances(synthetic, real_train, schema, ranges)
    to_holdout = row_distances(synthetic, real_holdout, schema, ranges)
    return float(np.mean(to_train < to_holdout))
