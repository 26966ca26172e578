"""Privacy by distance to closest record (SDMetrics' DCR overfitting protection): the share of generated rows closer
to a training row than to any held-out row. About the train share of train + held-out rows for a generator that
does not copy (0.8 with ganworks' 80/20 split); towards 1 when it reproduces its training rows."""

from __future__ import annotations

from evaluator_service.metrics.spec import GENERATED_TABLE, HELD_OUT_TABLE, REFERENCE_TABLE, Metric
from evaluator_service.metrics.table_scores import closer_to_train_share


def dcr(real, fake, train=None) -> dict[str, float]:
    """real: the held-out rows; train: the rows the model trained on."""
    share = closer_to_train_share(fake.columns, train.columns, real.columns, real.schema)
    expected = len(train) / (len(train) + len(real))
    return {"closer_to_train_share": share, "closer_to_train_excess": share - expected}


METRIC = Metric(
    "dcr", dcr, HELD_OUT_TABLE, GENERATED_TABLE, ("closer_to_train_share", "closer_to_train_excess"),
    "privacy: generated rows nearer a training row than any held-out row",
    extra={"train": REFERENCE_TABLE},
    gauges={"closer_to_train_share": "closer_to_train_share", "closer_to_train_excess": "closer_to_train_excess"},
    default=False,
)
