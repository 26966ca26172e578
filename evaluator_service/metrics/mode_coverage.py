"""Mode coverage for labelled data: the generated samples' class histogram by a classifier, compared with the real one.

Reports the number and fraction of classes that receive at least `min_fraction` of the samples they should,
and KL(real ‖ generated) between the class histograms (Santurkar et al. 2018 "Classification-based
measures"; the KL follows the MNIST mode-counting experiments of Metz et al. 2017, with a small floor so a
missing class gives a large but finite number).
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics.spec import GENERATED_LOGITS, REFERENCE_CLASSES, Metric, Param

FLOOR = 1e-6


def _classes(values: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    values = np.asarray(values)
    if values.ndim == 2:  # logits or probabilities
        return values.argmax(axis=1), values.shape[1]
    if values.ndim == 1 and np.issubdtype(values.dtype, np.integer):
        return values, int(num_classes or (values.max() + 1 if len(values) else 0))
    raise InvalidRequestError(f"mode_coverage needs class logits (N×C) or integer labels (N), got {values.dtype} of shape {values.shape}")


def mode_coverage(real_features: np.ndarray, fake_features: np.ndarray, num_classes: int | None = None, min_fraction: float = 0.1) -> dict[str, float]:
    """real_features: reference labels or logits; fake_features: classifier logits of generated samples."""
    real_classes, c_real = _classes(real_features, num_classes)
    fake_classes, c_fake = _classes(fake_features, num_classes)
    c = int(num_classes or max(c_real, c_fake))
    if len(real_classes) == 0 or len(fake_classes) == 0:
        raise InvalidRequestError("mode_coverage needs at least one reference and one generated sample")
    real_hist = np.bincount(real_classes, minlength=c)[:c] / len(real_classes)
    fake_hist = np.bincount(fake_classes, minlength=c)[:c] / len(fake_classes)
    present = real_hist > 0
    covered = present & (fake_hist >= min_fraction * real_hist)
    p, q = real_hist[present], np.maximum(fake_hist[present], FLOOR)
    return {
        "classes_covered": float(covered.sum()),
        "class_coverage": float(covered.sum() / present.sum()),
        "class_kl": float((p * np.log(p / q)).sum()),
    }


METRIC = Metric(
    "mode_coverage", mode_coverage, REFERENCE_CLASSES, GENERATED_LOGITS, ("classes_covered", "class_coverage", "class_kl"),
    "class histogram of generated samples vs real",
    params=(
        Param("num_classes", int, None, 1, 100_000, "classes counted (default: from the data)"),
        Param("min_fraction", float, 0.1, 0.0, 1.0, "share of its expected samples a class needs to count as covered", open_low=True),
    ),
)
