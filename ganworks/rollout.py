"""The rollout policy of a run: which snapshot step calls without a version get, kept in the store so every replica agrees.

    runs/<run>/rollout.json   {"mode": "follow-latest" | "pinned" | "canary", "stable": S, "candidate": C, "fraction": f, "previous": [...]}

follow-latest (also when the object is absent) serves the step LATEST names; pinned serves `stable` whatever
is published; canary sends the calls whose seed hashes below `fraction` to `candidate` and the rest to
`stable`, so a caller that retries with the same seed gets the same step. `previous` lists the stable steps
that came before (oldest first): a rollback returns to the newest of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import Any

from ganworks.errors import GanworksError, ObjectNotFoundError
from ganworks.layout import rollout_key

FOLLOW_LATEST, PINNED, CANARY = "follow-latest", "pinned", "canary"
MODES = (FOLLOW_LATEST, PINNED, CANARY)


class RolloutPolicyError(GanworksError):
    """A rollout policy that cannot be applied as written (bad JSON, unknown mode, fraction out of range)."""


@dataclasses.dataclass(frozen=True)
class RolloutPolicy:
    mode: str = FOLLOW_LATEST
    stable: int = 0
    candidate: int = 0
    fraction: float = 0.0
    previous: tuple[int, ...] = ()
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RolloutPolicyError(f"rollout mode {self.mode!r} is unknown; use one of {', '.join(MODES)}")
        if self.mode in (PINNED, CANARY) and self.stable <= 0:
            raise RolloutPolicyError(f"a {self.mode} policy needs a stable step > 0, got {self.stable}")
        if self.mode == CANARY:
            if self.candidate <= 0:
                raise RolloutPolicyError(f"a canary policy needs a candidate step > 0, got {self.candidate}")
            if not (math.isfinite(self.fraction) and 0.0 < self.fraction < 1.0):
                raise RolloutPolicyError(f"canary fraction must be in (0, 1), got {self.fraction} (--canary)")

    def describe(self) -> str:
        if self.mode == CANARY:
            return f"canary: {self.fraction:.0%} of unpinned calls to step {self.candidate}, the rest to step {self.stable}"
        if self.mode == PINNED:
            return f"pinned to step {self.stable}"
        return "follow-latest: the step LATEST names"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "previous": list(self.previous)}

    @classmethod
    def from_json(cls, data: Any) -> "RolloutPolicy":
        if not isinstance(data, dict):
            raise RolloutPolicyError("rollout.json is not a JSON object")
        try:
            return cls(
                mode=str(data.get("mode", FOLLOW_LATEST)),
                stable=int(data.get("stable", 0)),
                candidate=int(data.get("candidate", 0)),
                fraction=float(data.get("fraction", 0.0)),
                previous=tuple(int(s) for s in data.get("previous", ())),
                updated_at=float(data.get("updated_at", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise RolloutPolicyError(f"rollout.json has a field of the wrong type ({exc})") from None


def read_policy(store, run: str) -> RolloutPolicy:
    try:
        data = store.get_json(rollout_key(run))
    except ObjectNotFoundError:
        return RolloutPolicy()
    except ValueError as exc:
        raise RolloutPolicyError(f"rollout.json of run {run!r} is not valid JSON ({exc})") from None
    return RolloutPolicy.from_json(data)


def write_policy(store, run: str, policy: RolloutPolicy) -> None:
    store.put_json(rollout_key(run), dataclasses.replace(policy, updated_at=time.time()).to_json())


def canary_share(seed: int) -> float:
    """A number in [0, 1) that depends only on the seed, evenly spread over seeds (so a retry routes the same)."""
    digest = hashlib.blake2b(int(seed).to_bytes(8, "little", signed=False), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def goes_to_candidate(seed: int, fraction: float) -> bool:
    return canary_share(seed) < fraction


def promoted(current: RolloutPolicy, step: int, served_step: int | None, canary: float | None = None) -> RolloutPolicy:
    """The policy after `promote STEP [--canary f]`; served_step is what calls get now when following LATEST."""
    base = current.stable if current.mode in (PINNED, CANARY) else served_step
    if canary is not None:
        if not base:
            raise RolloutPolicyError("a canary needs a stable step to compare with, and nothing is published or pinned yet; promote a step without --canary first")
        return RolloutPolicy(CANARY, stable=base, candidate=step, fraction=canary, previous=current.previous)
    previous = current.previous + ((base,) if base and base != step else ())
    return RolloutPolicy(PINNED, stable=step, previous=previous)


def rollback_targets(current: RolloutPolicy, published: list[int], latest: int | None) -> list[tuple[RolloutPolicy, int]]:
    """The policies a rollback may go to, best first, each with the step it serves (the caller keeps the first that verifies)."""
    if current.mode == CANARY:
        return [(RolloutPolicy(PINNED, stable=current.stable, previous=current.previous), current.stable)]
    if current.mode == PINNED:
        previous = list(current.previous)
        return [(RolloutPolicy(PINNED, stable=previous[i], previous=tuple(previous[:i])), previous[i]) for i in reversed(range(len(previous)))]
    older = sorted((s for s in published if latest is not None and s < latest), reverse=True)
    return [(RolloutPolicy(PINNED, stable=s), s) for s in older]
