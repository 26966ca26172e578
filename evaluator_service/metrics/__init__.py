"""The metric registry: name -> a declared metric (its inputs, its parameters, a function of arrays returning named numbers).

Every metric is one file that defines `METRIC` (see `spec.py` for what it declares) and takes arrays and
returns floats: no I/O, no networks. To add one, write the file and add its module's name to `REGISTERED`.
"""

from __future__ import annotations

import importlib
from typing import Any

from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics.spec import Metric, Param

# One line per metric: the module in this package that defines its METRIC. The order is the report's order.
REGISTERED = (
    "fid",
    "kid",
    "prdc",
    "inception_score",
    "diversity",
    "mode_coverage",
    "memorization",
    "utility",
    "table_quality",
    "ml_efficacy",
    "dcr",
    "augmentation",
    "augmentation_images",
    "translation_fid",
    "translation_kid",
    "cycle_consistency",
    "translation_success",
)

METRICS: dict[str, Metric] = {m.name: m for m in (importlib.import_module(f"{__name__}.{module}").METRIC for module in REGISTERED)}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidRequestError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def metric_sources(names) -> dict[str, str]:
    """For the report: what computed each named metric, where a metric says (its `source`)."""
    return {name: METRICS[name].source() for name in names if name in METRICS and METRICS[name].source is not None}


def compute(name: str, real: Any, fake: Any, **kwargs: Any) -> dict[str, float]:
    """Computes metric `name` on arrays; kwargs are its declared parameters (checked) and extra inputs (e.g. train_features)."""
    metric = get_metric(name)
    params = metric.check_params({k: v for k, v in kwargs.items() if k not in metric.extra})
    extra = {k: v for k, v in kwargs.items() if k in metric.extra}
    return metric.fn(real, fake, **extra, **params)


__all__ = ["METRICS", "Metric", "Param", "compute", "get_metric", "metric_sources"]
