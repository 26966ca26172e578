"""Quality of generated table rows: SDMetrics' QualityReport score on the same rows — column shapes, column-pair
trends, and their mean.

Computed by the `sdmetrics` package itself when it is installed (`pip install ganworks[sdmetrics]`), else by
ganworks' code that a test proves equal to it within 1e-3 (evaluator_service/metrics/sdmetrics_quality.py has the
definitions and the thresholds SDMetrics 0.32 applies). All in [0, 1], higher is better, against the rows the model
trained on. The report's `metric_sources` names which computed it and the SDMetrics version.
"""

from __future__ import annotations

import math

from evaluator_service.metrics.sdmetrics_quality import REFERENCE_VERSION, quality_score, sdmetrics_version
from evaluator_service.metrics.spec import GENERATED_TABLE, REFERENCE_TABLE, Metric


def table_quality(real, fake) -> dict[str, float]:
    report = quality_score(real.columns, fake.columns, real.schema)
    # A table without a pair whose real association passes SDMetrics' thresholds has no pair-trend score; the
    # overall score is then the shapes' (as in SDMetrics), and the gauge shows the shapes too rather than NaN.
    trends = report["column_pair_trends"] if not math.isnan(report["column_pair_trends"]) else report["column_shapes"]
    return {"table_quality": report["overall"], "column_shapes": report["column_shapes"], "column_pair_trends": trends}


def source() -> str:
    version = sdmetrics_version()
    if version is not None:
        return f"sdmetrics {version} QualityReport"
    return f"ganworks, equal to sdmetrics {REFERENCE_VERSION} QualityReport within 1e-3 (sdmetrics not installed)"


METRIC = Metric(
    "table_quality", table_quality, REFERENCE_TABLE, GENERATED_TABLE, ("table_quality", "column_shapes", "column_pair_trends"),
    "SDMetrics QualityReport score of generated rows against the training rows",
    gauges={"table_quality": "table_quality", "column_shapes": "column_shapes", "column_pair_trends": "column_pair_trends"},
    default=False,
    source=source,
)
