"""ModelManager: follows each run's LATEST, loads, verifies and warms snapshots, keeps the last K for pinned calls."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable

import torch

from ganworks.checkpoint import Manifest, Snapshot, load_snapshot, read_latest, read_manifest
from ganworks.errors import (
    CheckpointError, CheckpointFormatError, CheckpointIntegrityError, GanworksError, ModelConfigError, ObjectNotFoundError, SnapshotMissingError, StoreError, shown,
)
from ganworks.layout import MANIFEST, check_run_id, latest_key, snapshot_key
from ganworks.models import ModelFamily, get_family
from ganworks.tabular.synthesizer import TabularModel
from generator_service.metrics import GeneratorMetrics

log = logging.getLogger(__name__)

# A pinned version that is not published is answered from memory this long before the store is asked again.
UNKNOWN_VERSION_SECONDS = 10.0
# The watcher's wait after failed polls doubles up to this (from poll_seconds), and drops back after a good poll.
MAX_WATCH_BACKOFF_SECONDS = 60.0


class UnknownModelError(GanworksError):
    """The call names a run this server does not serve."""


class UnknownVersionError(GanworksError):
    """The call pins a step the run never published."""


class ModelNotReadyError(GanworksError):
    """The run has no loaded snapshot yet (nothing published, or loading)."""


class RefusedVersionError(GanworksError):
    """The pinned snapshot failed verification and will not be served."""


class ReloadLimitError(GanworksError):
    """Pinned calls asked for more versions that are not loaded than the per-minute reload limit allows."""


# Failures that a snapshot keeps until it is published again: it is remembered and not fetched again.
PERMANENT = (CheckpointError, ModelConfigError)


@dataclasses.dataclass(eq=False)
class LoadedModel:
    """One verified, warmed-up snapshot, ready for batches."""

    manifest: Manifest
    generator: torch.nn.Module
    device: torch.device
    tabular: TabularModel | None = None  # a table model (family ctgan): its transformer and sampling; None for images

    @property
    def family(self) -> ModelFamily:
        """How this model draws latents and labels and applies truncation."""
        return get_family(self.manifest.architecture)

    @property
    def run(self) -> str:
        return self.manifest.run

    @property
    def step(self) -> int:
        return self.manifest.step


def load_result(exc: BaseException | None) -> str:
    """The `result` label of ganworks_generator_model_loads_total for a load's outcome."""
    if exc is None:
        return "success"
    if isinstance(exc, SnapshotMissingError):
        return "missing"
    if isinstance(exc, CheckpointIntegrityError):
        return "integrity_error"
    if isinstance(exc, CheckpointFormatError):
        return "format_error"
    return "error"


