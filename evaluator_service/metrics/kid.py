"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

Matches StyleGAN3's `kernel_inception_distance.py` and torch-fidelity: cubic polynomial kernel
k(x, y) = (x·y / d + 1)³, unbiased MMD² per subset, subsets drawn without replacement, defaults 100
subsets of 1000; reports the mean and the standard deviation over subsets. Unlike StyleGAN3, a subset
larger than the samples is an error rather than silently shrunk, so numbers stay comparable.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError


def kid(real_features: np.ndarray, fake_features: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    num_subsets, m = int(num_subsets), int(subset_size)
    if m < 2 or num_subsets < 1:
        raise InsufficientSamplesError(f"kid needs subset_size >= 2 and num_subsets >= 1, got {m} and {num_subsets}")
    for what, x in (("reference", real), ("generated", fake)):
        if len(x) < m:
            raise InsufficientSamplesError(
                f"kid.subset_size is {m} but there are only {len(x)} {what} samples; "
                f"set kid.subset_size <= {len(x)} or evaluate more samples"
            )
    d = real.shape[1]
    rng = np.random.RandomState(seed)
    mmds = np.empty(num_subsets)
    for i in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        mmds[i] = within - 2.0 * k_xy.sum() / (m * m)
    return {"kid_mean": float(mmds.mean()), "kid_std": float(mmds.std())}
