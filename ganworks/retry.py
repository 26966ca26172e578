"""Retry with exponential backoff, jitter and a bounded total time."""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry_call(
    fn: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    total_seconds: float = 30.0,
    initial_delay: float = 0.2,
    max_delay: float = 5.0,
    what: str = "operation",
) -> T:
    """Calls fn until it succeeds, a non-transient error is raised, or total_seconds have passed.

    The last transient error is re-raised when the budget runs out, so callers can map it to a typed error.
    """
    deadline = time.monotonic() + total_seconds
    delay = initial_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - classified right below
            if not is_transient(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            sleep = min(delay * (0.5 + random.random()), max_delay, remaining)
            log.debug("%s failed (attempt %d, %s); retrying in %.2fs", what, attempt, type(exc).__name__, sleep)
            time.sleep(sleep)
            delay = min(delay * 2, max_delay)
