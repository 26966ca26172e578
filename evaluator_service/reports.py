"""Where an evaluation's numbers go: the report in the store, TensorBoard events beside the trainer's, and the run's MLflow run."""

from __future__ import annotations

import logging
import threading
import time

from evaluator_service.metrics import metric_sources
from evaluator_service.plan import Plan, Progress
from evaluator_service.privacy import report_fields
from ganworks.layout import evaluator_events_key
from ganworks.mlflow_tracking import MlflowRun, tracking_uri
from ganworks.tensorboard_events import evaluation_events

log = logging.getLogger("evaluator_service.evaluation")

_MLFLOW_RUNS: dict[tuple[str, str], MlflowRun | None] = {}
_MLFLOW_LOCK = threading.Lock()


def mlflow_run(run: str) -> MlflowRun | None:
    """The run's MLflow run (one background sender per run and tracking URI); None without GANWORKS_MLFLOW_TRACKING_URI."""
    key = (tracking_uri(), run)
    with _MLFLOW_LOCK:
        if key not in _MLFLOW_RUNS:
            _MLFLOW_RUNS[key] = MlflowRun.from_uri(key[0], run)
        return _MLFLOW_RUNS[key]


def close_mlflow_runs(timeout: float) -> bool:
    """At shutdown: sends what the runs' MLflow senders still hold, all within timeout seconds, and ends their threads
    (a later evaluation gets a fresh sender). False if something was left unsent."""
    with _MLFLOW_LOCK:
        senders = [sender for sender in _MLFLOW_RUNS.values() if sender is not None]
        _MLFLOW_RUNS.clear()
    deadline = time.monotonic() + timeout
    return all([sender.close(max(deadline - time.monotonic(), 0.1)) for sender in senders])


def write_report(store, p: Plan, report: dict, progress: Progress) -> dict:
    """Stores the report at the plan's key and its numbers as TensorBoard events (and in MLflow when configured); returns it."""
    report = {**report, **report_fields(p, report)}  # which split each number used; a private run's left-out metrics
    report.setdefault("metric_sources", metric_sources(report["metric_names"]))  # what computed each number, with versions
    store.put_json(p.report_key, report)
    values, created_at = report["metrics"], report["created_at"]
    store.put_bytes(evaluator_events_key(p.run, p.step, p.metrics_set), evaluation_events(p.step, values, p.metrics_set, walltime=created_at), "application/octet-stream")
    tracking = mlflow_run(p.run)
    if tracking is not None:  # with GANWORKS_MLFLOW_TRACKING_URI: the same numbers in the run's MLflow run, at the snapshot's step
        tracking.log_metrics({f"{p.metrics_set}/{name}": value for name, value in values.items()}, p.step, created_at)
    progress("done", 1.0)
    log.info("evaluated %s step %d with %s: %s", p.run, p.step, report["extractor"], ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    return report
