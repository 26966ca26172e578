"""Per-sample random streams: sample i of a request with seed s draws from (s, i, stream) alone, never from its batch."""

from __future__ import annotations

import numpy as np

# Separate streams so that giving labels explicitly does not change the noise, and vice versa.
NOISE_STREAM = 0
LABEL_STREAM = 1


def sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # SeedSequence hashes the whole entropy tuple, so nearby (seed, index) pairs give independent streams.
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index, stream])))


def normal_rows(seed: int, start: int, count: int, dim: int, stream: int = NOISE_STREAM) -> np.ndarray:
    """Standard normal rows for samples start .. start+count-1, count × dim float32."""
    out = np.empty((count, dim), dtype=np.float32)
    for row, index in enumerate(range(start, start + count)):
        out[row] = sample_rng(seed, index, stream).standard_normal(dim, dtype=np.float32)
    return out


def uniform_labels(seed: int, start: int, count: int, num_classes: int, stream: int = LABEL_STREAM) -> np.ndarray:
    """Uniform class labels for samples start .. start+count-1."""
    return np.array([sample_rng(seed, i, stream).integers(num_classes) for i in range(start, start + count)], dtype=np.int64)
