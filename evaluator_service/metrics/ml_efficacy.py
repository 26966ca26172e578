"""ML efficacy: a logistic regression trained on generated rows vs one trained on the real training rows, both
scored (F1 of the rarer target level) on the held-out rows; the ratio is 1 when synthetic rows teach as much."""

from __future__ import annotations

from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics.spec import GENERATED_TABLE, HELD_OUT_TABLE, REFERENCE_TABLE, Metric
from evaluator_service.metrics.table_scores import ml_efficacy


def efficacy(real, fake, held_out=None) -> dict[str, float]:
    if held_out is None or real.schema.target is None:
        raise InvalidRequestError("ml_efficacy needs held-out rows and a target column (the schema's 'target')")
    result = ml_efficacy(real.columns, fake.columns, held_out.columns, real.schema)
    return {"ml_efficacy": result["ratio"], "f1_synthetic": result["f1_synthetic"], "f1_real": result["f1_real"]}


METRIC = Metric(
    "ml_efficacy", efficacy, REFERENCE_TABLE, GENERATED_TABLE, ("ml_efficacy", "f1_synthetic", "f1_real"),
    "train-on-synthetic / train-on-real F1 on held-out rows",
    extra={"held_out": HELD_OUT_TABLE},
    gauges={"ml_efficacy": "ml_efficacy"},
    default=False,
)
