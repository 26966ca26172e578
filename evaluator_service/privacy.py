"""Private runs evaluated privately: what the evaluator computes for a run trained with --dp-epsilon, and against what.

ε bounds what a private run's *training* reveals about one training record. Everything the evaluator then
publishes (reports, gauges, TensorBoard events, MLflow values) stays inside that bound only if it is computed
from the snapshot's samples and from records that did not train it. So for a run whose run.json has `privacy`:

- the reference side of every metric is the held-out split (FID/KID/P/R/D/C, diversity, mode coverage, table
  quality compare with it); no statistic of the training split is computed, and so none is cached;
- a dataset-classifier extractor is fitted on the held-out split (the default one is fitted on the training split,
  which would make every feature a function of training records);
- metrics that need training records (memorization, DCR, the real baselines of utility and ML efficacy) are left
  out of the default set with a warning, and refused when asked for by name;
- the report says which split each number used (`splits`) and what was left out (`privacy`).

`evaluator_service/evaluation.py` calls `private_plan` once, on every plan; a run without `privacy` is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evaluator_service.errors import InvalidRequestError

# Metrics whose numbers are computed from the training records themselves, and what they take from them.
NEEDS_TRAINING_RECORDS = {
    "memorization": "distances from generated samples to the training images",
    "dcr": "distances from generated rows to the training rows",
    "utility": "a baseline classifier trained on the training images",
    "ml_efficacy": "a baseline model trained on the training rows",
}
HELD_OUT = "held_out"


def is_private(run_info: dict) -> bool:
    """The run was trained with --dp-epsilon (its run.json records `privacy`)."""
    return bool(run_info.get("privacy"))


def private_plan(p: Any, explicit: bool) -> Any:
    """The plan to run: unchanged for a run that is not private; else against the held-out split only, without the
    metrics that need training records (refused when the request named them). `p` is an evaluation Plan."""
    if not is_private(p.run_info):
        return dataclasses.replace(p, privacy={"private": False, "reference_split": p.run_info["dataset"].get("split", "train")})
    if p.held_out is None:
        raise InvalidRequestError(f"run {p.run!r} is private (trained with --dp-epsilon) on split {p.run_info['dataset'].get('split')!r}, which leaves no "
                                  "held-out split; its metrics would be computed from training records, which ε does not cover — train on split 'train'")
    needing = [m for m in p.metrics if m in NEEDS_TRAINING_RECORDS]
    if needing and explicit:
        reasons = "; ".join(f"{m} needs {NEEDS_TRAINING_RECORDS[m]}" for m in needing)
        raise InvalidRequestError(f"run {p.run!r} is private (trained with --dp-epsilon): {reasons}, which its ε does not cover; "
                                  f"drop {', '.join(needing)} from the metrics")
    metrics = [m for m in p.metrics if m not in needing]
    if not metrics:
        raise InvalidRequestError(f"run {p.run!r} is private and every metric asked for needs training records; ask for metrics that compare with the held-out split")
    left_out = {m: f"needs {NEEDS_TRAINING_RECORDS[m]}, which the run's ε does not cover" for m in needing}
    classifier_dataset = p.held_out if p.classifier_dataset is not None else None
    return dataclasses.replace(
        p, metrics=metrics, params={m: v for m, v in p.params.items() if m in metrics}, reference=p.held_out, dataset_id=p.held_out.id,
        classifier_dataset=classifier_dataset,
        privacy={"private": True, "reference_split": HELD_OUT, "left_out": left_out,
                 "extractor_fitted_on": HELD_OUT if classifier_dataset is not None else "not this run's data"},
    )


def report_fields(p: Any, report: dict) -> dict[str, Any]:
    """What a report adds about privacy: `splits` (each number -> the split of real data it was computed with, or
    "generated" for a number of the samples alone), `privacy` (the plan's), and warnings naming what was left out."""
    from evaluator_service.metrics import get_metric

    info = p.privacy or {"private": False, "reference_split": p.run_info.get("dataset", {}).get("split", "train")}
    splits: dict[str, str] = {}
    for name in p.metrics:
        metric = get_metric(name)
        sides = {i.partition(".")[0] for i in metric.inputs} - {"generated"}
        used = sorted({info["reference_split"] if side == "reference" else side for side in sides}) or ["generated"]
        for output in metric.outputs:
            if output in report["metrics"]:
                splits[output] = "+".join(used)
    left_out = [f"{m} left out: it {why}" for m, why in info.get("left_out", {}).items()]
    return {"splits": splits, "privacy": info, "warnings": [*report.get("warnings", []), *left_out]}
