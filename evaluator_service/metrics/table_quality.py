"""Quality of generated table rows, SDMetrics' QualityReport: column shapes, column-pair trends, and their mean.

Shapes compare each column alone (1 − KS statistic for numbers, 1 − total variation for categories); trends
compare each pair (correlation similarity for two numbers, contingency similarity otherwise). All in [0, 1],
higher is better, against the rows the model trained on (evaluator_service/metrics/table_scores.py has the definitions).
"""

from __future__ import annotations

from evaluator_service.metrics.spec import GENERATED_TABLE, REFERENCE_TABLE, Metric
from evaluator_service.metrics.table_scores import quality_report


def table_quality(real, fake) -> dict[str, float]:
    report = quality_report(real.columns, fake.columns, real.schema)
    return {"table_quality": report["overall"], "column_shapes": report["column_shapes"], "column_pair_trends": report["column_pair_trends"]}


METRIC = Metric(
    "table_quality", table_quality, REFERENCE_TABLE, GENERATED_TABLE, ("table_quality", "column_shapes", "column_pair_trends"),
    "SDMetrics quality score of generated rows against the training rows",
    gauges={"table_quality": "table_quality", "column_shapes": "column_shapes", "column_pair_trends": "column_pair_trends"},
    default=False,
)