class ModelManager:
    """Holds the loaded snapshots of the configured runs; swaps the newest in as LATEST moves."""

    def __init__(
        self,
        store,
        runs: list[str],
        *,
        device: torch.device,
        keep_versions: int,
        poll_seconds: float,
        metrics: GeneratorMetrics,
        warm_up: Callable[[LoadedModel], Awaitable[None]],
        attach: Callable[[Snapshot], object] = lambda snapshot: None,
        on_change: Callable[[], None] = lambda: None,
        max_reloads_per_minute: int = 6,
    ):
        self.store, self.runs, self.device = store, [check_run_id(run) for run in runs], device
        self.keep_versions, self.poll_seconds = keep_versions, poll_seconds
        self.metrics, self._warm_up, self._attach, self._on_change = metrics, warm_up, attach, on_change
        self._cache: dict[str, collections.OrderedDict[int, LoadedModel]] = {run: collections.OrderedDict() for run in self.runs}
        self._current: dict[str, LoadedModel | None] = {run: None for run in self.runs}
        # LATEST's (etag, mtime) once what it names is loaded or refused: nothing to do until it changes.
        self._seen_latest: dict[str, tuple[str, float]] = {}
        # Refused snapshots: why, and their manifest's (etag, mtime); a new manifest earns a new try.
        self._refused: dict[tuple[str, int], tuple[str, tuple[str, float] | None]] = {}
        self._unknown: dict[tuple[str, int], float] = {}  # pinned versions found unpublished, until when to believe it
        self._missing_logged: set[tuple[str, int]] = set()
        self.max_reloads_per_minute = max_reloads_per_minute
        self._reloads: dict[str, collections.deque[float]] = {run: collections.deque() for run in self.runs}
        self._loading: dict[tuple[str, int], asyncio.Future] = {}
        self._refused_step: dict[str, int] = {}  # per run: the refused step its LATEST names
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")
        self._task: asyncio.Task | None = None

    # -- queries ------------------------------------------------------------------------------------------

    def ready(self, run: str | None = None) -> bool:
        runs = [run] if run else self.runs
        return bool(runs) and all(self._current.get(r) is not None for r in runs)

    def loaded_versions(self, run: str) -> list[int]:
        return sorted(self._cache.get(run, {}), reverse=True)

    def current(self, run: str) -> LoadedModel | None:
        return self._current.get(run)

    async def get(self, run: str, version: int = 0) -> LoadedModel:
        """The model for a call: the current one for version 0, else the pinned step (loaded on demand)."""
        if run not in self._cache:
            raise UnknownModelError(f"model {shown(run)} is not served here; served models: {', '.join(self.runs) or '(none)'}")
        if not version:
            model = self._current[run]
            if model is None:
                raise ModelNotReadyError(f"model {run!r} has no loaded snapshot yet (nothing published or still loading); retry shortly")
            return model
        cached = self._cache[run].get(version)
        if cached is not None:
            self._cache[run].move_to_end(version)
            return cached
        if (run, version) in self._refused:
            raise RefusedVersionError(f"version {version} of model {run!r} is refused: {self._refused[(run, version)][0]}")
        if self._unknown.get((run, version), 0.0) > time.monotonic():
            raise self._unknown_version(run, version)
        if (run, version) not in self._loading:
            self._count_reload(run, version)
        return await self._load(run, version, pinned=True)

    def _count_reload(self, run: str, version: int) -> None:
        """Each load for a pinned call downloads, verifies and warms a snapshot: cap them per run and minute."""
        now, reloads = time.monotonic(), self._reloads[run]
        while reloads and reloads[0] < now - 60.0:
            reloads.popleft()
        if len(reloads) >= self.max_reloads_per_minute:
            raise ReloadLimitError(
                f"model {run!r} already loaded {len(reloads)} versions for pinned calls in the last minute (limit {self.max_reloads_per_minute}); "
                f"retry version {version} in a minute, pin one of the loaded versions {self.loaded_versions(run)}, or raise --keep-versions"
            )
        reloads.append(now)

    def _unknown_version(self, run: str, step: int) -> UnknownVersionError:
        return UnknownVersionError(
            f"model {run!r} has no published version {step}; loaded versions: {self.loaded_versions(run) or 'none'} (use version 0 for the newest)"
        )

    def watching(self) -> bool:
        """False once the watcher has died: the process no longer follows LATEST and should be restarted."""
        return self._task is None or not self._task.done() or self._task.cancelled()

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads what each run's LATEST names (runs with nothing published yet are watched), then keeps watching."""
        await self._poll_all()
        self._task = asyncio.create_task(self._watch(), name="model-watch")
        self._task.add_done_callback(self._watch_ended)

    def _watch_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled():
            log.critical("the snapshot watcher stopped (%r); this replica no longer follows LATEST and reports itself not live", task.exception())
            self._on_change()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _watch(self) -> None:
        failed = 0
        while True:
            await asyncio.sleep(min(self.poll_seconds * 2**failed, max(self.poll_seconds, MAX_WATCH_BACKOFF_SECONDS)))
            failed = 0 if await self._poll_all() else min(failed + 1, 16)

    async def _poll_all(self) -> bool:
        """One poll of every run; True when none failed unexpectedly."""
        ok = True
        for run in self.runs:
            try:
                await self._poll(run)
            except Exception:  # noqa: BLE001 - the watcher must outlive anything one poll meets
                ok = False
                self.metrics.watch_errors.labels(run).inc()
                log.exception("checking for new snapshots of model %s failed unexpectedly; trying again with backoff", run)
        return ok

    async def _poll(self, run: str) -> None:
        """Loads the step LATEST names when LATEST changed (by etag or mtime); errors are logged, never raised."""
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(self._io, self.store.stat, latest_key(run))
        except ObjectNotFoundError:
            return
        except StoreError as exc:
            log.warning("cannot check %s for model %s: %s", latest_key(run), run, exc)
            return
        marker = (info.etag, info.modified)
        if self._seen_latest.get(run) == marker:
            refused = self._refused_step.get(run)
            if refused is None or not await self._republished(run, refused):
                return
        try:
            step = await loop.run_in_executor(self._io, read_latest, self.store, run)
        except StoreError as exc:
            log.warning("cannot read LATEST of model %s: %s", run, exc)
            return
        except CheckpointError as exc:
            log.error("LATEST of model %s is unusable: %s; the current version keeps serving until LATEST is rewritten", run, exc)
            self._seen_latest[run] = marker
            return
        if step is None:
            return
        self._refused_step.pop(run, None)
        if (run, step) in self._refused and not await self._republished(run, step):
            self._seen_latest[run], self._refused_step[run] = marker, step
            return
        try:
            model = await self._load(run, step, pinned=False)
        except SnapshotMissingError:
            return  # LATEST ran ahead of the snapshot (or names a deleted one): ask again at the next poll
        except PERMANENT:
            self._seen_latest[run], self._refused_step[run] = marker, step  # refused until LATEST moves or the snapshot is republished
            return
        except Exception:  # noqa: BLE001 - transient (store down): logged in _load, retried next poll
            return
        self._seen_latest[run] = marker
        self._make_current(model)

    async def _republished(self, run: str, step: int) -> bool:
        """True (and the refusal forgotten) when a refused snapshot's manifest changed since it was refused."""
        try:
            info = await asyncio.get_running_loop().run_in_executor(self._io, self.store.stat, snapshot_key(run, step, MANIFEST))
            now = (info.etag, info.modified)
        except ObjectNotFoundError:
            now = None
        if now == self._refused[(run, step)][1]:
            return False
        log.info("snapshot %d of model %s was published again; trying it", step, run)
        del self._refused[(run, step)]
        return True

    def _make_current(self, model: LoadedModel) -> None:
        previous = self._current[model.run]
        self._current[model.run] = model
        self.metrics.model_version.labels(model.run).set(model.step)
        if previous is not model:
            log.info("model %s now serves step %d (was %s)", model.run, model.step, previous.step if previous else "none")
            self._evict(model.run)
            self._on_change()

    # -- loading ------------------------------------------------------------------------------------------

    async def _load(self, run: str, step: int, pinned: bool) -> LoadedModel:
        cached = self._cache[run].get(step)
        if cached is not None:
            return cached
        key = (run, step)
        if key in self._loading:
            # Another call is loading the same step: share its result instead of loading twice.
            return await asyncio.shield(self._loading[key])
        future = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            model = await self._fetch_and_warm(run, step, pinned)
            future.set_result(model)
            return model
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so an unshared failure does not warn at exit
            raise
        finally:
            del self._loading[key]

    async def _fetch_and_warm(self, run: str, step: int, pinned: bool) -> LoadedModel:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if pinned:
                await loop.run_in_executor(self._io, self._check_published, run, step)
            snapshot = await loop.run_in_executor(self._io, lambda: load_snapshot(self.store, run, step, device=self.device))
            model = LoadedModel(manifest=snapshot.manifest, generator=snapshot.generator, device=self.device, tabular=self._attach(snapshot))
            await self._warm_up(model)
        except UnknownVersionError:
            now = time.monotonic()
            if len(self._unknown) > 10_000:  # callers choose the versions: forget the expired ones before it grows
                self._unknown = {key: until for key, until in self._unknown.items() if until > now}
            self._unknown[(run, step)] = now + UNKNOWN_VERSION_SECONDS
            raise
        except Exception as exc:
            self.metrics.model_loads.labels(run, load_result(exc)).inc()
            if isinstance(exc, SnapshotMissingError):
                if (run, step) not in self._missing_logged:
                    self._missing_logged.add((run, step))
                    log.warning("snapshot %d of model %s is not in the store yet (%s); asking again at every poll", step, run, exc)
            elif isinstance(exc, PERMANENT):
                self._refused[(run, step)] = (str(exc), await loop.run_in_executor(self._io, self._manifest_marker, run, step))
                log.error("refused snapshot %d of model %s: %s; the current version keeps serving", step, run, exc)
            else:
                log.warning("could not load snapshot %d of model %s (will retry): %s", step, run, exc)
            raise
        self.metrics.model_loads.labels(run, "success").inc()
        self.metrics.model_load_seconds.observe(time.perf_counter() - started)
        log.info("loaded snapshot %d of model %s (sha256 %s…) in %.2fs", step, run, model.manifest.sha256[:12], time.perf_counter() - started)
        self._cache[run][step] = model
        self._evict(run)
        return model

    def _manifest_marker(self, run: str, step: int) -> tuple[str, float] | None:
        try:
            info = self.store.stat(snapshot_key(run, step, MANIFEST))
        except (StoreError, OSError):
            return None
        return (info.etag, info.modified)

    def _check_published(self, run: str, step: int) -> None:
        try:
            read_manifest(self.store, run, step)
        except SnapshotMissingError:
            raise self._unknown_version(run, step) from None

    def _evict(self, run: str) -> None:
        cache, current = self._cache[run], self._current[run]
        for step in list(cache):  # least recently used first
            if len(cache) <= self.keep_versions:
                break
            if current is not None and step == current.step:
                continue
            del cache[step]
            log.info("unloaded snapshot %d of model %s (keeping %d versions)", step, run, self.keep_versions)
