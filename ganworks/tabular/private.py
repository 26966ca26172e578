"""The CTGAN transformer fitted under differential privacy (`ganworks train --model ctgan --dp-epsilon E --dp-transformer-epsilon T`).

The ordinary fit (`DataTransformer.fit`) publishes statistics of the training table with every snapshot: each
numeric column's min/max and mixture modes, each categorical column's levels and their counts. DP-SGD's ε says
nothing about them: a record with a rare level is listed by name, an outlier is the published max. Fitted here,
they cost T of the run's budget E (the networks get E − T, by sequential composition), and each release is a
standard mechanism on one column, so T is split evenly over the columns (a record is in every column):

- **Numeric column** (pure ε): one Laplace histogram over fixed, data-independent bins on a log scale (±2^k,
  plus a bin around 0). The range is the span of the bins whose noisy count passes a threshold set so that an
  empty bin passes with probability at most 1 % over all bins: a lone outlier does not move it. The modes are
  `max_modes` equal cells of that range (data-independent given the range), so nothing else is released; values
  outside the range are clipped to it before encoding.
- **Categorical column** ((ε, δ)): Laplace counts of the levels that occur, released only above
  1 + ln(1 / 2δ) / ε, so a level held by one record is listed with probability at most δ (the stability-based
  histogram). The released counts are the noisy ones. A record whose level is not released is encoded as the most
  frequent released level (it can never be generated). δ of the transformer is a tenth of the run's δ.
- **Boolean column** (pure ε): both levels are known without the data; only their counts are noisy.

The schema (column names and kinds) is taken as public, as the user states it, and so is the number of rows: run.json
records it, and DP-SGD's sampling rate q = batch / n gives it away, so n is outside the guarantee, as in the image
runs. So is what the schema file declares public: a numeric column's `range` (used as it is, so that column spends
nothing and T is split over the other columns) and a categorical column's `levels` (all of them listed, only their
counts noisy: pure ε, no δ).
The noise comes from a seeded generator, as DP-SGD's does here (docs/trainer.md: reproducible, not cryptographic).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ganworks.errors import DatasetError
from ganworks.tabular.data import NUMERIC_KINDS, Schema
from ganworks.tabular.transformer import DataTransformer, DiscreteEncoding, NumericEncoding

# The numeric bins: |x| < 2^ZERO_EXP is the zero bin; otherwise ±[2^k, 2^(k+1)) for ZERO_EXP <= k < TOP_EXP (beyond: the last bin).
ZERO_EXP, TOP_EXP = -20, 64
_FALSE_RELEASE = 0.01  # the chance that any empty numeric bin passes its threshold
DELTA_SHARE = 0.1  # the transformer's part of δ, when it has categorical columns


@dataclasses.dataclass
class PrivateFit:
    """The transformer and what was spent and left out to fit it (run.json's privacy.transformer)."""

    transformer: DataTransformer
    epsilon: float
    delta: float
    per_column_epsilon: float
    clipped: dict[str, tuple[float, float]]  # numeric column -> the released range its values were clipped to
    # categorical column -> how many distinct levels were not released (their records encoded as the commonest). Exact,
    # so for the data owner only: describe() leaves it out (a 1 would say that some record holds a level of its own).
    merged: dict[str, int]
    public: list[str] = dataclasses.field(default_factory=list)  # columns whose range or levels the schema declared

    def describe(self) -> dict:
        """What run.json records: only what the mechanisms released, and what the schema declared."""
        return {"epsilon": self.epsilon, "delta": self.delta, "per_column_epsilon": self.per_column_epsilon,
                "numeric_range": {k: list(v) for k, v in self.clipped.items()}, "declared_public": list(self.public)}


def _finds_levels(column) -> bool:
    return column.kind == "categorical" and column.levels is None


def _releases(column) -> bool:
    """Does fitting this column spend budget? Not a numeric column whose range the schema states (its modes follow from it)."""
    return not (column.kind in NUMERIC_KINDS and column.range is not None)


def transformer_delta(schema: Schema, delta: float) -> float:
    """The δ the transformer spends: a tenth of the run's when a categorical column's levels must be found, else 0."""
    return delta * DELTA_SHARE if any(_finds_levels(c) for c in schema.columns) else 0.0


def _bin_index(values: np.ndarray) -> np.ndarray:
    """0 for the zero bin, ±(1 + k − ZERO_EXP) for ±[2^k, 2^(k+1))."""
    magnitude = np.abs(values.astype(np.float64))
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0)))
    index = np.clip(exponent - ZERO_EXP + 1, 1, TOP_EXP - ZERO_EXP).astype(np.int64)
    return np.where(magnitude < 2.0**ZERO_EXP, 0, np.sign(values).astype(np.int64) * index)


def _bin_edges(index: int) -> tuple[float, float]:
    if index == 0:
        return -(2.0**ZERO_EXP), 2.0**ZERO_EXP
    low, high = 2.0 ** (abs(index) - 1 + ZERO_EXP), 2.0 ** (abs(index) + ZERO_EXP)
    return (low, high) if index > 0 else (-high, -low)


