"""`table_quality` is SDMetrics' QualityReport score: the sdmetrics package scores the same rows, and ganworks'
fallback (used when sdmetrics is not installed) agrees with it within 1e-3."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator_service.metrics import compute, metric_sources
from evaluator_service.metrics.sdmetrics_quality import quality_score
from ganworks.tabular.data import Column, Schema, TabularDataset, load_table

sdmetrics = pytest.importorskip("sdmetrics")


def _shuffled(columns: dict, seed: int) -> dict:
    """Each column permuted on its own: the same column shapes, the pair trends destroyed."""
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(np.asarray(values)) for name, values in columns.items()}


def _mixed(n: int, seed: int, strength: float) -> TabularDataset:
    rng = np.random.default_rng(seed)
    default = np.where(rng.random(n) < 0.2, "Yes", "No").astype(object)
    student = rng.random(n) < 0.3 + 0.4 * strength * (default == "Yes")
    balance = np.where(default == "Yes", rng.normal(800 + 1000 * strength, 100, n), rng.normal(800, 200, n))
    income = 40_000 - 15_000 * student + rng.normal(0, 8_000, n)
    columns = {"default": default, "student": student, "balance": balance, "income": income, "cards": np.round(balance / 400 + rng.integers(0, 2, n)).astype(float)}
    schema = Schema((Column("default", "categorical"), Column("student", "boolean"), Column("balance", "continuous"), Column("income", "continuous"),
                     Column("cards", "integer")), target="default")
    return TabularDataset(columns=columns, schema=schema, id=f"mixed-{seed}", source="test")


def _cases():
    train, test = load_table("breast-cancer", split="train"), load_table("breast-cancer", split="test")
    credit = load_table("credit-default")
    half = len(credit) // 2
    first = {k: np.asarray(v)[:half] for k, v in credit.columns.items()}
    second = {k: np.asarray(v)[half:] for k, v in credit.columns.items()}
    mixed_real, mixed_fake = _mixed(2000, 0, 1.0), _mixed(1500, 1, 0.5)
    return [
        ("breast-cancer train vs test", train.columns, test.columns, train.schema),
        ("breast-cancer train vs shuffled", train.columns, _shuffled(train.columns, 2), train.schema),
        ("credit-default halves", first, second, credit.schema),
        ("credit-default vs shuffled", first, _shuffled(second, 3), credit.schema),
        ("mixed kinds, weaker trends", mixed_real.columns, mixed_fake.columns, mixed_real.schema),
    ]


@pytest.mark.parametrize("case", range(5))
def test_ganworks_quality_equals_sdmetrics_quality_report_within_1e_3_on_the_same_rows(case):
    name, real, fake, schema = _cases()[case]
    theirs = quality_score(real, fake, schema, engine="sdmetrics")
    ours = quality_score(real, fake, schema, engine="ganworks")
    for key in ("overall", "column_shapes", "column_pair_trends"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-3, nan_ok=True), f"{name}: {key}"
    assert 0 < theirs["overall"] <= 1


def test_the_metric_reports_sdmetrics_score_and_names_the_version_that_computed_it():
    train, test = load_table("breast-cancer", split="train"), load_table("breast-cancer", split="test")
    fake = TabularDataset(columns=_shuffled(test.columns, 5), schema=test.schema, id="shuffled", source="test")
    from sdmetrics.reports.single_table import QualityReport
    import pandas as pd

    frames = [pd.DataFrame({c.name: d.columns[c.name] for c in train.schema.columns}) for d in (train, fake)]
    meta = {"columns": {c.name: {"sdtype": "numerical" if c.kind in ("continuous", "integer") else "categorical"} for c in train.schema.columns}}
    report = QualityReport()
    report.generate(frames[0], frames[1], meta, verbose=False)

    values = compute("table_quality", train, fake)
    assert values["table_quality"] == pytest.approx(report.get_score(), abs=1e-9)
    assert metric_sources(["fid", "table_quality"]) == {"table_quality": f"sdmetrics {sdmetrics.__version__} QualityReport"}
