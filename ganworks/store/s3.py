"""The S3 store: MinIO or any S3 endpoint through the `minio` SDK, with bounded retries of transient faults."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pathlib
import tempfile
from typing import Any, BinaryIO, Callable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from ganworks.errors import ObjectNotFoundError, StoreAuthError, StoreError, StoreUnavailableError
from ganworks.retry import retry_call
from ganworks.store.base import CHUNK, ArtifactStore, ObjectInfo, check_key

T = TypeVar("T")

_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AllAccessDisabled"}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed", "XMinioServerNotInitialized"}
# Multipart above this size; parts of this size are the most a transfer holds in memory. Parts go one at a
# time: minio's parallel uploader reads ahead into an unbounded queue, which can hold a whole large file.
PART_SIZE = 8 * 1024 * 1024


def retrying_s3_filesystem(attempts: int, **options: Any) -> Any:
    """A pyarrow S3 filesystem that retries with the AWS SDK's backoff, and keeps doing so after pickling.

    Ray Train writes its checkpoints through this filesystem from other processes and fails the whole run on
    the first error; pyarrow's own pickling drops the retry strategy, so the filesystem is rebuilt from its
    options and the attempt count wherever it is unpickled.
    """
    import pyarrow.fs

    class RetryingS3FileSystem(pyarrow.fs.S3FileSystem):
        def __reduce__(self):
            return functools.partial(retrying_s3_filesystem, attempts, **options), ()

    fs = RetryingS3FileSystem(retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=attempts), **options)
    return fs


def pyarrow_retry_attempts(retry_seconds: float) -> int:
    """Attempts whose expected backoff (full jitter: half of min(20 s, 0.05 s * 2^k)) covers retry_seconds."""
    attempts, expected = 1, 0.0
    while expected < retry_seconds and attempts < 100:
        expected += min(20.0, 0.05 * 2**attempts) / 2
        attempts += 1
    return attempts + 2


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in _TRANSIENT_CODES
    return isinstance(exc, (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


class S3Store(ArtifactStore):
    def __init__(self, bucket: str, prefix: str, *, endpoint: str, access_key: str, secret_key: str, region: str, secure: bool, ca_file: str = "", retry_seconds: float = 30.0, create_bucket: bool = True):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.secure = secure
        self.region = region
        self.retry_seconds = retry_seconds
        self._credentials = (access_key, secret_key)
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
            # Our own loop retries with a bounded total time; urllib3's retries would multiply it.
            retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0),
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
            ca_certs=ca_file or None,
        )
        self.client = Minio(endpoint, access_key=access_key or None, secret_key=secret_key or None, secure=secure, region=region, http_client=http)
        if create_bucket:
            self._ensure_bucket()

    def __getstate__(self) -> dict:
        raise TypeError("an S3Store is per process (the MinIO client must not cross processes); pass the URL and open it there")

    # -- error mapping -------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T], key: str = "") -> T:
        try:
            return retry_call(fn, is_transient=_is_transient, total_seconds=self.retry_seconds, what=what)
        except S3Error as exc:
            where = f"s3://{self.bucket}/{self._key(key) if key else ''}"
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None
            if exc.code == "NoSuchBucket":
                raise ObjectNotFoundError(f"bucket {self.bucket!r} does not exist at {self.endpoint}; create it or let ganworks create it (needs s3:CreateBucket)") from None
            if exc.code in _AUTH_CODES:
                raise StoreAuthError(
                    f"{self.endpoint} refused {what} on {where}: {exc.code}. Check GANWORKS_S3_ACCESS_KEY / GANWORKS_S3_SECRET_KEY "
                    f"(or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the key's permissions on bucket {self.bucket!r}"
                ) from None
            raise StoreError(f"{what} on {where} failed: {exc.code}: {exc.message}") from None
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"S3 endpoint {self.endpoint} did not answer {what} within {self.retry_seconds:.0f}s ({type(exc).__name__}); "
                f"check GANWORKS_S3_ENDPOINT and that the server is up"
            ) from None

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _ensure_bucket(self) -> None:
        if not self._call("bucket check", lambda: self.client.bucket_exists(self.bucket)):
            try:
                self._call("bucket creation", lambda: self.client.make_bucket(self.bucket))
            except StoreError as exc:
                if "BucketAlreadyOwnedByYou" in str(exc) or "BucketAlreadyExists" in str(exc):
                    return
                raise

    # -- operations ----------------------------------------------------------------------------------------

    def put_file(self, key: str, path: str | pathlib.Path, content_type: str = "application/octet-stream") -> ObjectInfo:
        name = self._key(key)
        self._call("upload", lambda: self.client.fput_object(self.bucket, name, str(path), content_type=content_type, part_size=PART_SIZE, num_parallel_uploads=1), key)
        return self.stat(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        name = self._key(key)
        self._call("upload", lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data), content_type=content_type), key)
        return self.stat(key)

    def get_file(self, key: str, path: str | pathlib.Path) -> ObjectInfo:
        dst = pathlib.Path(path)

        def download() -> None:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dst.parent)
            try:
                with os.fdopen(fd, "wb") as out, self._stream(key) as stream:
                    for chunk in iter(lambda: stream.read(CHUNK), b""):
                        out.write(chunk)
                os.replace(tmp, dst)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        self._call("download", download, key)
        return self.stat(key)

    @contextlib.contextmanager
    def _stream(self, key: str) -> Iterator[BinaryIO]:
        response = self.client.get_object(self.bucket, self._key(key))
        try:
            yield response  # urllib3 response: a readable, streaming file-like object
        finally:
            response.close()
            response.release_conn()

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        response = self._call("download", lambda: self.client.get_object(self.bucket, self._key(key)), key)
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def get_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            with self._stream(key) as stream:
                return stream.read()

        return self._call("download", read, key)

    def stat(self, key: str) -> ObjectInfo:
        obj = self._call("stat", lambda: self.client.stat_object(self.bucket, self._key(key)), key)
        return ObjectInfo(key=key, size=obj.size or 0, etag=obj.etag or "", modified=obj.last_modified.timestamp() if obj.last_modified else 0.0)

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        full = (f"{self.prefix}/{prefix}" if self.prefix else prefix) if prefix or not self.prefix else self.prefix + "/"
        objects = self._call("list", lambda: list(self.client.list_objects(self.bucket, prefix=full, recursive=recursive)))
        for obj in sorted(objects, key=lambda o: o.object_name):
            yield ObjectInfo(
                key=self._rel(obj.object_name),
                size=obj.size or 0,
                etag=obj.etag or "",
                modified=obj.last_modified.timestamp() if obj.last_modified else 0.0,
            )

    def delete(self, key: str) -> None:
        name = self._key(key)
        self._call("delete", lambda: self.client.remove_object(self.bucket, name), key)

    def pyarrow_filesystem(self, key: str = "") -> tuple[Any, str]:
        scheme = "https" if self.secure else "http"
        fs = retrying_s3_filesystem(
            pyarrow_retry_attempts(self.retry_seconds),
            endpoint_override=f"{scheme}://{self.endpoint}",
            access_key=self._credentials[0] or None,
            secret_key=self._credentials[1] or None,
            region=self.region,
            scheme=scheme,
            connect_timeout=5,
            request_timeout=60,
        )
        path = "/".join(p for p in (self.bucket, self.prefix, key) if p)
        return fs, path
