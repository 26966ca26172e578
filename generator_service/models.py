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

from ganworks.checkpoint import Manifest, load_snapshot, read_latest, read_manifest
from ganworks.layout import check_run_id, latest_key
from ganworks.errors import CheckpointError, CheckpointFormatError, CheckpointIntegrityError, GanworksError, ObjectNotFoundError, StoreError
from ganworks.models import ModelFamily, get_family
from generator_service.metrics import GeneratorMetrics

log = logging.getLogger(__name__)


class UnknownModelError(GanworksError):
    """The call names a run this server does not serve."""


class UnknownVersionError(GanworksError):
    """The call pins a step the run never published."""


class ModelNotReadyError(GanworksError):
    """The run has no loaded snapshot yet (nothing published, or loading)."""


class RefusedVersionError(GanworksError):
    """The pinned snapshot failed verification and will not be served."""


@dataclasses.dataclass(eq=False)
class LoadedModel:
    """One verified, warmed-up snapshot, ready for batches."""

    manifest: Manifest
    generator: torch.nn.Module
    device: torch.device

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
        on_change: Callable[[], None] = lambda: None,
    ):
        self.store, self.runs, self.device = store, [check_run_id(run) for run in runs], device
        self.keep_versions, self.poll_seconds = keep_versions, poll_seconds
        self.metrics, self._warm_up, self._on_change = metrics, warm_up, on_change
        self._cache: dict[str, collections.OrderedDict[int, LoadedModel]] = {run: collections.OrderedDict() for run in self.runs}
        self._current: dict[str, LoadedModel | None] = {run: None for run in self.runs}
        self._seen_latest: dict[str, tuple[str, float]] = {}
        self._refused: dict[tuple[str, int], str] = {}
        self._loading: dict[tuple[str, int], asyncio.Future] = {}
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
            raise UnknownModelError(f"model {run!r} is not served here; served models: {', '.join(self.runs) or '(none)'}")
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
            raise RefusedVersionError(f"version {version} of model {run!r} is refused: {self._refused[(run, version)]}")
        return await self._load(run, version, pinned=True)

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads what each run's LATEST names (runs with nothing published yet are watched), then keeps watching."""
        await asyncio.gather(*(self._poll(run) for run in self.runs))
        self._task = asyncio.create_task(self._watch(), name="model-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            for run in self.runs:
                try:
                    await self._poll(run)
                except Exception:  # noqa: BLE001 - the watcher must outlive any one bad poll
                    log.exception("checking for new snapshots of model %s failed; will try again", run)

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
        if self._seen_latest.get(run) == marker and self._current[run] is not None:
            return
        try:
            step = await loop.run_in_executor(self._io, read_latest, self.store, run)
        except (StoreError, CheckpointError) as exc:
            log.warning("cannot read LATEST of model %s: %s", run, exc)
            return
        if step is None:
            return
        if (run, step) in self._refused:
            self._seen_latest[run] = marker
            return
        try:
            model = await self._load(run, step, pinned=False)
        except CheckpointError:
            self._seen_latest[run] = marker  # refused for good; wait for LATEST to move
            return
        except Exception:  # noqa: BLE001 - transient (store down): logged in _load, retried next poll
            return
        self._seen_latest[run] = marker
        self._make_current(model)

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
            model = LoadedModel(manifest=snapshot.manifest, generator=snapshot.generator, device=self.device)
            await self._warm_up(model)
        except UnknownVersionError:
            raise
        except Exception as exc:
            self.metrics.model_loads.labels(run, load_result(exc)).inc()
            if isinstance(exc, CheckpointError):
                self._refused[(run, step)] = str(exc)
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

    def _check_published(self, run: str, step: int) -> None:
        try:
            read_manifest(self.store, run, step)
        except CheckpointFormatError:
            raise
        except CheckpointError:
            raise UnknownVersionError(
                f"model {run!r} has no published version {step}; loaded versions: {self.loaded_versions(run) or 'none'} "
                "(use version 0 for the newest)"
            ) from None

    def _evict(self, run: str) -> None:
        cache, current = self._cache[run], self._current[run]
        for step in list(cache):  # least recently used first
            if len(cache) <= self.keep_versions:
                break
            if current is not None and step == current.step:
                continue
            del cache[step]
            log.info("unloaded snapshot %d of model %s (keeping %d versions)", step, run, self.keep_versions)
