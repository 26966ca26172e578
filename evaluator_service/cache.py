"""A bounded, thread-safe least-recently-used map: every cache the evaluator keeps across evaluations is one of these."""

from __future__ import annotations

import collections
import threading
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """At most `capacity` entries; the least recently used one is dropped first. Its size is exported as a gauge, and the
    entries it had to drop as a counter: a count that keeps rising means the capacity is too small for the work (every
    evaluation loads again what the one before dropped)."""

    def __init__(self, name: str, capacity: int):
        if capacity < 1:
            raise ValueError(f"cache {name}: capacity must be >= 1, got {capacity}")
        self.name, self.capacity = name, capacity
        self._entries: collections.OrderedDict[Hashable, V] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        """The cached value, or create() stored under key. Creation runs under the lock: two callers never build one entry twice."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = create()
            self._entries[key] = value
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1
            return value

    def __len__(self) -> int:
        return len(self._entries)
