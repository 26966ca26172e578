"""Memorization rate: the fraction of generated samples closer to a training sample than held-out real samples are.

A held-out real sample is never memorized, so its distance to the nearest training sample shows how close
"new" data comes to training data; a generated sample nearer than the `quantile` of those distances is
flagged. A generator that samples the data distribution scores about `quantile`; one that copies its
training set scores near 1 (the privacy check for synthetic data, after the "authenticity" test of
Alaa et al. 2022 and the data-copying test of Meehan et al. 2020).
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError
from evaluator_service.metrics.neighbours import as_float64, nearest_distance
from evaluator_service.metrics.spec import GENERATED_FEATURES, HELD_OUT_FEATURES, REFERENCE_FEATURES, Metric, Param


def memorization(real_features: np.ndarray, fake_features: np.ndarray, train_features: np.ndarray | None = None, quantile: float = 0.05) -> dict[str, float]:
    """real_features: held-out real samples; train_features: the samples the generator was trained on."""
    if train_features is None:
        raise InvalidRequestError("memorization needs the training features (train_features) besides the held-out ones")
    held_out, fake, train = as_float64(real_features), as_float64(fake_features), as_float64(train_features)
    if len(held_out) < 2 or len(fake) < 1 or len(train) < 1:
        raise InsufficientSamplesError(f"memorization needs held-out, generated and training samples, got {len(held_out)}, {len(fake)} and {len(train)}")
    threshold = np.quantile(nearest_distance(held_out, train), quantile)
    fake_to_train = nearest_distance(fake, train)
    return {"memorization_rate": float((fake_to_train < threshold).mean()), "memorization_threshold": float(threshold)}


METRIC = Metric(
    "memorization", memorization, HELD_OUT_FEATURES, GENERATED_FEATURES, ("memorization_rate", "memorization_threshold"),
    "generated samples suspiciously close to training samples",
    params=(Param("quantile", float, 0.05, 0.0, 1.0, "quantile of held-out distances below which a sample counts as copied", open_low=True, open_high=True),),
    extra={"train_features": REFERENCE_FEATURES},
    gauges={"memorization_rate": "memorization_rate"},
)
