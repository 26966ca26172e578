"""The metrics agree with their reference formulations and give the known answers on toy data."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError, MetricComputationError
from evaluator_service.metrics import compute
from evaluator_service.metrics.fid import frechet_distance, frechet_distance_sqrtm, rank_warnings
from evaluator_service.stats import FeatureStats


def _gaussian_stats(rng, d, n):
    a = rng.randn(d, d) / np.sqrt(d)
    x = rng.randn(n, d) @ a + rng.randn(d)
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_agrees_with_sqrtm_formulation_on_well_conditioned_statistics(seed):
    rng = np.random.RandomState(seed)
    mu1, s1 = _gaussian_stats(rng, 96, 2000)
    mu2, s2 = _gaussian_stats(rng, 96, 2000)
    ours, baseline = frechet_distance(mu1, s1, mu2, s2), frechet_distance_sqrtm(mu1, s1, mu2, s2)
    assert ours == pytest.approx(baseline, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_fid_agrees_with_sqrtm_formulation_on_rank_deficient_statistics(seed):
    rng = np.random.RandomState(seed)
    x, y = rng.randn(40, 64), rng.randn(50, 64) * 1.5 + 0.3  # fewer samples than dimensions: singular covariances
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    assert np.linalg.matrix_rank(s1) < 64
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance_sqrtm(mu1, s1, mu2, s2), rel=1e-3)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.RandomState(3).randn(500, 64)
    assert abs(compute("fid", x, x)["fid"]) < 1e-8


def test_fid_from_merged_batch_statistics_equals_fid_of_all_features():
    rng = np.random.RandomState(4)
    x, y = rng.randn(600, 32), rng.randn(700, 32) + 0.2
    parts = [FeatureStats.of(y[i : i + 128]) for i in range(0, 700, 128)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    np.testing.assert_allclose(merged.cov, np.cov(y, rowvar=False), rtol=1e-10, atol=1e-12)
    assert compute("fid", x, merged)["fid"] == pytest.approx(compute("fid", x, y)["fid"], rel=1e-10)


def test_fid_refuses_statistics_that_are_not_positive_semidefinite():
    bad = -np.eye(8)
    with pytest.raises(MetricComputationError, match="imaginary"):
        frechet_distance(np.zeros(8), np.eye(8), np.zeros(8), bad)


def test_fid_with_fewer_samples_than_dimensions_is_flagged():
    rng = np.random.RandomState(5)
    warnings = rank_warnings(rng.randn(1000, 64), rng.randn(30, 64))
    assert len(warnings) == 1 and "30 generated samples for 64-d" in warnings[0]


def test_kid_is_zero_in_expectation_for_two_samples_of_one_distribution():
    rng = np.random.RandomState(6)
    same = [compute("kid", rng.randn(200, 16), rng.randn(200, 16), subset_size=200, num_subsets=1)["kid_mean"] for _ in range(30)]
    shifted = [compute("kid", rng.randn(200, 16), rng.randn(200, 16) + 0.3, subset_size=200, num_subsets=1)["kid_mean"] for _ in range(5)]
    stderr = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * stderr
    assert np.mean(shifted) > 10 * stderr


def test_kid_subset_larger_than_the_samples_is_an_error_naming_the_parameter():
    rng = np.random.RandomState(7)
    with pytest.raises(InsufficientSamplesError, match=r"kid.subset_size is 1000 but there are only 300 generated"):
        compute("kid", rng.randn(2000, 8), rng.randn(300, 8))


def test_prdc_of_two_samples_of_one_distribution_matches_the_expected_values():
    rng = np.random.RandomState(8)
    n = 1000
    result = compute("prdc", rng.randn(n, 4), rng.randn(n, 4))
    # Naeem et al.: E[density] = 1 and E[coverage] = 1 − Π_{i=1..k} (N−i)/(2N−i) ≈ 1 − 2^−k for identical distributions.
    expected_coverage = 1 - np.prod([(n - i) / (2 * n - i) for i in range(1, 6)])
    assert result["coverage"] == pytest.approx(expected_coverage, abs=0.02)
    assert result["density"] == pytest.approx(1.0, abs=0.1)
    assert result["precision"] > 0.85 and result["recall"] > 0.85


def test_prdc_of_disjoint_distributions_is_zero():
    rng = np.random.RandomState(9)
    result = compute("prdc", rng.randn(300, 4), rng.randn(300, 4) + 50)
    assert result == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_of_a_generator_missing_one_of_two_modes_has_full_precision_and_half_recall():
    rng = np.random.RandomState(10)
    real = np.concatenate([rng.randn(500, 4), rng.randn(500, 4) + 40])
    fake = rng.randn(1000, 4)
    result = compute("prdc", real, fake)
    assert result["precision"] > 0.9
    assert result["recall"] == pytest.approx(0.5, abs=0.03)
    assert result["coverage"] == pytest.approx(0.5, abs=0.03)


def test_prdc_nearest_k_is_configurable():
    rng = np.random.RandomState(11)
    real, fake = rng.randn(400, 4), rng.randn(400, 4)
    small, large = compute("prdc", real, fake, nearest_k=1)["coverage"], compute("prdc", real, fake, nearest_k=10)["coverage"]
    assert small < large


def test_inception_score_of_uniform_logits_is_one():
    result = compute("is", None, np.zeros((500, 1008)))
    assert result["inception_score_mean"] == pytest.approx(1.0, abs=1e-12)
    assert result["inception_score_std"] == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_the_number_of_classes():
    logits = np.eye(10)[np.tile(np.arange(10), 100)] * 100.0
    assert compute("is", None, logits)["inception_score_mean"] == pytest.approx(10.0, rel=1e-6)


def test_mode_coverage_counts_classes_and_kl_of_a_generator_missing_half_the_classes():
    real_labels = np.tile(np.arange(10), 50)
    fake_logits = np.eye(10)[np.tile(np.arange(5), 100)]
    result = compute("mode_coverage", real_labels, fake_logits)
    assert result["classes_covered"] == 5 and result["class_coverage"] == 0.5
    assert result["class_kl"] > np.log(2)


def test_memorization_flags_copies_of_training_samples_and_not_fresh_ones():
    rng = np.random.RandomState(12)
    train, held_out = rng.randn(800, 8), rng.randn(400, 8)
    copies = compute("memorization", held_out, train[:300] + 1e-6, train_features=train, quantile=0.05)
    fresh = compute("memorization", held_out, rng.randn(2000, 8), train_features=train, quantile=0.05)
    assert copies["memorization_rate"] == 1.0
    assert fresh["memorization_rate"] == pytest.approx(0.05, abs=0.03)


def test_diversity_of_a_collapsed_generator_is_low_with_many_duplicates():
    rng = np.random.RandomState(13)
    real = rng.randn(500, 8)
    collapsed = compute("diversity", real, rng.randn(500, 8) * 0.01)
    healthy = compute("diversity", real, rng.randn(500, 8))
    assert collapsed["diversity"] < 0.05 and collapsed["duplicate_fraction"] > 0.5
    assert healthy["diversity"] == pytest.approx(1.0, abs=0.05) and healthy["duplicate_fraction"] < 0.01


def test_unknown_metric_or_parameter_is_an_error_listing_what_exists():
    x = np.zeros((10, 2))
    with pytest.raises(InvalidRequestError, match="unknown metric 'fdi'; known: fid, kid"):
        compute("fdi", x, x)
    with pytest.raises(InvalidRequestError, match="kid.subset_size"):
        compute("kid", x, x, subset=5)
