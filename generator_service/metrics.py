"""The generator's Prometheus metrics, one registry per server instance (names shared with deploy/)."""

from __future__ import annotations

import contextvars

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Milliseconds (a cached single sample) up to tens of seconds (a large request under load).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


# The model and rollout track ("latest", "pinned", "stable", "candidate") a call was routed to, set by the router in
# the call's own task; None until the call is routed (a call refused before routing has no model to blame).
ROUTED: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("ganworks_generator_routed", default=None)


class GeneratorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("ganworks_generator_requests", "Calls answered, by method and gRPC status code", ["method", "code"], registry=r)
        self.samples = Counter("ganworks_generator_samples", "Images or table rows generated", ["model"], registry=r)
        self.latency = Histogram("ganworks_generator_request_latency_seconds", "Time from call start to answer", ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("ganworks_generator_queue_wait_seconds", "Time a request part waited before its batch ran", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("ganworks_generator_batch_size", "Samples per model call", buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("ganworks_generator_queue_depth", "Samples waiting for a batch", registry=r)
        self.queue_capacity = Gauge("ganworks_generator_queue_capacity", "Samples allowed to wait", registry=r)
        self.inflight = Gauge("ganworks_generator_inflight_requests", "Calls being served", registry=r)
        self.model_version = Gauge("ganworks_generator_model_version", "Step of the newest loaded snapshot", ["model"], registry=r)
        self.model_loads = Counter("ganworks_generator_model_loads", "Snapshot loads by result", ["model", "result"], registry=r)
        self.watch_errors = Counter("ganworks_generator_watch_errors", "Polls of a model's LATEST that failed unexpectedly (retried with backoff)", ["model"], registry=r)
        self.model_load_seconds = Histogram("ganworks_generator_model_load_seconds", "Time to fetch, verify, build and warm up a snapshot", buckets=LATENCY_BUCKETS, registry=r)
        self.rollout_calls = Counter("ganworks_generator_rollout_calls", "Calls by the track that served them: latest, pinned (explicit version), stable, candidate", ["model", "track"], registry=r)
        self.rollout_step = Gauge("ganworks_generator_rollout_step", "Step each rollout track serves (0: none)", ["model", "track"], registry=r)
        self.rollout_policy_ok = Gauge("ganworks_generator_rollout_policy_ok", "1 when the run's rollout policy is applied as written, 0 when a step it names is missing or refused", ["model"], registry=r)
        # The same calls by the model and rollout track that answered them, so a canary's errors and latency can be
        # told from the stable version's. The track, not the step, is the label: steps grow without bound, and
        # ganworks_generator_rollout_step{model,track} says which step each track serves.
        self.routed_requests = Counter("ganworks_generator_routed_requests", "Routed calls answered, by method, model, rollout track and gRPC status code", ["method", "model", "track", "code"], registry=r)
        self.routed_latency = Histogram("ganworks_generator_routed_request_latency_seconds", "Time from call start to answer of routed calls, by method, model and rollout track", ["method", "model", "track"], buckets=LATENCY_BUCKETS, registry=r)
        self.rollout_policy_errors = Counter("ganworks_generator_rollout_policy_errors", "Rollout policies not applied, by reason (missing_step, refused_step, bad_policy)", ["model", "reason"], registry=r)

    def count_call(self, method: str, code: str, seconds: float) -> None:
        """Counts one answered call and its latency, by method, and by model and track once the call was routed."""
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)
        routed = ROUTED.get()
        if routed is not None:
            self.routed_requests.labels(method, *routed, code).inc()
            self.routed_latency.labels(method, *routed).observe(seconds)
