"""Per-sample noise and labels: sample i of a request with seed s depends only on (s, i), never on its batch."""

from __future__ import annotations

import numpy as np

# Separate streams so that giving labels explicitly does not change the noise, and vice versa.
_NOISE_STREAM = 0
_LABEL_STREAM = 1


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # SeedSequence hashes the whole entropy tuple, so nearby (seed, index) pairs give independent streams.
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index, stream])))


def sample_noise(seed: int, start: int, count: int, latent_dim: int) -> np.ndarray:
    """Standard normal latents for samples start .. start+count-1 of a request, count × latent_dim float32."""
    out = np.empty((count, latent_dim), dtype=np.float32)
    for row, index in enumerate(range(start, start + count)):
        out[row] = _rng(seed, index, _NOISE_STREAM).standard_normal(latent_dim, dtype=np.float32)
    return out


def sample_labels(seed: int, start: int, count: int, num_classes: int) -> np.ndarray:
    """Uniform class labels for samples start .. start+count-1 of a request."""
    return np.array([_rng(seed, i, _LABEL_STREAM).integers(num_classes) for i in range(start, start + count)], dtype=np.int64)


def truncate(latents: np.ndarray, psi: float) -> np.ndarray:
    """The truncation trick in latent space: pulls latents towards the prior's mean (zero) by psi."""
    return latents if psi == 1.0 else (latents * np.float32(psi)).astype(np.float32, copy=False)
