"""One evaluation, start to end: the request resolved by its run's kind (evaluator_service/kinds/), then run and reported.

The shared parts are their own modules: the request and its parsing (plan.py), metric computation (compute.py),
report writing (reports.py). Each kind of run fills in `plan` and `run`; this module never asks which kind it has.
"""

from __future__ import annotations

from evaluator_service.cache import BoundedCache
from evaluator_service.features import ExtractorCache
from evaluator_service.kinds import KINDS
from evaluator_service.privacy import private_plan
from evaluator_service.plan import EvaluationRequest, Plan, Progress, read_run_info, run_kind, step_to_evaluate
from evaluator_service.reports import close_mlflow_runs
from evaluator_service.settings import EvaluatorSettings
from ganworks.data import ImageDataset

__all__ = ["EvaluationRequest", "Plan", "close_mlflow_runs", "plan", "run_evaluation"]


def plan(store, request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache[ImageDataset] | None = None) -> Plan:
    """Checks a request against the store and settings; raises a typed error a person can act on.

    `datasets` keeps loaded datasets between plans (the server's, bounded by max_cached_datasets); without
    it every call loads them again. A private run is planned against its held-out split only (evaluator_service/privacy.py)."""
    datasets = datasets if datasets is not None else BoundedCache("datasets", 3)
    info, where = read_run_info(store, request.run)
    kind = KINDS[run_kind(info)]
    kind.check_run_info(info["dataset"], where)
    step = step_to_evaluate(store, request)
    return private_plan(kind.plan(store, request, settings, datasets, info, step), explicit=bool(request.metrics))


def run_evaluation(store, p: Plan, settings: EvaluatorSettings, extractors: ExtractorCache, progress: Progress = lambda phase, fraction: None) -> dict:
    """Runs a planned evaluation and writes its report; returns the report."""
    return KINDS[p.kind].run(store, p, settings, extractors, progress)
