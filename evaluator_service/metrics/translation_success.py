"""Translation success: the share of translated held-out images that a classifier puts in the target domain.

The judge is the classifier of the labelled dataset both domains are class subsets of (e.g. the Fashion-MNIST
classifier for `fashion-mnist:sneaker` ↔ `fashion-mnist:ankle-boot`); a translation counts when its predicted
class is one of the target domain's classes. Before training this is about the judge's confusion between the
domains (near 0); a model that translates scores near the judge's own accuracy on real target images."""

from __future__ import annotations

import numpy as np

from evaluator_service.metrics.spec import GENERATED_TRANSLATIONS, Metric
from evaluator_service.samples import DIRECTIONS


def translation_success(real, fake) -> dict[str, float]:
    return {f"translation_success_{d}": float(np.isin(fake.predicted[d], fake.target_classes[d]).mean()) for d in DIRECTIONS}


METRIC = Metric(
    "translation_success", translation_success, None, GENERATED_TRANSLATIONS, ("translation_success_a_to_b", "translation_success_b_to_a"),
    "translation runs: share of translated held-out images a classifier of both domains puts in the target domain (higher is better)",
    gauges={"translation_success_a_to_b": "translation_success_a_to_b", "translation_success_b_to_a": "translation_success_b_to_a"},
    default=False,
)
