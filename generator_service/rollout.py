"""RolloutRouter: picks the snapshot each unpinned call gets from the run's rollout policy in the store.

The policy is polled like LATEST; a policy is applied only once every step it names is loaded, verified
and warmed up, so a change never fails a call. A policy naming a missing or refused step leaves the
stable step serving, and the reason goes to the log and to ganworks_generator_rollout_policy_errors_total.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Callable

from ganworks.errors import CheckpointError, ObjectNotFoundError, StoreError
from ganworks.layout import rollout_key
from ganworks.rollout import CANARY, FOLLOW_LATEST, RolloutPolicy, RolloutPolicyError, goes_to_candidate, read_policy
from generator_service.metrics import ROUTED, GeneratorMetrics
from generator_service.models import LoadedModel, ModelManager, RefusedVersionError, UnknownVersionError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Route:
    """What unpinned calls of one run get: the stable model, and for a canary the candidate and its share."""

    stable: LoadedModel
    candidate: LoadedModel | None = None
    fraction: float = 0.0

    def pick(self, seed: int) -> tuple[LoadedModel, str]:
        if self.candidate is not None and goes_to_candidate(seed, self.fraction):
            return self.candidate, "candidate"
        return self.stable, "stable"


class RolloutRouter:
    def __init__(self, store, manager: ModelManager, metrics: GeneratorMetrics, poll_seconds: float):
        self.store, self.manager, self.metrics, self.poll_seconds = store, manager, metrics, poll_seconds
        self._routes: dict[str, Route | None] = {run: None for run in manager.runs}  # None: follow LATEST
        self._applied: dict[str, tuple] = {}
        self._problem: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        for run in manager.runs:
            metrics.rollout_policy_ok.labels(run).set(1)

    async def resolve(self, run: str, version: int, seed: int) -> LoadedModel:
        """The model a call gets: the pinned version when given, else what the run's policy routes this seed to."""
        route = self._routes.get(run)
        if version or route is None:
            model = await self.manager.get(run, version)
            track = "pinned" if version else "latest"
        else:
            model, track = route.pick(seed)
        self.metrics.rollout_calls.labels(run, track).inc()
        ROUTED.set((run, track))  # read back when the call is counted, in this same task
        return model

    def route(self, run: str) -> Route | None:
        return self._routes.get(run)

    async def start(self) -> None:
        await asyncio.gather(*(self._poll(run) for run in self.manager.runs))
        self._task = asyncio.create_task(self._watch(), name="rollout-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        runs = self.manager.runs
        while True:
            await asyncio.sleep(self.poll_seconds)
            # The runs' policies are checked side by side; one bad poll is logged and retried, never fatal.
            outcomes = await asyncio.gather(*(self._poll(run) for run in runs), return_exceptions=True)
            for run, outcome in zip(runs, outcomes):
                if isinstance(outcome, Exception):
                    log.error("checking the rollout policy of model %s failed; will try again", run, exc_info=outcome)

    async def _poll(self, run: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, self.store.stat, rollout_key(run))
            marker = (info.etag, info.modified)
        except ObjectNotFoundError:
            marker = None
        except StoreError as exc:
            log.warning("cannot check the rollout policy of model %s: %s", run, exc)
            return
        if run in self._applied and self._applied[run] == marker:
            return
        try:
            policy = RolloutPolicy() if marker is None else await loop.run_in_executor(None, read_policy, self.store, run)
        except RolloutPolicyError as exc:
            self._report(run, "bad_policy", f"{exc}; keeping the current routing")
            return
        except StoreError as exc:
            log.warning("cannot read the rollout policy of model %s: %s", run, exc)
            return
        if await self._apply(run, policy):
            self._applied[run] = marker

    async def _apply(self, run: str, policy: RolloutPolicy) -> bool:
        """Switches the run to the policy once its steps are ready; False (retried next poll) when one is not."""
        if policy.mode == FOLLOW_LATEST:
            self._switch(run, None, policy.describe())
            return True
        stable = await self._load(run, policy.stable, policy, lambda: self._serving_now(run))
        if stable is None:
            return False  # what serves now keeps serving
        if policy.mode != CANARY:
            self._switch(run, Route(stable), policy.describe())
            return True
        candidate = await self._load(run, policy.candidate, policy, lambda: f"step {stable.step} (stable)")
        if candidate is None:
            self._switch(run, Route(stable), f"step {stable.step} serves every call; the canary's candidate {policy.candidate} is not served", applied=False)
            return False
        self._switch(run, Route(stable, candidate, policy.fraction), policy.describe())
        return True

    def _serving_now(self, run: str) -> str:
        current = self._routes[run]
        return f"step {current.stable.step}" if current else "the step LATEST names"

    async def _load(self, run: str, step: int, policy: RolloutPolicy, fallback: Callable[[], str]) -> LoadedModel | None:
        """The loaded step, or None: a missing or refused step is reported with what serves instead; a store outage is retried."""
        try:
            return await self.manager.get(run, step)
        except UnknownVersionError:
            reason, what = "missing_step", "not published"
        except (RefusedVersionError, CheckpointError):
            reason, what = "refused_step", "refused (failed verification)"
        except StoreError as exc:
            log.warning("cannot load step %d of model %s for its rollout policy (will retry): %s", step, run, exc)
            return None
        self._report(run, reason, f"policy '{policy.describe()}' names step {step}, which is {what}; {fallback()} keeps serving")
        return None

    def _report(self, run: str, reason: str, message: str) -> None:
        self.metrics.rollout_policy_ok.labels(run).set(0)
        if self._problem.get(run) != message:  # once per problem, not once per poll
            self._problem[run] = message
            self.metrics.rollout_policy_errors.labels(run, reason).inc()
            log.error("rollout of model %s: %s", run, message)

    def _switch(self, run: str, route: Route | None, description: str, applied: bool = True) -> None:
        previous = self._routes[run]
        self._routes[run] = route
        if applied:
            self._problem.pop(run, None)
            self.metrics.rollout_policy_ok.labels(run).set(1)
        self.metrics.rollout_step.labels(run, "stable").set(route.stable.step if route else 0)
        self.metrics.rollout_step.labels(run, "candidate").set(route.candidate.step if route and route.candidate else 0)
        if previous != route:
            log.info("rollout of model %s: %s", run, description)
