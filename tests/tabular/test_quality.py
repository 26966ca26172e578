"""SDMetrics-style quality metrics, each against values computed by hand on tiny tables."""

from __future__ import annotations

import numpy as np
import pytest

from ganworks.tabular.data import Column, Schema
from evaluator_service.metrics.table_scores import (closer_to_train_share, column_pair_trends, contingency_similarity, correlation_similarity, ks_complement,
                                      ml_efficacy, quality_report, tv_complement)


def test_ks_complement_is_one_minus_the_largest_gap_between_the_two_cdfs():
    # at x = 2 the real CDF is 0.5 and the synthetic one 0: KS = 0.5
    assert ks_complement(np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])) == pytest.approx(0.5)


def test_tv_complement_is_one_minus_half_the_summed_frequency_differences():
    # real a/b = .5/.5, synthetic .25/.75: TV = (.25 + .25) / 2
    assert tv_complement(np.array(["a", "a", "b", "b"]), np.array(["a", "b", "b", "b"])) == pytest.approx(0.75)


def test_correlation_similarity_of_opposite_correlations_is_zero():
    up = np.array([1.0, 2.0, 3.0])
    assert correlation_similarity(up, up, up, up[::-1]) == pytest.approx(0.0)
    assert correlation_similarity(up, up, up, up * 2) == pytest.approx(1.0)


def test_contingency_similarity_compares_the_joint_frequencies():
    # real (x,1) .5 (y,2) .5; synthetic (x,1) .25 (x,2) .25 (y,2) .5: TV = (.25 + .25) / 2
    real_a, real_b = np.array(["x", "x", "y", "y"]), np.array(["1", "1", "2", "2"])
    syn_a, syn_b = np.array(["x", "x", "y", "y"]), np.array(["1", "2", "2", "2"])
    assert contingency_similarity(real_a, real_b, syn_a, syn_b) == pytest.approx(0.75)


def test_the_overall_quality_is_the_mean_of_shapes_and_pair_trends():
    schema = Schema((Column("a", "continuous"), Column("b", "continuous")))
    real = {"a": np.array([1.0, 2, 3, 4]), "b": np.array([1.0, 2, 3, 4])}
    synthetic = {"a": np.array([3.0, 4, 5, 6]), "b": np.array([6.0, 5, 4, 3])}
    # shapes: KS complement 0.5 for each column; trends: correlation +1 vs −1 → 0
    assert quality_report(real, synthetic, schema) == pytest.approx({"column_shapes": 0.5, "column_pair_trends": 0.0, "overall": 0.25})


def test_a_number_paired_with_a_category_is_binned_on_the_real_values():
    schema = Schema((Column("amount", "continuous"), Column("kind", "categorical")))
    real = {"amount": np.array([0.0, 10.0]), "kind": np.array(["a", "b"])}
    swapped = {"amount": np.array([0.0, 10.0]), "kind": np.array(["b", "a"])}
    assert column_pair_trends(real, real, schema) == {("amount", "kind"): pytest.approx(1.0)}
    assert column_pair_trends(real, swapped, schema) == {("amount", "kind"): pytest.approx(0.0)}


def test_closer_to_train_share_counts_synthetic_rows_nearer_a_training_row_than_any_holdout_row():
    schema = Schema((Column("x", "continuous"),))
    train, holdout = {"x": np.array([0.0, 10.0])}, {"x": np.array([5.0])}
    # range 10: row 1 is 0.1 from train, 0.4 from holdout; row 6 is 0.4 / 0.1; row 9 is 0.1 / 0.4
    assert closer_to_train_share({"x": np.array([1.0, 6.0, 9.0])}, train, holdout, schema) == pytest.approx(2 / 3)


def test_ml_efficacy_of_a_copy_of_the_training_rows_is_one_and_of_a_one_class_table_zero():
    schema = Schema((Column("x", "continuous"), Column("y", "categorical")), target="y")
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    train = {"x": x, "y": np.where(x > 0.5, "rare", "common").astype(object)}
    x_test = rng.normal(size=100)
    test = {"x": x_test, "y": np.where(x_test > 0.5, "rare", "common").astype(object)}
    copy = ml_efficacy(train, train, test, schema)
    assert copy["ratio"] == pytest.approx(1.0) and copy["f1_real"] > 0.8
    one_class = {"x": x, "y": np.array(["common"] * 200, dtype=object)}
    assert ml_efficacy(train, one_class, test, schema)["ratio"] == 0.0
