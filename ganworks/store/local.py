"""The embedded store: a local folder, with atomic writes by rename."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Any, BinaryIO, Iterator

from ganworks.errors import ObjectNotFoundError, StoreError, StoreEscapeError
from ganworks.store.base import ArtifactStore, ObjectInfo, check_key


class LocalStore(ArtifactStore):
    def __init__(self, root: str | pathlib.Path):
        self.root = pathlib.Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.root}: {exc.strerror}; choose a writable --store") from None
        self.url = self.root.as_uri()

    def _path(self, key: str) -> pathlib.Path:
        """The path of key, once it is known to stay inside the root after every symbolic link is followed."""
        path = self.root / check_key(key)
        if not self._inside(path):
            # The target is not named: it is not the store's to show.
            raise StoreEscapeError(f"{key!r} in {self.url} is a symbolic link (or under one) that leads outside the store; the store reads and writes only inside its folder: replace the link by the file itself")
        return path

    def _inside(self, path: pathlib.Path) -> bool:
        real = path.resolve()
        return real == self.root or real.is_relative_to(self.root)

    def _info(self, key: str, path: pathlib.Path) -> ObjectInfo:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {key!r} in {self.url} (it is a folder)")
        # Every write replaces the file with a new one (a new inode), so an overwrite of the same size within
        # one tick of the file system's clock still changes the etag.
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}", modified=st.st_mtime)

    @contextlib.contextmanager
    def _atomic(self, key: str) -> Iterator[pathlib.Path]:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dst.parent)
        os.close(fd)
        try:
            yield pathlib.Path(tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_file(self, key: str, path: str | pathlib.Path, content_type: str = "application/octet-stream") -> ObjectInfo:
        with self._atomic(key) as tmp:
            shutil.copyfile(path, tmp)
        return self.stat(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        with self._atomic(key) as tmp:
            tmp.write_bytes(data)
        return self.stat(key)

    def get_file(self, key: str, path: str | pathlib.Path) -> ObjectInfo:
        info = self.stat(key)
        dst = pathlib.Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dst.parent)
        os.close(fd)
        try:
            shutil.copyfile(self._path(key), tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return info

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            stream = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None
        with stream:
            yield stream

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._path(key))

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not self._inside(base.parent if prefix and not prefix.endswith("/") else base):
            return
        # A prefix may end inside a name ("runs/r" matches "runs/r1/..."), as on S3.
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return
        if recursive:
            paths = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-") and self._inside(p))
        else:
            paths = sorted(p for p in folder.iterdir() if not p.name.startswith(".tmp-") and self._inside(p))
        for path in paths:
            key = path.relative_to(self.root).as_posix()
            if not key.startswith(prefix):
                continue
            if path.is_dir():
                yield ObjectInfo(key=key + "/", size=0, etag="", modified=path.stat().st_mtime)
            else:
                try:
                    yield self._info(key, path)
                except ObjectNotFoundError:
                    continue  # removed while listing

    def delete(self, key: str) -> None:
        path = self.root / check_key(key)
        if not self._inside(path.parent):
            raise StoreEscapeError(f"{key!r} in {self.url} is under a symbolic link that leads outside the store; nothing was deleted")
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def pyarrow_filesystem(self, key: str = "") -> tuple[Any, str]:
        import pyarrow.fs

        path = self.root / key if key else self.root
        return pyarrow.fs.LocalFileSystem(), str(path)
