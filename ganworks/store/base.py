"""The store interface every backend implements; keys are relative POSIX paths like `runs/r1/LATEST`."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import pathlib
import posixpath
from typing import Any, BinaryIO, ContextManager, Iterator

from ganworks.errors import StoreConfigError

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: float


def check_key(key: str) -> str:
    """Rejects keys that could escape the store's root or are empty."""
    if not key or key.startswith("/") or "\\" in key:
        raise StoreConfigError(f"invalid store key {key!r}: use a relative POSIX path like 'folder/name.json'")
    norm = posixpath.normpath(key)
    if norm.startswith("..") or norm != key.rstrip("/") or norm == ".":
        raise StoreConfigError(f"invalid store key {key!r}: no '.', '..' or empty path segments")
    return norm


class ArtifactStore(abc.ABC):
    """A flat key space of immutable-ish objects with atomic single-object writes."""

    url: str

    @abc.abstractmethod
    def put_file(self, key: str, path: str | pathlib.Path, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Uploads a local file, streaming it (multipart for large files on S3); the object appears whole or not at all."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Writes a small object atomically."""

    @abc.abstractmethod
    def get_file(self, key: str, path: str | pathlib.Path) -> ObjectInfo:
        """Downloads an object to a local file, streaming; the file appears whole or not at all."""

    @abc.abstractmethod
    def open_read(self, key: str) -> ContextManager[BinaryIO]:
        """Opens an object for streaming reads."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Reads a small object whole."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, etag and modification time; ObjectNotFoundError if missing."""

    @abc.abstractmethod
    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under prefix in key order (recursive=False lists one level, 'folders' end with '/')."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Removes an object; a missing object is not an error."""

    @abc.abstractmethod
    def pyarrow_filesystem(self, key: str = "") -> tuple[Any, str]:
        """A pyarrow filesystem and path for key, for Ray Train's storage_path/storage_filesystem."""

    def exists(self, key: str) -> bool:
        from ganworks.errors import ObjectNotFoundError

        try:
            self.stat(key)
            return True
        except ObjectNotFoundError:
            return False

    def put_json(self, key: str, value: Any) -> ObjectInfo:
        return self.put_bytes(key, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self.open_read(key) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def url_for(self, key: str) -> str:
        return self.url.rstrip("/") + "/" + key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
