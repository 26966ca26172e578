"""The artifact store: one interface over `file:///path` folders and `s3://bucket/prefix` (MinIO, S3)."""

from ganworks.store.base import ArtifactStore, ObjectInfo
from ganworks.store.urls import open_store, parse_store_url

__all__ = ["ArtifactStore", "ObjectInfo", "open_store", "parse_store_url"]
