"""Continuous evaluation: every new snapshot of the watched runs is evaluated once, oldest first.

The report in the store is the record: a snapshot whose report exists is done, so a restarted evaluator
picks up where the last one stopped without evaluating anything twice. A snapshot that keeps failing is
given up after `max_attempts` (logged; its failures counted by reason); an unreachable generator or store
is an outage, not the snapshot's fault, so those failures are retried at every poll without counting.

Inception metrics cost minutes on a CPU, the classifier's seconds: with `continuous_inception_extractor` set, the
default (classifier) evaluation still runs for every snapshot, and a second one with the Inception extractor and
`continuous_inception_metrics` runs for every k-th snapshot (`continuous_inception_every`) and the run's final one
(the snapshot at the run's `--steps`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.jobs import FAILED, JobManager, QueueFullError
from evaluator_service.settings import EvaluatorSettings
from ganworks.checkpoint import list_snapshots
from ganworks.errors import GanworksError, StoreError
from ganworks.layout import run_info_key

log = logging.getLogger(__name__)

# Failure reasons that are an outage, not the snapshot's fault: retried at every poll without counting an attempt.
OUTAGES = {"generator_unavailable", "store_error"}


class ContinuousEvaluator:
    def __init__(self, store, settings: EvaluatorSettings, jobs: JobManager):
        self.store, self.settings, self.jobs = store, settings, jobs
        self.attempts: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="continuous-evaluation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _pending(self) -> list[EvaluationRequest]:
        """A request for every snapshot (and cadence) without a report, oldest first per run."""
        out = []
        for run in self.settings.runs:
            published = list_snapshots(self.store, run)
            for template, steps in self._cadences(run, published):
                steps = [s for s in steps if self.attempts.get(_key(template, s), 0) < self.settings.max_attempts]
                if not steps:
                    continue
                try:
                    # One plan per cadence; the report key differs between snapshots by the step only.
                    base = plan(self.store, dataclasses.replace(template, version=steps[-1]), self.settings, getattr(self.jobs, "datasets", None))
                except GanworksError as exc:
                    log.warning("cannot evaluate run %s: %s", run, exc)
                    continue
                out += [dataclasses.replace(template, version=s) for s in steps if not self.store.exists(dataclasses.replace(base, step=s).report_key)]
        return sorted(out, key=lambda r: (self.settings.runs.index(r.run), r.version))

    def _cadences(self, run: str, published: list[int]) -> list[tuple[EvaluationRequest, list[int]]]:
        cadences = [(EvaluationRequest(run=run), published)]
        if self.settings.continuous_inception_extractor and published:
            try:
                final = int(self.store.get_json(run_info_key(run)).get("options", {}).get("steps") or 0)
            except (GanworksError, ValueError, AttributeError):
                final = 0
            every = self.settings.continuous_inception_every
            steps = [s for i, s in enumerate(published) if (i + 1) % every == 0 or (final and s >= final)]
            request = EvaluationRequest(run=run, extractor=self.settings.continuous_inception_extractor, metrics=list(self.settings.continuous_inception_metrics))
            cadences.append((request, steps))
        return cadences

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pending = await loop.run_in_executor(self.jobs.executor, self._pending)
                for request in pending:
                    if not await self._evaluate(request):
                        break  # keep the order: later snapshots wait until this one could be tried
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a store outage; the next poll tries again
                log.exception("continuous evaluation poll failed; retrying in %.0fs", self.settings.poll_seconds)
            await asyncio.sleep(self.settings.poll_seconds)

    async def _evaluate(self, request: EvaluationRequest) -> bool:
        """Evaluates one snapshot; False when it should be tried again at the next poll before anything newer."""
        run, step, key = request.run, request.version, _key(request, request.version)
        try:
            job = await self.jobs.submit(request)
        except (QueueFullError, StoreError):
            return False  # user requests fill the queue, or the store is out: try again at the next poll
        except GanworksError as exc:
            self.attempts[key] = self.settings.max_attempts
            log.warning("continuous evaluation of %s step %d refused: %s", run, step, exc)
            return True
        await self.jobs.wait(job)
        if job.state == FAILED and job.reason in OUTAGES:
            log.warning("continuous evaluation of %s step %d failed (%s); retrying at the next poll", run, step, job.reason)
            return False
        if job.state == FAILED:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            left = self.settings.max_attempts - self.attempts[key]
            log.warning("continuous evaluation of %s step %d failed (%s); %s", run, step, job.reason, f"{left} attempts left" if left > 0 else "giving up")
        return True


def _key(request: EvaluationRequest, step: int) -> tuple[str, int, str]:
    return request.run, step, request.extractor
