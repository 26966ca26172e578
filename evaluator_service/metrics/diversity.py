"""Sample diversity: the generated samples' mean pairwise feature distance relative to the real samples', and
the fraction of near-duplicate generated pairs (closer than the closest `duplicate_quantile` of real pairs).

A collapsing generator shows a ratio well below 1 and a duplicate fraction well above `duplicate_quantile`
(its expected value when generated and real samples come from one distribution). In the spirit of the
diversity checks of Arora & Zhang (2017); no reference implementation fixes these exact numbers.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError
from evaluator_service.metrics.neighbours import as_float64, pairwise
from evaluator_service.metrics.spec import GENERATED_FEATURES, REFERENCE_FEATURES, Metric, Param


def _pair_distances(x: np.ndarray, max_samples: int, rng: np.random.RandomState) -> np.ndarray:
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    d = pairwise(x, x)
    return d[np.triu_indices(len(x), k=1)]


def diversity(real_features: np.ndarray, fake_features: np.ndarray, duplicate_quantile: float = 0.001, max_samples: int = 2000, seed: int = 0) -> dict[str, float]:
    real, fake = as_float64(real_features), as_float64(fake_features)
    if len(real) < 2 or len(fake) < 2:
        raise InsufficientSamplesError(f"diversity needs at least 2 reference and 2 generated samples, got {len(real)} and {len(fake)}")
    rng = np.random.RandomState(seed)
    real_pairs = _pair_distances(real, int(max_samples), rng)
    fake_pairs = _pair_distances(fake, int(max_samples), rng)
    real_mean = real_pairs.mean()
    if real_mean <= 0:
        raise InsufficientSamplesError("every reference sample has the same features; diversity is undefined")
    threshold = np.quantile(real_pairs, duplicate_quantile)
    return {
        "diversity": float(fake_pairs.mean() / real_mean),
        "duplicate_fraction": float((fake_pairs <= threshold).mean()),
    }


METRIC = Metric(
    "diversity", diversity, REFERENCE_FEATURES, GENERATED_FEATURES, ("diversity", "duplicate_fraction"),
    "spread of generated samples relative to real ones",
    params=(
        Param("duplicate_quantile", float, 0.001, 0.0, 1.0, "quantile of real pair distances below which a pair is a duplicate", open_low=True, open_high=True),
        # Memory grows with max_samples²: 5000 samples are 100 MB of float64 distances per side.
        Param("max_samples", int, 2000, 2, 5000, "samples per side whose pairs are compared"),
        Param("seed", int, 0, 0, 2**32 - 1, "seed of the sample draw"),
    ),
    gauges={"diversity": "diversity"},
)
