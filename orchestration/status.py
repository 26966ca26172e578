"""Reads the live state of a running system: the store's newest snapshot and each process's /metrics."""

from __future__ import annotations

import dataclasses
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """A /metrics page as {'name{label="v",...}': value}; empty when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def total(values: dict[str, float], name: str) -> float | None:
    """Sum of every series of one metric name; None when absent."""
    found = [v for k, v in values.items() if k == name or k.startswith(name + "{")]
    return sum(found) if found else None


@dataclasses.dataclass
class RateMeter:
    """Turns successive readings of a counter into a per-second rate."""

    last_value: float | None = None
    last_time: float = 0.0
    rate: float = 0.0

    def update(self, value: float | None) -> float:
        now = time.monotonic()
        if value is not None and self.last_value is not None and now > self.last_time:
            self.rate = max(0.0, value - self.last_value) / (now - self.last_time)
        if value is not None:
            self.last_value, self.last_time = value, now
        return self.rate
