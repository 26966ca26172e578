"""A store that dies at a chosen write, the way a publisher killed mid-publish leaves the real store behind it."""

from __future__ import annotations

from typing import Any


class WriterKilled(Exception):
    """Raised instead of the write the writer was killed before; nothing of that write reached the store."""


class KilledBeforeStore:
    """Passes everything to `store` except writes of `key`: the first one raises WriterKilled, as if the process died there."""

    def __init__(self, store, key: str):
        self._store, self._key = store, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _check(self, key: str) -> None:
        if key == self._key:
            raise WriterKilled(f"killed before writing {key}")

    def put_bytes(self, key: str, data: bytes, *args, **kwargs):
        self._check(key)
        return self._store.put_bytes(key, data, *args, **kwargs)

    def put_json(self, key: str, value: Any):
        self._check(key)
        return self._store.put_json(key, value)

    def put_file(self, key: str, path, *args, **kwargs):
        self._check(key)
        return self._store.put_file(key, path, *args, **kwargs)


def killed_before(store, key: str) -> KilledBeforeStore:
    return KilledBeforeStore(store, key)
