"""Evaluation jobs: a bounded queue in front of a fixed number of workers, progress for watchers, a record of each outcome.

A job that fails keeps its reason (state FAILED, `error`, a `reason` label on the failure counter) and
writes nothing: a wrong or partial number never reaches the store or the gauges.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
import uuid

from evaluator_service.cache import BoundedCache
from evaluator_service.errors import EvaluationError
from evaluator_service.evaluation import EvaluationRequest, Plan, plan, run_evaluation
from evaluator_service.features import ExtractorCache
from evaluator_service.exporter import EvaluatorMetrics
from evaluator_service.settings import EvaluatorSettings
from ganworks.data import ImageDataset
from ganworks.errors import GanworksError, StoreError

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"


class QueueFullError(EvaluationError):
    reason = "queue_full"


@dataclasses.dataclass
class Job:
    """One evaluation's record. While it waits or runs it holds its Plan; once done only what the API shows, so
    a kept job pins no dataset, reference statistics or features."""

    id: str
    request: EvaluationRequest
    plan: Plan | None
    run: str
    step: int
    metric_names: list[str]
    extractor: str
    resize_mode: str
    num_samples: int
    dataset_id: str
    state: str = PENDING
    phase: str = "queued"
    progress: float = 0.0
    metrics: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    error: str = ""
    reason: str = ""
    report_url: str = ""
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float = 0.0
    finished_at: float = 0.0
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)

    @classmethod
    def of(cls, job_id: str, request: EvaluationRequest, p: Plan) -> "Job":
        return cls(id=job_id, request=request, plan=p, run=p.run, step=p.step, metric_names=list(p.metrics), extractor=p.extractor,
                   resize_mode=p.resize_mode, num_samples=p.num_samples, dataset_id=p.dataset_id)

    def touch(self) -> None:
        """Wakes every watcher and arms a fresh event for the next change."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, EvaluationError):
        return exc.reason
    if isinstance(exc, StoreError):
        return "store_error"
    if isinstance(exc, GanworksError):
        return "invalid_input"
    return "internal"


class JobManager:
    def __init__(self, store, settings: EvaluatorSettings, metrics: EvaluatorMetrics, extractors: ExtractorCache):
        self.store, self.settings, self.metrics, self.extractors = store, settings, metrics, extractors
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.datasets: BoundedCache[ImageDataset] = BoundedCache("datasets", settings.max_cached_datasets)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.max_queue_size)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent_jobs + 1, thread_name_prefix="evaluation")
        self._workers: list[asyncio.Task] = []

    async def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"evaluation-worker-{i}") for i in range(self.settings.max_concurrent_jobs)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def plan(self, request: EvaluationRequest) -> Plan:
        """Validates a request off the event loop (it reads the store and the dataset)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, plan, self.store, request, self.settings, self.datasets)

    async def submit(self, request: EvaluationRequest) -> Job:
        """Plans and queues an evaluation; QueueFullError when the queue is full, a typed error when the request is wrong."""
        if self.queue.full():
            raise QueueFullError(f"{self.queue.qsize()} evaluations are already waiting (max_queue_size {self.settings.max_queue_size}); retry when one finishes")
        p = await self.plan(request)
        job = Job.of(uuid.uuid4().hex[:16], request, p)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(f"{self.queue.qsize()} evaluations are already waiting (max_queue_size {self.settings.max_queue_size}); retry when one finishes") from None
        self.jobs[job.id] = job
        self.prune()
        self.metrics.queue_depth.set(self.queue.qsize())
        log.info("queued evaluation %s of %s step %d (%s, n=%d)", job.id, p.run, p.step, p.extractor, p.num_samples)
        return job

    def prune(self, now: float | None = None) -> None:
        """Drops finished jobs older than keep_jobs_seconds, then the oldest finished ones beyond keep_jobs; never a live one."""
        now = time.time() if now is None else now
        done = [j for j in self.jobs.values() if j.done]
        expired = {j.id for j in done if now - j.finished_at > self.settings.keep_jobs_seconds}
        excess = len(self.jobs) - len(expired) - self.settings.keep_jobs
        for j in done:
            if excess <= 0:
                break
            if j.id not in expired:
                expired.add(j.id)
                excess -= 1
        for job_id in expired:
            del self.jobs[job_id]

    def get(self, job_id: str) -> Job | None:
        self.prune()
        return self.jobs.get(job_id)

    def listed(self, run: str = "") -> list[Job]:
        """Kept jobs, newest first."""
        self.prune()
        return [j for j in reversed(self.jobs.values()) if not run or j.run == run]

    async def wait(self, job: Job) -> Job:
        while not job.done:
            await job.changed.wait()
        return job

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            self.metrics.queue_depth.set(self.queue.qsize())
            job.state, job.started_at, job.phase = RUNNING, time.time(), "starting"
            job.touch()

            def progress(phase: str, fraction: float, job: Job = job) -> None:
                def update() -> None:
                    job.phase, job.progress = phase, max(job.progress, min(fraction, 1.0))
                    job.touch()

                loop.call_soon_threadsafe(update)

            started = time.monotonic()
            try:
                report = await loop.run_in_executor(self.executor, run_evaluation, self.store, job.plan, self.settings, self.extractors, progress)
            except Exception as exc:  # every failure becomes a FAILED job with a reason, never a crashed worker
                job.state, job.error, job.reason = FAILED, str(exc) or type(exc).__name__, failure_reason(exc)
                if job.reason == "internal":
                    log.exception("evaluation %s failed unexpectedly", job.id)
                    job.error = f"internal error ({type(exc).__name__}: {exc}); the evaluator log has the details"
                else:
                    log.warning("evaluation %s of %s step %d failed (%s): %s", job.id, job.run, job.step, job.reason, job.error)
                self.metrics.record_failure(job.reason, time.monotonic() - started)
            else:
                job.state, job.metrics, job.warnings = SUCCEEDED, report["metrics"], report["warnings"]
                job.report_url, job.progress = self.store.url_for(job.plan.report_key), 1.0
                self.metrics.record_success(report, time.monotonic() - started, gauges=job.plan.default_set)
            finally:
                job.finished_at, job.plan = time.time(), None
                job.touch()
                self.queue.task_done()
                self.prune()
