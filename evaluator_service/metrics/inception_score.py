"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs").

Matches torch-fidelity's `isc` and the original OpenAI code: softmax of the logits, samples split into
10 consecutive groups, exp(E[KL(p(y|x) ‖ p(y))]) per group, mean and standard deviation over groups.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError
from evaluator_service.metrics.spec import GENERATED_LOGITS, Metric, Param


def inception_score(real_features: np.ndarray | None, fake_features: np.ndarray, splits: int = 10) -> dict[str, float]:
    """real_features is unused (IS looks at generated samples only); fake_features are classifier logits."""
    logits = np.asarray(fake_features, dtype=np.float64)
    splits = int(splits)
    if len(logits) < splits:
        raise InsufficientSamplesError(f"is with {splits} splits needs at least {splits} generated samples, got {len(logits)}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for part_log_p, part_p in zip(np.array_split(log_p, splits), np.array_split(p, splits)):
        log_marginal = np.log(part_p.mean(axis=0) + 1e-300)
        kl = (part_p * (part_log_p - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return {"inception_score_mean": float(np.mean(scores)), "inception_score_std": float(np.std(scores))}


METRIC = Metric(
    "is", inception_score, None, GENERATED_LOGITS, ("inception_score_mean", "inception_score_std"),
    "confident and varied class predictions (higher is better)",
    params=(Param("splits", int, 10, 1, 100, "groups the samples are split into", at_most_samples=True),),
    gauges={"inception_score_mean": "inception_score"},
)
