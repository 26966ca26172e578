"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

Precision/recall match StyleGAN3's `precision_recall.py` (k = 3, a sample is inside a manifold when its
distance is <= a k-NN radius); density/coverage match the `prdc` package of Naeem et al. (k = 5, strict <).
Both k are configurable. Distances are Euclidean in feature space, computed exactly in float64 blocks.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError
from evaluator_service.metrics.neighbours import as_float64, blocks, kth_neighbour_distance
from evaluator_service.metrics.spec import GENERATED_FEATURES, REFERENCE_FEATURES, Metric, Param


def prdc(real_features: np.ndarray, fake_features: np.ndarray, nearest_k: int = 5, pr_nearest_k: int = 3) -> dict[str, float]:
    real, fake = as_float64(real_features), as_float64(fake_features)
    k_dc, k_pr = int(nearest_k), int(pr_nearest_k)
    needed = max(k_dc, k_pr) + 1
    if len(real) < needed or len(fake) < needed:
        raise InsufficientSamplesError(f"prdc with k={max(k_dc, k_pr)} needs at least {needed} reference and generated samples, got {len(real)} and {len(fake)}")
    real_pr, fake_pr = kth_neighbour_distance(real, k_pr), kth_neighbour_distance(fake, k_pr)
    real_dc = kth_neighbour_distance(real, k_dc)

    in_real_manifold = np.zeros(len(fake), dtype=bool)  # precision: generated sample within some real k-NN ball
    density_hits = np.zeros(len(fake))
    recalled = np.zeros(len(real), dtype=bool)  # recall: real sample within some generated k-NN ball
    covered = np.zeros(len(real), dtype=bool)  # coverage: nearest generated sample within the real sample's ball
    for rows, d in blocks(real, fake):
        in_real_manifold |= (d <= real_pr[rows, None]).any(axis=0)
        density_hits += (d < real_dc[rows, None]).sum(axis=0)
        recalled[rows] = (d <= fake_pr[None, :]).any(axis=1)
        covered[rows] = d.min(axis=1) < real_dc[rows]
    return {
        "precision": float(in_real_manifold.mean()),
        "recall": float(recalled.mean()),
        "density": float(density_hits.sum() / (k_dc * len(fake))),
        "coverage": float(covered.mean()),
    }


METRIC = Metric(
    "prdc", prdc, REFERENCE_FEATURES, GENERATED_FEATURES, ("precision", "recall", "density", "coverage"),
    "fidelity (precision, density) and diversity (recall, coverage)",
    params=(
        Param("nearest_k", int, 5, 1, 100, "k of density and coverage", at_most_samples=True),
        Param("pr_nearest_k", int, 3, 1, 100, "k of precision and recall", at_most_samples=True),
    ),
    gauges={k: k for k in ("precision", "recall", "density", "coverage")},
)
