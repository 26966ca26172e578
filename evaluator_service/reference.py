"""Reference statistics of a dataset under one extractor and resize mode, cached in the store.

    reference-stats/<dataset-id>/<extractor-id>/<resize-mode>-<n>.npz

The file holds the float64 mean and covariance plus the features, logits and labels that KID, P/R/D/C and
mode coverage need. Written atomically (one object put), read with allow_pickle=False, reused across
evaluations and restarts; a file that does not read back is recomputed and replaced.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import zipfile

import numpy as np

from evaluator_service.features import Extractor
from evaluator_service.stats import FeatureStats
from ganworks.data import ImageDataset
from ganworks.errors import ObjectNotFoundError
from ganworks.layout import reference_stats_key

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReferenceStats:
    dataset_id: str
    extractor: str
    resize_mode: str
    features: np.ndarray  # float32 N×D
    logits: np.ndarray  # float32 N×K
    labels: np.ndarray  # int64 N, empty when the dataset has no labels
    stats: FeatureStats

    @property
    def count(self) -> int:
        return len(self.features)


def reference_subset(dataset: ImageDataset, max_samples: int = 50_000) -> tuple[np.ndarray, np.ndarray | None]:
    """The images (and labels) the reference statistics are computed from: all, or a fixed subset of max_samples."""
    if max_samples <= 0 or len(dataset) <= max_samples:
        return dataset.images, dataset.labels
    index = np.sort(np.random.RandomState(0).permutation(len(dataset))[:max_samples])
    return dataset.images[index], (dataset.labels[index] if dataset.labels is not None else None)


def reference_images(dataset: ImageDataset, max_samples: int = 50_000) -> np.ndarray:
    """The uint8 images behind the reference statistics, row for row (for metrics that look at pixels)."""
    return reference_subset(dataset, max_samples)[0]


def _encode(ref: ReferenceStats) -> bytes:
    out = io.BytesIO()
    np.savez(out, mu=ref.stats.mean, sigma=ref.stats.cov, count=np.int64(ref.stats.count), total=ref.stats.total, outer=ref.stats.outer,
             features=ref.features, logits=ref.logits, labels=ref.labels)
    return out.getvalue()


def _decode(data: bytes, dataset_id: str, extractor: str, resize_mode: str, n: int) -> ReferenceStats:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        features, logits, labels = f["features"], f["logits"], f["labels"]
        stats = FeatureStats(int(features.shape[1]), int(f["count"]), f["total"].astype(np.float64), f["outer"].astype(np.float64))
    if len(features) != n or stats.count != n or len(logits) != n:
        raise ValueError(f"holds {len(features)} samples, expected {n}")
    return ReferenceStats(dataset_id, extractor, resize_mode, features, logits, labels, stats)


def load_or_compute(store, dataset: ImageDataset, extractor: Extractor, resize_mode: str, max_samples: int = 50_000, batch_size: int = 64) -> tuple[ReferenceStats, bool]:
    """The cached reference statistics, computing and storing them first if needed; also says whether it was cached."""
    images, labels = reference_subset(dataset, max_samples)
    n = len(images)
    key = reference_stats_key(dataset.id, extractor.id, resize_mode, n)
    try:
        ref = _decode(store.get_bytes(key), dataset.id, extractor.id, resize_mode, n)
        if ref.features.shape[1] == extractor.feature_dim:
            return ref, True
        log.warning("%s has %d-d features, the extractor gives %d-d; recomputing", store.url_for(key), ref.features.shape[1], extractor.feature_dim)
    except ObjectNotFoundError:
        pass
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        log.warning("%s does not read back (%s); recomputing it", store.url_for(key), exc)
    log.info("computing reference statistics of %s with %s (%s, %d images)", dataset.id, extractor.id, resize_mode, n)
    features, logits = extractor.extract(images, resize_mode, batch_size)
    ref = ReferenceStats(dataset.id, extractor.id, resize_mode, features.astype(np.float32), logits.astype(np.float32),
                         labels if labels is not None else np.zeros(0, np.int64), FeatureStats.of(features))
    store.put_bytes(key, _encode(ref))
    return ref, False
