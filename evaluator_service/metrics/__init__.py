"""The metric registry: name -> a function of (real features, generated features, **params) returning named numbers.

Every metric is one file, takes arrays and returns floats: no I/O, no networks. `Metric.real` and
`Metric.fake` say which inputs the evaluation pipeline must give it ("features", "logits", "labels",
"held_out_features").
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics.diversity import diversity
from evaluator_service.metrics.fid import fid
from evaluator_service.metrics.inception_score import inception_score
from evaluator_service.metrics.kid import kid
from evaluator_service.metrics.memorization import memorization
from evaluator_service.metrics.mode_coverage import mode_coverage
from evaluator_service.metrics.prdc import prdc


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., dict[str, float]]
    real: str
    fake: str
    outputs: tuple[str, ...]
    description: str

    @property
    def params(self) -> dict[str, Any]:
        """Tunable parameters and their defaults (what `<metric>.<param>` may set in a request)."""
        sig = inspect.signature(self.fn).parameters
        return {n: p.default for n, p in list(sig.items())[2:] if p.default is not inspect.Parameter.empty and n != "train_features"}


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("fid", fid, "features", "features", ("fid",), "Fréchet distance of feature Gaussians (lower is better)"),
        Metric("kid", kid, "features", "features", ("kid_mean", "kid_std"), "unbiased MMD² with a cubic kernel (lower is better)"),
        Metric("prdc", prdc, "features", "features", ("precision", "recall", "density", "coverage"), "fidelity (precision, density) and diversity (recall, coverage)"),
        Metric("is", inception_score, "none", "logits", ("inception_score_mean", "inception_score_std"), "confident and varied class predictions (higher is better)"),
        Metric("diversity", diversity, "features", "features", ("diversity", "duplicate_fraction"), "spread of generated samples relative to real ones"),
        Metric("mode_coverage", mode_coverage, "labels", "logits", ("classes_covered", "class_coverage", "class_kl"), "class histogram of generated samples vs real"),
        Metric("memorization", memorization, "held_out_features", "features", ("memorization_rate", "memorization_threshold"), "generated samples suspiciously close to training samples"),
    )
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidRequestError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def check_params(name: str, params: dict[str, Any]) -> None:
    known = get_metric(name).params
    unknown = set(params) - set(known)
    if unknown:
        raise InvalidRequestError(f"unknown parameters for metric {name!r}: {sorted(unknown)}; known: {', '.join(f'{name}.{p}' for p in known) or 'none'}")


def compute(name: str, real_features: Any, fake_features: Any, **params: Any) -> dict[str, float]:
    """Computes metric `name`; params are the metric's own (e.g. subset_size for kid, train_features for memorization)."""
    metric = get_metric(name)
    check_params(name, {k: v for k, v in params.items() if k != "train_features"})
    if "train_features" in params and name != "memorization":
        raise InvalidRequestError(f"train_features is a parameter of memorization only, not of {name!r}")
    return metric.fn(real_features, fake_features, **params)


__all__ = ["METRICS", "Metric", "check_params", "compute", "get_metric"]
