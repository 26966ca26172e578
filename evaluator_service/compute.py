"""Metric computation shared by every kind of run: each declared input gathered from the evaluation's sides, each metric run once."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluator_service.errors import EvaluationError
from evaluator_service.metrics import Metric


def gather(name: str | None, sides: dict[str, Any]) -> Any:
    """The value of a declared input `<side>.<what>` (see evaluator_service/metrics/spec.py)."""
    if name is None:
        return None
    side, _, what = name.partition(".")
    samples = sides.get(side)
    value = getattr(samples, what, None) if samples is not None else None
    if value is None:
        raise EvaluationError(f"input {name} is not available in this evaluation")
    return value


def compute_metrics(metrics: list[Metric], sides: dict[str, Any], params: dict[str, dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Every metric's values (a non-finite one is an EvaluationError) and the warnings their inputs raise."""
    values: dict[str, float] = {}
    warnings: list[str] = []
    for metric in metrics:
        real, fake = gather(metric.real, sides), gather(metric.fake, sides)
        extra = {arg: gather(name, sides) for arg, name in metric.extra.items()}
        if metric.warnings is not None:
            warnings += metric.warnings(real, fake)
        result = metric.fn(real, fake, **extra, **params.get(metric.name, {}))
        bad = [k for k, v in result.items() if not np.isfinite(v)]
        if bad:
            raise EvaluationError(f"{metric.name} gave a non-finite {', '.join(bad)}; the samples are degenerate (e.g. every generated sample is identical)")
        values.update(result)
    return values, warnings
