"""DynamicBatcher: groups waiting requests into model calls of up to max_batch_size samples, off the event loop."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from generator_service.jobs import Job
from generator_service.kinds import serving_kind
from generator_service.metrics import GeneratorMetrics


def batch_shapes(max_batch_size: int) -> list[int]:
    """The batch sizes the model is ever called with: 1, 2, 4, 8, then multiples of 8, and the maximum.

    A batch is padded up to the next of these. oneDNN (and cuDNN) keep per-shape state, so calling the model
    with every size from 1 to max_batch_size would grow the process's memory with each new size seen;
    a dozen shapes, all run at warm-up, keep it flat after warm-up at the cost of at most 7 padded samples.
    """
    shapes = {1, 2, 4, 8, max_batch_size} | set(range(8, max_batch_size + 1, 8))
    return sorted(s for s in shapes if s <= max_batch_size)


class QueueFullError(Exception):
    """Admitting the request would exceed max_queue_size waiting samples."""


class DeadlineExpiredError(Exception):
    """The call's deadline passed before its samples were computed."""


@dataclasses.dataclass(eq=False)
class _Part:
    job: Job
    start: int  # offset within the job
    count: int
    enqueued_at: float


class DynamicBatcher:
    """One bounded queue per (model, version, output kind); one worker per device runs the batches in turn."""

    def __init__(self, *, max_batch_size: int, max_queue_delay: float, max_queue_size: int, metrics: GeneratorMetrics):
        self.max_batch_size, self.max_queue_delay, self.max_queue_size = max_batch_size, max_queue_delay, max_queue_size
        self.metrics = metrics
        self.shapes = batch_shapes(max_batch_size)
        self._shape_set = frozenset(self.shapes)
        self._queues: dict[tuple[str, int, int], collections.deque[_Part]] = {}
        self._waiting = 0
        self._arrived = asyncio.Event()
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._workers: dict[str, asyncio.Task] = {}
        metrics.queue_capacity.set(max_queue_size)
        metrics.queue_depth.set(0)

    # -- producers ----------------------------------------------------------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        """Queues jobs, all or none; QueueFullError at once if their samples do not fit."""
        total = sum(job.num_samples for job in jobs)
        if self._waiting + total > self.max_queue_size:
            raise QueueFullError(
                f"server busy: {self._waiting} samples already waiting, room for {self.max_queue_size - self._waiting}, "
                f"this call needs {total}; retry with backoff or ask for fewer samples"
            )
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.future = loop.create_future()
            job.remaining = job.num_samples
            key = (job.model.run, job.model.step, job.output_kind)
            self._queues.setdefault(key, collections.deque()).append(_Part(job, 0, job.num_samples, now))
            self._ensure_worker(job.model.device)
        self._waiting += total
        self.metrics.queue_depth.set(self._waiting)
        self._arrived.set()

    async def run_on_device(self, device: torch.device, fn: Callable[[], Any]) -> Any:
        """Runs fn in the device's executor, between batches (used to warm up new snapshots)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(device), fn)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        for pool in self._executors.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # -- the device worker --------------------------------------------------------------------------------

    def _executor(self, device: torch.device) -> ThreadPoolExecutor:
        name = str(device)
        if name not in self._executors:
            # One thread per device: torch parallelises inside an op; two batches at once would only contend.
            self._executors[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        return self._executors[name]

    def _ensure_worker(self, device: torch.device) -> None:
        name = str(device)
        if name not in self._workers:
            self._workers[name] = asyncio.create_task(self._work(device), name=f"batcher-{name}")

    def _oldest_key(self, device: torch.device) -> tuple | None:
        best, best_time = None, None
        for key, queue in list(self._queues.items()):
            if not queue:
                del self._queues[key]
                continue
            if queue[0].job.model.device == device and (best_time is None or queue[0].enqueued_at < best_time):
                best, best_time = key, queue[0].enqueued_at
        return best

    async def _work(self, device: torch.device) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = self._oldest_key(device)
            if key is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            queue = self._queues[key]
            # The batch leaves when full or when its first request has waited max_queue_delay; while the
            # device was busy, waiting requests piled up, so under load batches leave full and at once.
            leave_at = queue[0].enqueued_at + self.max_queue_delay
            while sum(p.count for p in queue) < self.max_batch_size and (left := leave_at - time.monotonic()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            parts = self._take(queue, self._batch_limit(queue))
            if not parts:
                continue
            try:
                size = sum(p.count for p in parts)
                padded = next(shape for shape in self.shapes if shape >= size)
                images, labels = await loop.run_in_executor(self._executor(device), _compute, parts, padded, key[2])
                self._deliver(parts, images, labels)
            except Exception as exc:  # noqa: BLE001 - a failing batch fails its calls, never the worker
                for part in parts:
                    _fail(part.job, exc)

    def _batch_limit(self, queue: collections.deque[_Part]) -> int:
        """How many samples the next batch takes: all that wait, up to max_batch_size, cut down to a batch shape.

        The model runs padded to a shape (1, 2, 4, 8, 16, ...): 33 waiting samples would run as 40. Under load the
        cut-off requests lead the next batch, which starts as soon as this one ends, so no compute goes to padding
        (64 closed-loop clients settle into alternating batches of about 32: padding cost a tenth of the model's
        time). The cut falls between requests, never inside one (a request's samples stay in one batch shape), and
        a full batch is never cut.
        """
        waiting, best = 0, 0
        for part in queue:
            waiting += part.count
            if waiting >= self.max_batch_size:
                return self.max_batch_size
            if waiting in self._shape_set:
                best = waiting
        return best or self.max_batch_size

    def _take(self, queue: collections.deque[_Part], limit: int) -> list[_Part]:
        """Pops up to `limit` samples, splitting the last request if needed; drops dead calls first."""
        parts, room, now = [], limit, time.monotonic()
        while queue and room:
            part = queue[0]
            job = part.job
            if job.future.done() or job.expired(now):
                queue.popleft()
                self._waiting -= part.count
                if not job.future.done():
                    job.future.set_exception(DeadlineExpiredError(f"deadline passed after {now - part.enqueued_at:.3f}s in the queue, before compute"))
                continue
            if part.count > room:
                queue[0] = _Part(job, part.start + room, part.count - room, part.enqueued_at)
                part = _Part(job, part.start, room, part.enqueued_at)
            else:
                queue.popleft()
            parts.append(part)
            room -= part.count
            self._waiting -= part.count
            self.metrics.queue_wait.observe(now - part.enqueued_at)
        self.metrics.queue_depth.set(self._waiting)
        if parts:
            self.metrics.batch_size.observe(limit - room)
        return parts

    def _deliver(self, parts: list[_Part], images: np.ndarray, labels: np.ndarray | None) -> None:
        offset = 0
        for part in parts:
            job = part.job
            chunk = images[offset : offset + part.count]
            chunk_labels = labels[offset : offset + part.count] if labels is not None else None
            offset += part.count
            if job.future.done():
                continue
            if part.count == job.num_samples:  # the whole job in one batch (the common case): its slice is the answer, no copy
                job.images = chunk
                job.used_labels = chunk_labels if chunk_labels is not None else np.full(job.num_samples, -1, dtype=np.int64)
            else:
                if job.images is None:
                    job.images = np.empty((job.num_samples, *images.shape[1:]), dtype=images.dtype)
                    job.used_labels = np.full(job.num_samples, -1, dtype=np.int64)
                job.images[part.start : part.start + part.count] = chunk
                if chunk_labels is not None:
                    job.used_labels[part.start : part.start + part.count] = chunk_labels
            job.remaining -= part.count
            self.metrics.samples.labels(job.model.run).inc(part.count)
            if job.remaining == 0:
                job.future.set_result(job)


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


def _compute(parts: list[_Part], padded: int, output_kind: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Runs in the device thread: the model's kind computes the batch (see generator_service/kinds/)."""
    model = parts[0].job.model
    return serving_kind(model).compute(model, parts, padded, output_kind)
