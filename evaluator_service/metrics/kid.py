"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

Matches StyleGAN3's `kernel_inception_distance.py` and torch-fidelity: cubic polynomial kernel
k(x, y) = (x·y / d + 1)³, unbiased MMD² per subset, subsets drawn without replacement, defaults 100
subsets of 1000; reports the mean and the standard deviation over subsets. Unlike StyleGAN3, a subset
larger than the samples is an error rather than silently shrunk, so numbers stay comparable.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError
from evaluator_service.metrics.spec import GENERATED_FEATURES, REFERENCE_FEATURES, Metric, Param


def kid(real_features: np.ndarray, fake_features: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    num_subsets, m = int(num_subsets), int(subset_size)
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


METRIC = Metric(
    "kid", kid, REFERENCE_FEATURES, GENERATED_FEATURES, ("kid_mean", "kid_std"), "unbiased MMD² with a cubic kernel (lower is better)",
    params=(
        # Time grows with num_subsets × subset_size², memory with subset_size² (three float64 kernels).
        Param("num_subsets", int, 100, 1, 1000, "subsets averaged"),
        Param("subset_size", int, 1000, 2, 5000, "samples per subset, from each side", at_most_samples=True),
        Param("seed", int, 0, 0, 2**32 - 1, "seed of the subset draws"),
    ),
    gauges={"kid_mean": "kid"},
)
