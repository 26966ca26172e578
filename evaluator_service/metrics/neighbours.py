"""Euclidean distances in row blocks, shared by the nearest-neighbour metrics (P/R/D/C, diversity, memorization)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK = 1024


def pairwise(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray | None = None) -> np.ndarray:
    """‖a_i − b_j‖ for every pair, in float64."""
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b) if b_sq is None else b_sq
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(d2, 0.0, None))


def blocks(a: np.ndarray, b: np.ndarray, block: int = BLOCK) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows of a, distances from those rows to every row of b), a block at a time to bound memory."""
    b_sq = np.einsum("ij,ij->i", b, b)
    for start in range(0, len(a), block):
        rows = slice(start, min(start + block, len(a)))
        yield rows, pairwise(a[rows], b, b_sq)


def kth_neighbour_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest other row (the row itself is the 0-th)."""
    if k >= len(x):
        raise ValueError(f"k={k} nearest neighbours need more than {k} samples, got {len(x)}")
    out = np.empty(len(x))
    for rows, d in blocks(x, x):
        out[rows] = np.partition(d, k, axis=1)[:, k]
    return out


def nearest_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of a to the nearest row of b."""
    out = np.empty(len(a))
    for rows, d in blocks(a, b):
        out[rows] = d.min(axis=1)
    return out


def as_float64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))
