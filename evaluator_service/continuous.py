"""Continuous evaluation: every new snapshot of the watched runs is evaluated once, oldest first.

The report in the store is the record: a snapshot whose report exists is done, so a restarted evaluator
picks up where the last one stopped without evaluating anything twice. A snapshot that keeps failing is
given up after `max_attempts` (logged; its failures counted by reason); an unreachable generator or store
is an outage, not the snapshot's fault, so those failures are retried at every poll without counting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.jobs import FAILED, JobManager, QueueFullError

OUTAGES = {"generator_unavailable", "store_error"}
from evaluator_service.settings import EvaluatorSettings
from ganworks.checkpoint import list_snapshots
from ganworks.errors import GanworksError, StoreError

log = logging.getLogger(__name__)


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

    def _pending(self) -> list[tuple[str, int]]:
        """(run, step) of every snapshot without a report, oldest first per run."""
        out = []
        for run in self.settings.runs:
            steps = [s for s in list_snapshots(self.store, run) if self.attempts.get((run, s), 0) < self.settings.max_attempts]
            if not steps:
                continue
            try:
                # One plan for the run; the report key differs between snapshots by the step only.
                base = plan(self.store, EvaluationRequest(run=run, version=steps[-1]), self.settings)
            except GanworksError as exc:
                log.warning("cannot evaluate run %s: %s", run, exc)
                continue
            out += [(run, step) for step in steps if not self.store.exists(dataclasses.replace(base, step=step).report_key)]
        return out

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pending = await loop.run_in_executor(self.jobs.executor, self._pending)
                for run, step in pending:
                    if not await self._evaluate(run, step):
                        break  # keep the order: later snapshots wait until this one could be tried
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a store outage; the next poll tries again
                log.exception("continuous evaluation poll failed; retrying in %.0fs", self.settings.poll_seconds)
            await asyncio.sleep(self.settings.poll_seconds)

    async def _evaluate(self, run: str, step: int) -> bool:
        """Evaluates one snapshot; False when it should be tried again at the next poll before anything newer."""
        try:
            job = await self.jobs.submit(EvaluationRequest(run=run, version=step))
        except (QueueFullError, StoreError):
            return False  # user requests fill the queue, or the store is out: try again at the next poll
        except GanworksError as exc:
            self.attempts[(run, step)] = self.settings.max_attempts
            log.warning("continuous evaluation of %s step %d refused: %s", run, step, exc)
            return True
        await self.jobs.wait(job)
        if job.state == FAILED and job.reason in OUTAGES:
            log.warning("continuous evaluation of %s step %d failed (%s); retrying at the next poll", run, step, job.reason)
            return False
        if job.state == FAILED:
            self.attempts[(run, step)] = self.attempts.get((run, step), 0) + 1
            left = self.settings.max_attempts - self.attempts[(run, step)]
            log.warning("continuous evaluation of %s step %d failed (%s); %s", run, step, job.reason, f"{left} attempts left" if left > 0 else "giving up")
        return True
