"""Filters for generated training examples: an independent classifier's check of each example's class, and a privacy
guard that drops examples closer to a training record than training records sit to each other.

Features in, boolean keep-masks out; `ganworks augment` applies them and reports what each dropped.
"""

from __future__ import annotations

import numpy as np

CHUNK = 512  # rows of distances computed at once: memory stays at CHUNK × len(reference)


def table_features(columns: dict[str, np.ndarray], schema, reference: dict[str, np.ndarray], exclude: tuple[str, ...] = ()) -> np.ndarray:
    """Numbers scaled by the reference column's range, categories one-hot × 0.5 over the reference's levels, so the L1
    distance of two rows over the column count is the Gower distance SDMetrics' DCR metrics use."""
    parts = []
    for column in schema.columns:
        if column.name in exclude:
            continue
        values, ref = columns[column.name], reference[column.name]
        if column.kind in ("continuous", "integer"):
            ref = np.asarray(ref, float)
            low, span = float(np.nanmin(ref)), float(np.nanmax(ref) - np.nanmin(ref)) or 1.0
            parts.append(((np.asarray(values, float) - low) / span)[:, None])
        else:
            levels = sorted(set(np.asarray(ref).astype(str)))
            text = np.asarray(values).astype(str)
            parts.append(0.5 * np.stack([text == level for level in levels], axis=1).astype(np.float64))
    return np.concatenate(parts, axis=1)


def image_features(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1], flattened: the distance of two images is their RMS pixel difference (over the pixel count)."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def pooled_image_features(images: np.ndarray, pool: int = 4) -> np.ndarray:
    """Pixels averaged over pool×pool blocks: few enough features for a quick classifier, enough to tell classes apart."""
    n, h, w, c = images.shape
    h2, w2 = h // pool, w // pool
    x = images[:, : h2 * pool, : w2 * pool].astype(np.float32).reshape(n, h2, pool, w2, pool, c).mean(axis=(2, 4))
    return x.reshape(n, -1) / 255.0


def nearest_distances(rows: np.ndarray, reference: np.ndarray, metric: str = "l1", exclude_self: bool = False) -> np.ndarray:
    """Per row, the distance to its closest reference row (L1 / features, or RMS for "l2"); exclude_self when rows is
    reference (then row i is not its own neighbour)."""
    out = np.empty(len(rows))
    ref = reference.astype(np.float32)
    ref_sq = (ref**2).sum(axis=1) if metric == "l2" else None
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK].astype(np.float32)
        if metric == "l2":
            d = np.maximum((part**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * part @ ref.T, 0.0)
        else:
            d = np.abs(part[:, None, :] - ref[None, :, :]).sum(axis=2)
        if exclude_self:
            d[np.arange(len(part)), np.arange(start, start + len(part))] = np.inf
        out[start : start + len(part)] = d.min(axis=1)
    if metric == "l2":
        return np.sqrt(out / rows.shape[1])
    return out / rows.shape[1]


def privacy_threshold(train: np.ndarray, quantile: float, metric: str = "l1", sample: int = 2000, seed: int = 0) -> float:
    """The `quantile` of the training records' distances to their closest other training record (over a fixed sample
    of at most `sample` records, each compared with every training record)."""
    index = np.arange(len(train))
    if len(train) > sample:
        index = np.sort(np.random.default_rng(seed).choice(len(train), sample, replace=False))
    distances = np.empty(len(index))
    for start in range(0, len(index), CHUNK):
        chunk = index[start : start + CHUNK]
        d = _all_distances(train[chunk], train, metric)
        d[np.arange(len(chunk)), chunk] = np.inf
        distances[start : start + len(chunk)] = d.min(axis=1)
    return float(np.quantile(distances, quantile))


def _all_distances(rows: np.ndarray, reference: np.ndarray, metric: str) -> np.ndarray:
    rows, reference = rows.astype(np.float32), reference.astype(np.float32)
    if metric == "l2":
        d = np.maximum((rows**2).sum(axis=1)[:, None] + (reference**2).sum(axis=1)[None, :] - 2.0 * rows @ reference.T, 0.0)
        return np.sqrt(d / rows.shape[1])
    return np.abs(rows[:, None, :] - reference[None, :, :]).sum(axis=2) / rows.shape[1]


def privacy_keep(generated: np.ndarray, train: np.ndarray, threshold: float, metric: str = "l1") -> np.ndarray:
    """Keep an example only when it is farther from every training record than `threshold` (an exact copy never passes)."""
    return nearest_distances(generated, train, metric) > threshold


class ClassCheck:
    """An independent classifier fitted on the real training data (histogram gradient boosting, classes weighted to
    balance, so a rare class is not outvoted by its prior); keeps a generated example it assigns to its own class."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, seed: int = 0):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # deterministic, and not slowed by OpenMP spinning on a busy CPU
            self.model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed, max_iter=200).fit(features, np.asarray(labels).astype(str))

    def keep(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self.model.predict(features) == np.asarray(labels).astype(str)
