"""Rank 0's outputs: Prometheus metrics, stats.jsonl lines, G_ema snapshots (published in the background), progress for the driver."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from ganworks.layout import run_info_key
from ganworks.mlflow_tracking import MlflowRun
from ganworks.settings import store_settings_here
from ganworks.store import open_store
from trainer.config import TrainOptions
from trainer.exporter import StatsLog, TrainerMetrics
from trainer.publisher import SnapshotJob, SnapshotPublisher
from trainer.step import StepResult

log = logging.getLogger("trainer")
_INTERVAL_KEYS = ("loss_g", "loss_d", "d_real", "d_fake", "grad_norm_g", "grad_norm_d")
# D's loss and its mean output on the real records are computed from them without noise: a private run does not
# publish them (stats.jsonl, manifests, Prometheus, MLflow), so that ε covers everything it publishes. D's noised
# gradient norm and its outputs on generated samples are post-processing, and stay.
REAL_DATA_STATS = ("loss_d", "d_real")
# The interval averages a snapshot's manifest records (those the run has).
SNAPSHOT_METRICS = ("loss_g", "loss_d", "d_real", "d_fake", "augment_p", "pl_mean", "gradient_penalty", "condition_loss", "cycle_l1", "identity_l1",
                    "dp_epsilon", "dp_delta", "dp_epsilon_budget", "dp_transformer_epsilon")


class Rank0Reporter:
    """Averages each step's values over --log-every steps and publishes G_ema every --snapshot-every steps."""

    def __init__(self, config: dict, opts: TrainOptions, params: dict[str, Any], step: int, images_seen: int, grid: Any = None):
        """grid: what renders each snapshot's sample grid (its kind's; None for a kind without images)."""
        self.opts, self.progress = opts, config.get("progress")
        self.withheld = REAL_DATA_STATS if opts.dp_epsilon else ()
        store_settings = store_settings_here(config["store"]["settings"])
        store = open_store(config["store"]["url"], settings=store_settings)
        self.metrics = TrainerMetrics(opts.run)
        metrics_port = self.metrics.serve(opts.metrics_port, opts.metrics_host)
        self.metrics.steps.inc(step)
        self.metrics.images_seen.inc(images_seen)
        self.stats = StatsLog(store, opts.run, step)
        self.publisher = SnapshotPublisher(
            lambda: open_store(config["store"]["url"], settings=store_settings), run=opts.run, architecture=opts.model,
            architecture_params=params, dataset_id=config["dataset"]["id"],
            grid=grid, files=config.get("snapshot_files"),
            retry_seconds=opts.publish_retry_seconds, on_failure=self.metrics.publish_failures.inc,
            on_published=lambda at: (self.metrics.snapshot_published(at), self._record_spent(at), tell(self.progress, {"event": "published", "step": at})),
        )
        self.store, self._spent = store, {}  # a private run's ε per submitted snapshot, until run.json records it
        self.mlflow = MlflowRun.from_worker_config(config.get("mlflow"), opts.run)
        if self.mlflow is not None:
            self.mlflow.log_params(store.get_json(run_info_key(opts.run)))  # written by the driver before the workers start
            self.publisher.on_samples = lambda at, png: self.mlflow.log_png(png, f"step_{at:09d}.png")
        self._new_interval()
        tell(self.progress, {"event": "start", "step": step, "metrics_port": metrics_port})

    def _new_interval(self) -> None:
        self.interval = dict.fromkeys((k for k in _INTERVAL_KEYS if k not in self.withheld), 0.0)
        self.interval_steps, self.interval_images, self.interval_start = 0, 0, time.perf_counter()

    def after_step(self, result: StepResult, step: int, images_seen: int, nonfinite: int) -> None:
        if result.skipped:
            self.metrics.nonfinite_steps.inc()
        for key, value in result.stats().items():
            if key in self.withheld:
                continue
            self.interval[key] = self.interval.get(key, 0.0) + (float(value.detach()) if isinstance(value, torch.Tensor) else value)
        self.interval_steps += 1
        self.interval_images += self.opts.batch_size
        self.metrics.steps.inc()
        self.metrics.images_seen.inc(self.opts.batch_size)
        if step % self.opts.log_every == 0 or step == self.opts.steps:
            elapsed = time.perf_counter() - self.interval_start
            line: dict[str, Any] = {key: value / self.interval_steps for key, value in self.interval.items()}
            line.update(step=step, images_seen=images_seen, time=time.time(), nonfinite_steps=nonfinite,
                        images_per_second=self.interval_images / max(elapsed, 1e-9))
            self.metrics.record(line)
            self.stats.append(line)
            if self.mlflow is not None:
                self.mlflow.log_metrics({k: v for k, v in line.items() if k not in ("step", "time")}, step, line["time"])
            tell(self.progress, {"event": "log", **line})
            self._new_interval()

    def maybe_publish(self, step: int, images_seen: int, G_ema: torch.nn.Module, G: torch.nn.Module, D: torch.nn.Module,
                      privacy: dict[str, float] | None = None) -> None:
        """privacy: a private run's ε spent so far (and δ, and the budget), for the gauge and the snapshot's manifest."""
        if privacy is not None:
            self.metrics.dp_epsilon.set(privacy["dp_epsilon"])
        if step % self.opts.snapshot_every and step != self.opts.steps:
            return
        last = {**(self.stats.lines[-1] if self.stats.lines else {}), **(privacy or {})}
        if privacy is not None:
            self._spent[step] = privacy["dp_epsilon"]
        self.publisher.submit(SnapshotJob(step=step, images_seen=images_seen, generator_state=_cpu_copy(G_ema),
                                          training_states={"generator": _cpu_copy(G), "discriminator": _cpu_copy(D)},
                                          metrics={k: float(last[k]) for k in SNAPSHOT_METRICS if k in last}, stats_jsonl=self.stats.encoded(), events=self.stats.events))

    def _record_spent(self, step: int) -> None:
        """A private run's run.json says the ε of its newest published snapshot ("privacy": epsilon_spent, at
        epsilon_spent_step), rewritten after the snapshot's LATEST, so it never claims less than what was published."""
        spent = self._spent.pop(step, None)
        if spent is None:
            return
        try:
            info = self.store.get_json(run_info_key(self.opts.run))
            info.setdefault("privacy", {}).update(epsilon_spent=spent, epsilon_spent_step=step)
            self.store.put_json(run_info_key(self.opts.run), info)  # one object replaced whole: readers see the old or the new
        except Exception as exc:  # noqa: BLE001 - the manifests carry ε too; a lost update must not stop training
            log.warning("run.json not updated with the ε of step %d: %s", step, exc)

    def finish(self, step: int) -> None:
        if not self.publisher.close(timeout=self.opts.publish_retry_seconds + 30):
            log.error("the last snapshot was still uploading when the run ended")
        self.stats.events.close()
        if self.mlflow is not None and not self.mlflow.close(timeout=30):
            log.warning("MLflow tracking was still sending when the run ended; the rest is dropped")
        tell(self.progress, {"event": "done", "step": step, "published": self.publisher.published, "failed": self.publisher.failed})


def _cpu_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the state that training cannot change while the publisher uploads it."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def tell(progress, message: dict) -> None:
    """Progress for the driver's console; losing a message only costs a stale bar."""
    if progress is None:
        return
    try:
        progress.put_nowait(message)
    except Exception:  # noqa: BLE001 - a full or gone queue must not stop training
        pass
