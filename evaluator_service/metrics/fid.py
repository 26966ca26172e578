"""Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule…").

Matches pytorch-fid's `calculate_frechet_distance` (float64 statistics, covariance with n−1, eps·I
added to both covariances when the first attempt is not finite, an error when the imaginary part is
significant, atol 1e-3) but computes tr √(Σ1 Σ2) exactly on symmetric matrices instead of with
`scipy.linalg.sqrtm`: with Σ1 = L Lᵀ (Cholesky, or V diag(w) Vᵀ when Σ1 is singular),
Σ1 Σ2 is similar to Lᵀ Σ2 L, which is symmetric positive semi-definite, so
tr √(Σ1 Σ2) = Σ √λ(Lᵀ Σ2 L) — one factorisation and one `eigvalsh`, several times faster at d = 2048.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from evaluator_service.errors import MetricComputationError
from evaluator_service.metrics.spec import GENERATED_STATS, REFERENCE_STATS, Metric, Param
from evaluator_service.stats import FeatureStats

EPS = 1e-6
IMAGINARY_ATOL = 1e-3


def _half_factor(sigma: np.ndarray) -> np.ndarray:
    """A matrix L with L Lᵀ = sigma (sigma symmetric PSD): Cholesky when it exists, else V √w."""
    try:
        return scipy.linalg.cholesky(sigma, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(sigma)
        return v * np.sqrt(np.clip(w, 0.0, None))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> complex:
    """tr √(sigma1 sigma2); complex when sigma1 sigma2 has significantly negative eigenvalues."""
    factor = _half_factor(sigma1)
    inner = factor.T @ sigma2 @ factor
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    real = np.sqrt(np.clip(eig, 0.0, None)).sum()
    imaginary = np.sqrt(np.clip(-eig, 0.0, None)).sum()
    return complex(real, imaginary)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = EPS) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2) for two Gaussians."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise MetricComputationError(f"statistics do not match: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}")
    for name, value in (("mean", mu1), ("mean", mu2), ("covariance", sigma1), ("covariance", sigma2)):
        if not np.isfinite(value).all():
            raise MetricComputationError(f"a {name} holds NaN or infinity; the features it came from are not finite")
    diff = mu1 - mu2
    try:
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError:
        tr_covmean = complex("nan")
    if not np.isfinite(tr_covmean.real):
        # The reference implementation's fallback: regularise both covariances and try again.
        offset = np.eye(sigma1.shape[0]) * eps
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    if abs(tr_covmean.imag) > IMAGINARY_ATOL:
        raise MetricComputationError(
            f"tr √(Σ1 Σ2) has an imaginary part of {tr_covmean.imag:.3g} (> {IMAGINARY_ATOL}); the covariances are not positive "
            "semi-definite — they were not computed from real features"
        )
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean.real)


def frechet_distance_sqrtm(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = EPS) -> float:
    """The `scipy.linalg.sqrtm` formulation of pytorch-fid, kept as the baseline for tests and benchmarks."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_ATOL):
            raise MetricComputationError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def as_stats(features: np.ndarray | FeatureStats) -> FeatureStats:
    return features if isinstance(features, FeatureStats) else FeatureStats.of(np.asarray(features))


def fid(real_features: np.ndarray | FeatureStats, fake_features: np.ndarray | FeatureStats, eps: float = EPS) -> dict[str, float]:
    """FID between real and generated features (arrays N×D or accumulated FeatureStats)."""
    real, fake = as_stats(real_features), as_stats(fake_features)
    if real.dim != fake.dim:
        raise MetricComputationError(f"real features are {real.dim}-d, generated ones {fake.dim}-d; use one extractor for both")
    return {"fid": frechet_distance(real.mean, real.cov, fake.mean, fake.cov, eps=eps)}


def rank_warnings(real_features: np.ndarray | FeatureStats, fake_features: np.ndarray | FeatureStats) -> list[str]:
    """Why a FID may be unreliable: fewer samples than feature dimensions leaves the covariance rank-deficient."""
    out = []
    for what, stats in (("reference", as_stats(real_features)), ("generated", as_stats(fake_features))):
        if stats.count <= stats.dim:
            out.append(
                f"fid: {stats.count} {what} samples for {stats.dim}-d features gives a rank-deficient covariance; "
                f"the FID is biased and not comparable with published numbers — use more than {stats.dim} samples"
            )
    return out


def fid_warnings(real_features: np.ndarray | FeatureStats, fake_features: np.ndarray | FeatureStats) -> list[str]:
    """rank_warnings, and a reference smaller than the generated set (FIDs at different n differ by their bias)."""
    real, fake = as_stats(real_features), as_stats(fake_features)
    out = rank_warnings(real, fake)
    if real.count < fake.count:
        out.append(f"the reference has {real.count} images, fewer than the {fake.count} generated; FIDs at different n are not comparable")
    return out


METRIC = Metric(
    "fid", fid, REFERENCE_STATS, GENERATED_STATS, ("fid",), "Fréchet distance of feature Gaussians (lower is better)",
    params=(Param("eps", float, EPS, 0.0, 1.0, "regulariser added to the covariances when the first attempt is not finite", open_low=True),),
    warnings=fid_warnings,
    gauges={"fid": "fid"},
)