def private_range(name: str, values: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[float, float]:
    """The span of the log-scale bins whose Laplace count (scale 1/ε) passes the threshold; ε-DP."""
    top = TOP_EXP - ZERO_EXP
    indices = np.arange(-top, top + 1)
    counts = np.bincount(_bin_index(values) + top, minlength=len(indices)).astype(np.float64)
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=len(indices))
    threshold = math.log(len(indices) / (2 * _FALSE_RELEASE)) / epsilon  # P(Laplace > t) = exp(-εt)/2 per bin
    released = indices[noisy > threshold]
    if not len(released):
        raise DatasetError(f"column {name!r}: no range of its values can be released privately at ε = {epsilon:.3g} per column "
                           f"(a bin needs about {threshold:.0f} of the {len(values)} rows); raise --dp-transformer-epsilon, declare its public range "
                           "in the table's schema file, or train on fewer columns")
    low, high = _bin_edges(int(released.min()))[0], _bin_edges(int(released.max()))[1]
    return float(low), float(high)


def private_levels(name: str, values: np.ndarray, epsilon: float, delta: float, rng: np.random.Generator, known: list[str] | None = None) -> tuple[list[str], list[int]]:
    """Laplace counts (scale 1/ε) of the levels; with known levels all of them (ε-DP), else those above 1 + ln(1/2δ)/ε ((ε, δ)-DP)."""
    text = values.astype(str)
    levels, counts = np.unique(text, return_counts=True)
    if known is not None:
        present = dict(zip(levels.tolist(), counts.tolist()))
        levels, counts = np.array(known), np.array([present.get(level, 0) for level in known])
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=len(levels))
    keep = np.ones(len(levels), dtype=bool) if known is not None else noisy >= 1 + math.log(1 / (2 * delta)) / epsilon
    if not keep.any():
        raise DatasetError(f"column {name!r}: none of its levels is common enough to be released privately at ε = {epsilon:.3g} per column; "
                           "raise --dp-transformer-epsilon, declare its levels in the table's schema file, or train on fewer columns")
    return levels[keep].tolist(), np.maximum(np.rint(noisy[keep]), 1).astype(int).tolist()


def _cells(low: float, high: float, kind: str, max_modes: int) -> tuple[list[float], list[float], list[float]]:
    """max_modes equal cells of [low, high]: means at their centres, σ an eighth of a cell (so |α| <= 1 inside a cell)."""
    modes = max(1, min(max_modes, int(high - low) + 1)) if kind == "integer" else max_modes
    width = (high - low) / modes
    means = [low + width * (i + 0.5) for i in range(modes)]
    return [1.0 / modes] * modes, means, [max(width / 8, 1e-6)] * modes


def fit_private(schema: Schema, columns: dict[str, np.ndarray], epsilon: float, delta: float, max_modes: int, seed: int) -> tuple[PrivateFit, dict[str, np.ndarray]]:
    """The transformer at (ε, δ) over all columns, and the columns as it encodes them (clipped; unreleased levels merged).
    δ is the transformer's own (transformer_delta of the run's); only categorical columns spend it."""
    if epsilon <= 0:
        raise ValueError("the transformer's ε must be positive")
    rng = np.random.default_rng([seed, 0x5EED_7A])
    per_column = epsilon / max(1, sum(_releases(c) for c in schema.columns))
    searched = [c for c in schema.columns if _finds_levels(c)]
    spent_delta = delta if searched else 0.0
    per_column_delta = spent_delta / len(searched) if searched else 0.0
    encodings: list[NumericEncoding | DiscreteEncoding] = []
    conformed, clipped, merged = {}, {}, {}
    for column in schema.columns:
        values = columns[column.name]
        if column.kind in NUMERIC_KINDS:
            low, high = column.range if column.range is not None else private_range(column.name, values, per_column, rng)
            if column.kind == "integer":
                low, high = float(math.floor(low)), float(math.ceil(high))
            weights, means, stds = _cells(low, high, column.kind, max_modes)
            encodings.append(NumericEncoding(column.name, column.kind, weights, means, stds, low, high))
            conformed[column.name] = np.clip(values.astype(np.float64), low, high)
            clipped[column.name] = (low, high)
        else:
            known = ["False", "True"] if column.kind == "boolean" else (list(column.levels) if column.levels is not None else None)
            levels, counts = private_levels(column.name, values, per_column, per_column_delta, rng, known)
            encodings.append(DiscreteEncoding(column.name, column.kind, levels, counts))
            text = values.astype(str)
            released = np.isin(text, levels)
            merged[column.name] = len(set(text[~released].tolist()))
            conformed[column.name] = np.where(released, text, levels[int(np.argmax(counts))])
    public = [c.name for c in schema.columns if c.range is not None or c.levels is not None]
    fit = PrivateFit(DataTransformer(schema, encodings), epsilon, spent_delta, per_column, clipped, merged, public)
    return fit, conformed
