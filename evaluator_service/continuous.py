"""Continuous evaluation: every new snapshot of the watched runs is evaluated once, oldest first.

The report in the store is the record: a snapshot whose report exists is done, so a restarted evaluator
picks up where the last one stopped without evaluating anything twice. A snapshot that keeps failing is
given up after `max_attempts` (logged; its failures counted by reason).
"""

from __future__ import annotations

import asyncio
import logging

from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.jobs import FAILED, JobManager, QueueFullError
from evaluator_service.settings import EvaluatorSettings
from ganworks.checkpoint import list_snapshots
from ganworks.errors import GanworksError

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

    def _reported(self, run: str, step: int) -> bool:
        request = EvaluationRequest(run=run, version=step)
        p = plan(self.store, request, self.settings)
        return self.store.exists(p.report_key)

    def _pending(self) -> list[tuple[str, int]]:
        """(run, step) of every snapshot without a report, oldest first per run."""
        out = []
        for run in self.settings.runs:
            for step in list_snapshots(self.store, run):
                if self.attempts.get((run, step), 0) >= self.settings.max_attempts:
                    continue
                try:
                    if not self._reported(run, step):
                        out.append((run, step))
                except GanworksError as exc:
                    log.warning("cannot evaluate %s step %d: %s", run, step, exc)
                    self.attempts[(run, step)] = self.settings.max_attempts
        return out

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pending = await loop.run_in_executor(self.jobs.executor, self._pending)
                for run, step in pending:
                    await self._evaluate(run, step)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a store outage; the next poll tries again
                log.exception("continuous evaluation poll failed; retrying in %.0fs", self.settings.poll_seconds)
            await asyncio.sleep(self.settings.poll_seconds)

    async def _evaluate(self, run: str, step: int) -> None:
        try:
            job = await self.jobs.submit(EvaluationRequest(run=run, version=step))
        except QueueFullError:
            return  # user requests fill the queue; this snapshot is picked up at the next poll
        except GanworksError as exc:
            self.attempts[(run, step)] = self.settings.max_attempts
            log.warning("continuous evaluation of %s step %d refused: %s", run, step, exc)
            return
        await self.jobs.wait(job)
        if job.state == FAILED:
            self.attempts[(run, step)] = self.attempts.get((run, step), 0) + 1
            left = self.settings.max_attempts - self.attempts[(run, step)]
            log.warning("continuous evaluation of %s step %d failed (%s); %s", run, step, job.reason, f"{left} attempts left" if left > 0 else "giving up")
