"""`ganworks generator promote | rollback`: writes a run's rollout policy after checking the steps it names."""

from __future__ import annotations

import logging

from ganworks.checkpoint import list_snapshots, load_snapshot, read_latest
from ganworks.errors import CheckpointError, GanworksError
from ganworks.layout import check_run_id
from ganworks.rollout import RolloutPolicyError, promoted, read_policy, rollback_targets, write_policy

log = logging.getLogger(__name__)


class RolloutCommandError(GanworksError):
    """promote/rollback cannot do what was asked; the message says why and what to do."""


def _verify(store, run: str, step: int) -> str | None:
    """None when the snapshot loads and its sha256 matches its manifest, else why not."""
    try:
        load_snapshot(store, run, step)
    except CheckpointError as exc:
        return str(exc)
    return None


def change_policy(store, action: str, run: str, step: int | None = None, canary: float | None = None) -> str:
    """Applies promote or rollback to the run's policy in the store; returns the line to print."""
    check_run_id(run)
    current = read_policy(store, run)
    if action == "promote":
        if canary is not None and not 0.0 < canary < 1.0:
            raise RolloutCommandError(f"--canary must be a fraction in (0, 1), got {canary}")
        problem = _verify(store, run, step)
        if problem:
            published = list_snapshots(store, run)
            raise RolloutCommandError(f"cannot promote step {step} of run {run!r}: {problem} (published steps: {published or 'none'})")
        try:
            policy = promoted(current, step, read_latest(store, run), canary)
        except RolloutPolicyError as exc:
            raise RolloutCommandError(str(exc)) from None
    else:
        policy = None
        for target, target_step in rollback_targets(current, list_snapshots(store, run), read_latest(store, run)):
            problem = _verify(store, run, target_step)
            if problem is None:
                policy = target
                break
            log.warning("rollback skips step %d of run %s: %s", target_step, run, problem)
        if policy is None:
            raise RolloutCommandError(f"run {run!r} has no earlier verified step to roll back to (policy now: {current.describe()}); `promote RUN STEP` pins one")
    write_policy(store, run, policy)
    return f"run {run}: {policy.describe()} (was {current.describe()}); replicas switch within their poll interval"
