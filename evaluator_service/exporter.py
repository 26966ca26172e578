"""The evaluator's Prometheus metrics, one registry per server instance (names are the deploy contract)."""

from __future__ import annotations

from typing import Iterator, Sized

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from evaluator_service.metrics import METRICS

# Report key -> gauge name suffix, as each metric declares it; labelled by run and extractor only (never the step: it is its own gauge).
GAUGES = {output: gauge for metric in METRICS.values() for output, gauge in metric.gauges.items()}


class EvaluatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.gauges = {key: Gauge(f"ganworks_evaluator_{name}", f"latest {name} of a run's evaluated snapshot", ["run", "extractor"], registry=r) for key, name in GAUGES.items()}
        self.evaluated_step = Gauge("ganworks_evaluator_evaluated_step", "step of the snapshot whose numbers the metric gauges show", ["run", "extractor"], registry=r)
        self.job_duration = Histogram("ganworks_evaluator_job_duration_seconds", "wall time of an evaluation job", registry=r, buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600))
        self.evaluations = Counter("ganworks_evaluator_evaluations", "finished evaluation jobs", ["result"], registry=r)
        self.failures = Counter("ganworks_evaluator_failures", "failed evaluation jobs by reason", ["reason"], registry=r)
        self.queue_depth = Gauge("ganworks_evaluator_queue_depth", "evaluation jobs waiting for a worker", registry=r)
        self.cache_entries = Gauge("ganworks_evaluator_cache_entries", "entries kept between evaluations, by cache (bounded by a setting each)", ["cache"], registry=r)
        self._evictions = _Evictions()
        r.register(self._evictions)
        for result in ("succeeded", "failed"):
            self.evaluations.labels(result)
        self._shown: dict[tuple[str, str], int] = {}

    def watch_sizes(self, **sized: Sized) -> None:
        """cache_entries{cache=name} reads len() of each at scrape time; cache_evictions_total{cache=name} the drops of
        those that count them (the bounded caches)."""
        for name, container in sized.items():
            self.cache_entries.labels(name).set_function(container.__len__)
            if hasattr(container, "evictions"):
                self._evictions.caches[name] = container

    def record_success(self, report: dict, seconds: float, gauges: bool = True) -> None:
        """Counts the evaluation; its numbers reach the gauges only for the default set and a step not older than shown."""
        run, extractor = report["run"], report["extractor"]
        if gauges and report["step"] >= self._shown.get((run, extractor), -1):
            self._shown[(run, extractor)] = report["step"]
            for key, value in report["metrics"].items():
                if key in self.gauges:
                    self.gauges[key].labels(run, extractor).set(value)
            self.evaluated_step.labels(run, extractor).set(report["step"])
        self.job_duration.observe(seconds)
        self.evaluations.labels("succeeded").inc()

    def record_failure(self, reason: str, seconds: float) -> None:
        self.job_duration.observe(seconds)
        self.evaluations.labels("failed").inc()
        self.failures.labels(reason).inc()


class _Evictions(Collector):
    """ganworks_evaluator_cache_evictions_total{cache}: read from each bounded cache's own count at scrape time."""

    def __init__(self):
        self.caches: dict[str, object] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("ganworks_evaluator_cache_evictions", "entries a bounded cache dropped to stay within its setting; rising on every evaluation: raise the setting", labels=["cache"])
        for name, cache in self.caches.items():
            family.add_metric([name], cache.evictions)
        yield family
