"""Polling with a deadline: tests wait for what they need to see, never for a fixed time."""

from __future__ import annotations

import time
import urllib.request
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Calls `condition` until it returns something truthy, which is returned; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:.0f}s")
        time.sleep(interval)


def metric_value(url: str, name: str) -> float:
    """One unlabelled sample of a /metrics page (0 when absent or the page is unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0
