"""Publishes G_ema snapshots (G for ctgan) from a background thread, so training never waits on the store; retries with backoff."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

import torch

from ganworks.checkpoint import publish_snapshot
from ganworks.errors import SnapshotExistsError, StoreAuthError, StoreError
from ganworks.images import grid_png, to_uint8
from ganworks.layout import snapshot_prefix, stats_key, trainer_events_key
from ganworks.models import get_family
from ganworks.retry import retry_call
from ganworks.tensorboard_events import EventFile

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SnapshotJob:
    step: int
    images_seen: int
    generator_state: dict[str, torch.Tensor]  # a CPU copy: training goes on changing the live one
    metrics: dict[str, float]
    stats_jsonl: bytes | None = None
    events: EventFile | None = None  # the run's TensorBoard file: gets this snapshot's grid, then goes to the store whole
    training_states: dict[str, dict[str, torch.Tensor]] | None = None  # raw G and D, so another run can start from this snapshot


def _is_transient(exc: BaseException) -> bool:
    # A refused credential will not get better by retrying; a flaky or restarting endpoint may.
    return isinstance(exc, (StoreError, OSError)) and not isinstance(exc, StoreAuthError)


class SampleGrid:
    """Fixed latents (and one row per class when conditional), so grids of successive snapshots compare.
    A kind whose samples come from inputs other than latents brings its own grid with the same `render`
    (trainer/kinds/translation.py: fixed real images of both domains and their translations)."""

    def __init__(self, architecture: str, params: dict[str, Any], seed: int, per_row: int = 8):
        self.family = get_family(architecture)
        self.params = params = self.family.validate(params)
        self.columns = per_row
        gen = torch.Generator().manual_seed(seed)
        classes = params.get("num_classes", 0)
        count = classes * per_row if classes else per_row * per_row
        self.z = self.family.random_latents(params, count, gen)
        self.labels = torch.arange(classes).repeat_interleave(per_row) if classes else None

    @torch.no_grad()
    def render(self, state: dict[str, torch.Tensor]) -> bytes:
        generator = self.family.build_generator(self.params)
        generator.load_state_dict(state)
        images = self.family.generate(generator.eval(), self.z, self.labels, torch.ones(len(self.z)))
        return grid_png(to_uint8(images), columns=self.columns, scale=2)


class SnapshotPublisher:
    """One background thread; a newer job replaces one still waiting, so a slow store costs snapshots, not speed."""

    def __init__(self, open_store: Callable[[], Any], *, run: str, architecture: str, architecture_params: dict[str, Any], dataset_id: str,
                 grid: Any, retry_seconds: float, on_published: Callable[[int], None] | None = None, on_failure: Callable[[], None] | None = None,
                 files: dict[str, bytes] | None = None):
        """grid: what renders the sample grid (its kind's: SampleGrid, TranslationGrid; None for a kind without images); files: published beside every snapshot's weights (transformer.json)."""
        self._open_store = open_store
        self.run, self.architecture, self.params, self.dataset_id = run, architecture, architecture_params, dataset_id
        self.grid, self.retry_seconds, self.files = grid, retry_seconds, dict(files or {})
        self._on_published = on_published or (lambda step: None)
        self._on_failure = on_failure or (lambda: None)
        self.on_samples: Callable[[int, bytes], None] | None = None  # each published snapshot's grid (MLflow)
        self._pending: SnapshotJob | None = None
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self.published: list[int] = []
        self.failed: list[int] = []
        self.skipped: list[int] = []
        self._thread = threading.Thread(target=self._work, name="snapshot-publisher", daemon=True)
        self._thread.start()

    def submit(self, job: SnapshotJob) -> None:
        with self._cond:
            if self._pending is not None:
                log.warning("snapshot of step %d dropped: the store is slower than --snapshot-every; step %d replaces it", self._pending.step, job.step)
            self._pending = job
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Publishes what is waiting, then stops; False if that did not finish within timeout."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _work(self) -> None:
        store = None
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                job, self._pending = self._pending, None
            try:
                store = store or self._open_store()
                self._publish(store, job)
            except SnapshotExistsError:
                # A resumed run re-trains steps an earlier attempt published after its last registered
                # checkpoint; the published snapshot stays, so the sequence readers see stays monotonic.
                self.skipped.append(job.step)
                log.info("snapshot of step %d kept as an earlier attempt of this run published it", job.step)
            except Exception as exc:  # noqa: BLE001 - a lost snapshot must not stop training
                self.failed.append(job.step)
                log.error("snapshot of step %d not published after %.0fs of retries: %s", job.step, self.retry_seconds, exc)

    def _publish(self, store, job: SnapshotJob) -> None:
        samples = self.grid.render(job.generator_state) if self.grid is not None else None
        if job.events is not None and samples is not None:
            job.events.image("samples", samples, job.step)

        def attempt() -> None:
            try:
                # Weights, samples, manifest, then LATEST: an attempt cut short leaves no manifest, so no
                # reader sees a partial snapshot, and the next attempt writes every object again.
                publish_snapshot(store, run=self.run, step=job.step, generator_state=job.generator_state, architecture=self.architecture,
                                 architecture_params=self.params, images_seen=job.images_seen, dataset_id=self.dataset_id,
                                 metrics=job.metrics, samples_png=samples, training_states=job.training_states, files=self.files)
                if job.stats_jsonl is not None:
                    store.put_bytes(stats_key(self.run), job.stats_jsonl, "application/x-ndjson")
                if job.events is not None:
                    store.put_bytes(trainer_events_key(self.run), job.events.encoded(), "application/octet-stream")
            except SnapshotExistsError:
                raise
            except BaseException:
                self._on_failure()
                raise

        retry_call(attempt, is_transient=_is_transient, total_seconds=self.retry_seconds, initial_delay=0.5, max_delay=10.0, what=f"publishing step {job.step}")
        self.published.append(job.step)
        self._on_published(job.step)
        if self.on_samples is not None:
            self.on_samples(job.step, samples)
        log.info("published snapshot step %d to %s", job.step, store.url_for(snapshot_prefix(self.run, job.step)))
