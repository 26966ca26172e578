"""Evaluating a table run: rows from the generator (GenerateRecords), then the table metrics against its train and held-out rows."""

from __future__ import annotations

import time

from evaluator_service.cache import BoundedCache
from evaluator_service.compute import compute_metrics
from evaluator_service.errors import InvalidRequestError
from evaluator_service.features import ExtractorCache
from evaluator_service.metrics import get_metric
from evaluator_service.plan import (EvaluationRequest, Plan, Progress, num_samples, raise_without_dataset, requested_metrics, seed_and_variant,
                                    split_params, without_held_out_metrics)
from evaluator_service.reports import write_report
from evaluator_service.sampler import GeneratorSampler, GeneratorTarget
from evaluator_service.samples import TableSamples
from evaluator_service.settings import EvaluatorSettings
from ganworks import __version__
from ganworks.errors import DatasetError
from ganworks.tabular.data import TabularDataset, load_table

# A table run's evaluations name no extractor or resize mode: its report and gauges say "table".
TABLE_EXTRACTOR, TABLE_RESIZE = "table", "none"


def check_run_info(dataset: dict, where: str) -> None:
    """run.json names the table the run trained on."""
    if "spec" not in dataset:
        raise_without_dataset(where)


def plan(store, request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache, info: dict, step: int) -> Plan:
    """The table's train and held-out rows, and the table metrics (all of them by default)."""
    ds = info["dataset"]
    metrics = requested_metrics(request, "table")
    if request.extractor not in ("", TABLE_EXTRACTOR) or request.resize_mode not in ("", TABLE_RESIZE):
        raise InvalidRequestError(f"run {request.run!r} makes table rows: leave extractor and resize_mode empty (they are for images)")
    n = num_samples(request, settings)
    split = ds.get("split", "train")
    try:
        reference = datasets.get_or_create(("table", ds["spec"], split), lambda: load_table(ds["spec"], split=split))
        held_out = datasets.get_or_create(("table", ds["spec"], "test"), lambda: load_table(ds["spec"], split="test")) if split == "train" else None
    except DatasetError as exc:
        raise InvalidRequestError(f"the run's table cannot be loaded: {exc}") from None
    if held_out is None:
        metrics = without_held_out_metrics(request, metrics, split, "rows")
    params = split_params(dict(request.params), metrics, n)
    seed, variant = seed_and_variant(request, settings, params)
    return Plan(run=request.run, step=step, num_samples=n, metrics=metrics, extractor=TABLE_EXTRACTOR, resize_mode=TABLE_RESIZE, seed=seed, params=params,
                run_info=info, reference=reference, held_out=held_out, default_metrics=not request.metrics, variant=variant,
                default_set=not variant and not request.metrics and n == settings.default_num_samples, kind="table")


def run(store, p: Plan, settings: EvaluatorSettings, extractors: ExtractorCache, progress: Progress) -> dict:
    started, created_at = time.monotonic(), time.time()
    progress("sampling", 0.1)
    with GeneratorSampler(GeneratorTarget.from_settings(settings)) as sampler:
        model = sampler.describe(p.run, p.step)
        columns = sampler.sample_rows(p.run, p.step, p.num_samples, p.seed, p.reference.schema)
    generated = TabularDataset(columns=columns, schema=p.reference.schema, id=f"{p.run}-{p.step}-generated", source="generator")
    sides = {"reference": TableSamples(p.reference), "held_out": TableSamples(p.held_out) if p.held_out is not None else None, "generated": TableSamples(generated)}
    progress("metrics", 0.6)
    values, warnings = compute_metrics([get_metric(name) for name in p.metrics], sides, p.params)
    report = {
        "run": p.run, "step": p.step, "metrics": values, "metric_names": p.metrics, "metrics_set": p.metrics_set, "extractor": TABLE_EXTRACTOR,
        "resize_mode": TABLE_RESIZE, "num_samples": p.num_samples, "seed": p.seed, "params": p.params, "dataset_id": p.reference.id,
        "reference_samples": len(p.reference), "held_out_dataset_id": p.held_out.id if p.held_out is not None else None,
        "model_sha256": model.sha256, "generator": settings.generator, "warnings": warnings, "created_at": created_at,
        "duration_seconds": round(time.monotonic() - started, 3), "code_version": __version__,
    }
    return write_report(store, p, report, progress)
