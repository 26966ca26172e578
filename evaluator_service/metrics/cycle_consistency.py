"""Cycle consistency of a translation run on held-out images: A → B → A and B → A → B through the served model,
the mean absolute pixel difference from the original on a 0..1 scale (`cycle_l1_a`, `cycle_l1_b`; lower is
better, 0 is a perfect round trip). A model that has learnt nothing but the identity scores 0 here too, which is
why it is read beside translation success and FID."""

from __future__ import annotations

import numpy as np

from evaluator_service.metrics.spec import GENERATED_TRANSLATIONS, Metric
from evaluator_service.samples import DIRECTIONS


def cycle_consistency(real, fake) -> dict[str, float]:
    out = {}
    for d in DIRECTIONS:
        source, back = fake.sources[d], fake.cycled[d]
        out[f"cycle_l1_{d[0]}"] = float(np.abs(back.astype(np.float32) - source.astype(np.float32)).mean() / 255.0)
    return out


METRIC = Metric(
    "cycle_consistency", cycle_consistency, None, GENERATED_TRANSLATIONS, ("cycle_l1_a", "cycle_l1_b"),
    "translation runs: mean |x − G_BA(G_AB(x))| of held-out images on a 0..1 scale, each domain (lower is better)",
    gauges={"cycle_l1_a": "cycle_l1_a", "cycle_l1_b": "cycle_l1_b"},
    default=False,
)
