"""What rank 0 tells Prometheus (`ganworks_trainer_*` on --metrics-port) and the run folder (`stats.jsonl`, TensorBoard events)."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from ganworks.checkpoint import read_stats
from ganworks.layout import stats_key
from ganworks.tensorboard_events import EventFile

log = logging.getLogger(__name__)


def _serve(registry: CollectorRegistry, port: int, host: str) -> int | None:
    from ganworks.telemetry import start_metrics_server

    try:
        bound = start_metrics_server(port, host=host, registry=registry)
    except OSError as exc:
        log.warning("trainer metrics not served: port %d: %s (pass --metrics-port 0 to pick a free one)", port, exc.strerror)
        return None
    log.info("trainer metrics on http://%s:%d/metrics", host, bound)
    return bound


def _worker_up(run: str, registry: CollectorRegistry) -> None:
    Gauge("ganworks_trainer_worker_up", "1 while a training worker runs here (the training metrics come from rank 0)", ["run"], registry=registry).labels(run).set(1)


def serve_worker_up(run: str, port: int, host: str = "0.0.0.0") -> int | None:
    """/metrics on a worker pod without rank 0: only ganworks_trainer_worker_up, so every scraped pod is an up target."""
    registry = CollectorRegistry()
    _worker_up(run, registry)
    return _serve(registry, port, host)


class TrainerMetrics:
    """The trainer's Prometheus metrics for one run, in their own registry."""

    def __init__(self, run: str, registry: CollectorRegistry | None = None):
        self.run = run
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, ["run"]
        _worker_up(run, r)  # rank 0's pod is a worker pod too
        self.steps = Counter("ganworks_trainer_steps", "optimisation steps done (G and D each once)", labels, registry=r).labels(run)
        self.images_seen = Counter("ganworks_trainer_images_seen", "real images shown to D over all workers", labels, registry=r).labels(run)
        self.images_per_second = Gauge("ganworks_trainer_images_per_second", "training speed over the last logging interval", labels, registry=r).labels(run)
        self.loss = Gauge("ganworks_trainer_loss", "mean loss over the last logging interval", ["run", "network"], registry=r)
        self.discriminator_output = Gauge("ganworks_trainer_discriminator_output", "mean discriminator logit on real and on fake images", ["run", "kind"], registry=r)
        self.grad_norm = Gauge("ganworks_trainer_grad_norm", "global gradient norm, after the all-reduce", ["run", "network"], registry=r)
        self.last_snapshot_step = Gauge("ganworks_trainer_last_snapshot_step", "step of the newest snapshot published", labels, registry=r).labels(run)
        self.last_snapshot_timestamp = Gauge("ganworks_trainer_last_snapshot_timestamp_seconds", "when the newest snapshot was published", labels, registry=r).labels(run)
        self.snapshots_published = Counter("ganworks_trainer_snapshots_published", "snapshots published to the store", labels, registry=r).labels(run)
        self.publish_failures = Counter("ganworks_trainer_publish_failures", "failed snapshot upload attempts (each retry counts)", labels, registry=r).labels(run)
        self.augment_p = Gauge("ganworks_trainer_augment_probability", "adaptive augmentation probability p (with --augment ada)", labels, registry=r).labels(run)
        self.path_length_mean = Gauge("ganworks_trainer_path_length_mean", "moving mean of G's path lengths (with --pl-weight)", labels, registry=r).labels(run)
        self.dp_epsilon = Gauge("ganworks_trainer_dp_epsilon", "privacy loss ε spent so far (with --dp-epsilon; at the run's δ)", labels, registry=r).labels(run)
        self.nonfinite_steps = Counter("ganworks_trainer_nonfinite_steps", "updates skipped because a gradient was NaN or infinite", labels, registry=r).labels(run)

    def serve(self, port: int, host: str = "0.0.0.0") -> int | None:
        """Serves /metrics; returns the bound port, or None (logged) if it cannot: training goes on without it."""
        return _serve(self.registry, port, host)

    def record(self, stats: dict) -> None:
        self.images_per_second.set(stats["images_per_second"])
        self.loss.labels(self.run, "generator").set(stats["loss_g"])
        if "loss_d" in stats:  # a private run withholds what is computed from the real records (trainer/reporting.py)
            self.loss.labels(self.run, "discriminator").set(stats["loss_d"])
        if "d_real" in stats:
            self.discriminator_output.labels(self.run, "real").set(stats["d_real"])
        self.discriminator_output.labels(self.run, "fake").set(stats["d_fake"])
        self.grad_norm.labels(self.run, "generator").set(stats["grad_norm_g"])
        self.grad_norm.labels(self.run, "discriminator").set(stats["grad_norm_d"])
        if "augment_p" in stats:
            self.augment_p.set(stats["augment_p"])
        if "pl_mean" in stats:
            self.path_length_mean.set(stats["pl_mean"])

    def snapshot_published(self, step: int) -> None:
        self.snapshots_published.inc()
        self.last_snapshot_step.set(step)
        self.last_snapshot_timestamp.set(time.time())


class StatsLog:
    """runs/<run>/stats.jsonl: one JSON line per logging interval, rewritten whole (object stores cannot append).

    The same lines go to a TensorBoard event file (`events`, tags `train/<name>`), which the snapshot publisher
    uploads beside stats.jsonl with the snapshot's grid added; a resumed run replays the lines it keeps into it.
    """

    def __init__(self, store, run: str, resume_step: int):
        self.key = stats_key(run)
        self.lines: list[dict] = []
        self.events = EventFile()
        if resume_step > 0:
            for line in read_stats(store, run):
                if line.get("step", 0) <= resume_step:
                    self.append(line)

    def append(self, stats: dict) -> None:
        self.lines.append(stats)
        curves = {k: v for k, v in stats.items() if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.events.scalars(int(stats.get("step", 0)), curves, prefix="train/", walltime=stats.get("time"))

    def encoded(self) -> bytes:
        return "".join(json.dumps(line, sort_keys=True) + "\n" for line in self.lines).encode()
