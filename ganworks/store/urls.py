"""Parses store URLs and opens the matching backend."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any, Mapping

from ganworks.errors import StoreConfigError
from ganworks.settings import StoreSettings, load_settings
from ganworks.store.base import ArtifactStore

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
USAGE = "use file:///absolute/path, a plain folder path, or s3://bucket/prefix"


@dataclasses.dataclass(frozen=True)
class StoreURL:
    scheme: str  # "file" or "s3"
    path: str  # folder for file, bucket for s3
    prefix: str = ""


def parse_store_url(url: str) -> StoreURL:
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError(f"empty store URL; {USAGE}")
    url = url.strip()
    if "://" not in url:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", url) and not re.match(r"^[A-Za-z]:[\\/]", url):
            raise StoreConfigError(f"store URL {url!r} is malformed; {USAGE}")
        return StoreURL("file", url)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreConfigError(f"store URL {url!r} names host {parsed.netloc!r}; a file URL has three slashes: file:///path")
        if not parsed.path:
            raise StoreConfigError(f"store URL {url!r} has no path; {USAGE}")
        return StoreURL("file", urllib.parse.unquote(parsed.path))
    if parsed.scheme in ("s3", "minio"):
        bucket = parsed.netloc
        if "@" in bucket or ":" in bucket:
            raise StoreConfigError(f"store URL {url!r}: put credentials and the endpoint in GANWORKS_S3_* settings, not in the URL; the URL is s3://bucket/prefix")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise StoreConfigError(f"store URL {url!r}: bucket name {bucket!r} is invalid (3–63 characters: lowercase letters, digits, '.', '-')")
        if parsed.query or parsed.fragment:
            raise StoreConfigError(f"store URL {url!r}: no query or fragment allowed; {USAGE}")
        return StoreURL("s3", bucket, parsed.path.strip("/"))
    raise StoreConfigError(f"store URL {url!r} has unknown scheme {parsed.scheme!r}; {USAGE}")


def _endpoint(raw: str) -> tuple[str, bool | None]:
    """'http://host:9000' -> ('host:9000', False); 'host:9000' -> ('host:9000', None)."""
    if "://" in raw:
        parsed = urllib.parse.urlsplit(raw)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path.strip("/"):
            raise StoreConfigError(f"GANWORKS_S3_ENDPOINT={raw!r} is malformed; use host:port or http(s)://host:port")
        return parsed.netloc, parsed.scheme == "https"
    if "/" in raw or not raw:
        raise StoreConfigError(f"GANWORKS_S3_ENDPOINT={raw!r} is malformed; use host:port or http(s)://host:port")
    return raw, None


def open_store(url: str | None = None, settings: StoreSettings | None = None, overrides: Mapping[str, Any] | None = None) -> ArtifactStore:
    """Opens the store at url (default: settings.store), creating the folder or bucket if missing."""
    settings = settings or load_settings(StoreSettings, overrides)
    parsed = parse_store_url(url or settings.store)
    if parsed.scheme == "file":
        from ganworks.store.local import LocalStore

        return LocalStore(parsed.path)
    from ganworks.store.s3 import S3Store

    endpoint, secure = _endpoint(settings.s3_endpoint or "s3.amazonaws.com")
    return S3Store(
        parsed.path,
        parsed.prefix,
        endpoint=endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        region=settings.s3_region,
        secure=settings.s3_secure if secure is None else secure,
        ca_file=settings.s3_ca_file,
        retry_seconds=settings.retry_seconds,
    )
