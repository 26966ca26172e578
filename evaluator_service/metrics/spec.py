"""What a metric declares: the inputs the evaluation pipeline must gather for it, and its parameters with type and range.

An input is named `<side>.<kind>`: the side is where the samples come from (`reference` — the run's dataset,
`held_out` — its test split, `generated` — the snapshot's samples) and the kind what is taken of them
(`features`, `stats` — the features' float64 mean and covariance, `logits`, `classes` — dataset labels when
the extractor is the dataset's own classifier, else its predicted logits, `images` — raw uint8 pixels,
`labels` — true class labels: the dataset's, or for generated samples the labels the conditional model was asked
for, -1 from an unconditional one),
`table` — a tabular run's rows with their schema, a ganworks.tabular.data.TabularDataset,
`domains` — a translation run's real images of each target domain, `translations` — its held-out images of each
domain translated to the other and back; both evaluator_service.samples.DirectionSamples keyed by direction).
The pipeline (`evaluator_service/evaluation.py`) gathers exactly the declared inputs; a new kind of input
(translated images, ...) is a new name here and one attribute on the pipeline's samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError

REFERENCE_FEATURES = "reference.features"
REFERENCE_STATS = "reference.stats"
REFERENCE_CLASSES = "reference.classes"
REFERENCE_IMAGES = "reference.images"
REFERENCE_LABELS = "reference.labels"
HELD_OUT_FEATURES = "held_out.features"
HELD_OUT_IMAGES = "held_out.images"
HELD_OUT_LABELS = "held_out.labels"
GENERATED_FEATURES = "generated.features"
GENERATED_STATS = "generated.stats"
GENERATED_LOGITS = "generated.logits"
GENERATED_IMAGES = "generated.images"
GENERATED_LABELS = "generated.labels"
REFERENCE_TABLE = "reference.table"
HELD_OUT_TABLE = "held_out.table"
GENERATED_TABLE = "generated.table"
TABLE_INPUTS = (REFERENCE_TABLE, HELD_OUT_TABLE, GENERATED_TABLE)
REFERENCE_DOMAINS = "reference.domains"
GENERATED_TRANSLATIONS = "generated.translations"
TRANSLATION_INPUTS = (REFERENCE_DOMAINS, GENERATED_TRANSLATIONS)
INPUTS = (REFERENCE_FEATURES, REFERENCE_STATS, REFERENCE_CLASSES, REFERENCE_IMAGES, REFERENCE_LABELS, HELD_OUT_FEATURES, HELD_OUT_IMAGES,
          HELD_OUT_LABELS, GENERATED_FEATURES, GENERATED_STATS, GENERATED_LOGITS, GENERATED_IMAGES, GENERATED_LABELS,
          *TABLE_INPUTS, *TRANSLATION_INPUTS)
# The kind of run an input belongs to, where it is not an image run's.
INPUT_KINDS = {**{i: "table" for i in TABLE_INPUTS}, **{i: "translation" for i in TRANSLATION_INPUTS}}


@dataclasses.dataclass(frozen=True)
class Param:
    """One tunable number, set in a request as `<metric>.<name>`: its type, default and allowed range.

    `low`/`high` are inclusive unless `open_low`/`open_high`; `at_most_samples` bounds it also by the
    number of generated samples of the evaluation (a KID subset cannot be larger than the samples).
    A default of None means "derived from the data" and is allowed only as the default.
    """

    name: str
    type: type
    default: int | float | None
    low: float
    high: float
    help: str
    open_low: bool = False
    open_high: bool = False
    at_most_samples: bool = False

    def __post_init__(self) -> None:
        if self.type not in (int, float):
            raise TypeError(f"parameter {self.name}: type must be int or float, not {self.type!r}")
        if self.default is not None and not self._inside(self.default):
            raise ValueError(f"parameter {self.name}: default {self.default} is outside {self.range_text}")

    @property
    def range_text(self) -> str:
        lo, hi = ("(" if self.open_low else "["), (")" if self.open_high else "]")
        what = "an integer" if self.type is int else "a finite number"
        return f"{what} in {lo}{_number(self.low)}, {_number(self.high)}{hi}"

    def _inside(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def check(self, metric: str, value: Any) -> int | float:
        """The value converted to the parameter's type; InvalidRequestError naming `metric.name` and its range otherwise."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or not self._inside(number) or (self.type is int and not number.is_integer()):
            raise InvalidRequestError(f"{metric}.{self.name} must be {self.range_text}, got {value!r} ({self.help})")
        return int(number) if self.type is int else number


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric: `fn(real, fake, **extra_inputs, **params)` over the declared inputs, returning `outputs`.

    `real` is None for a metric that looks at generated samples only. `extra` maps further keyword
    arguments of `fn` to inputs (memorization's `train_features`). `warnings(real, fake)`, when given,
    says why a result may mislead (e.g. a rank-deficient covariance) without failing the evaluation.
    `gauges` maps outputs to the Prometheus gauge `ganworks_evaluator_<name>` that shows them (a deploy
    contract: alerts and dashboards use these names); `default` puts the metric in the server's default set.
    """

    name: str
    fn: Callable[..., dict[str, float]]
    real: str | None
    fake: str
    outputs: tuple[str, ...]
    description: str
    params: tuple[Param, ...] = ()
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: Callable[[Any, Any], list[str]] | None = None
    gauges: dict[str, str] = dataclasses.field(default_factory=dict)
    default: bool = True
    # What computed the numbers when that varies (e.g. "sdmetrics 0.32.0 QualityReport"); the report records it.
    source: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        unknown = [i for i in self.inputs if i not in INPUTS]
        if unknown:
            raise ValueError(f"metric {self.name}: unknown inputs {unknown}; known: {', '.join(INPUTS)}")
        if not set(self.gauges) <= set(self.outputs):
            raise ValueError(f"metric {self.name}: gauges for outputs it does not have: {sorted(set(self.gauges) - set(self.outputs))}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input the pipeline must gather for this metric."""
        return tuple(i for i in (self.real, self.fake, *self.extra.values()) if i is not None)

    @property
    def kind(self) -> str:
        """What runs the metric is for: "table" (its inputs are tables), "translation" (translated images) or "image" (noise-to-image models)."""
        return next((INPUT_KINDS[i] for i in self.inputs if i in INPUT_KINDS), "image")

    @property
    def defaults(self) -> dict[str, int | float | None]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(f"{self.name}.{p.name}" for p in self.params) or "none"
        raise InvalidRequestError(f"unknown parameter {self.name}.{name}; known: {known}")

    def check_params(self, values: dict[str, Any]) -> dict[str, int | float]:
        """The values checked against their declarations: known, of their type, in their range."""
        return {name: self.param(name).check(self.name, value) for name, value in values.items()}

    def check_sample_count(self, values: dict[str, int | float], num_samples: int) -> None:
        """InsufficientSamplesError when a parameter (set or default) bounded by the sample count exceeds num_samples."""
        for p in self.params:
            value = values.get(p.name, p.default)
            if p.at_most_samples and value is not None and value > num_samples:
                raise InsufficientSamplesError(
                    f"{self.name}.{p.name} is {value} but only {num_samples} samples are asked for; "
                    f"set {self.name}.{p.name} <= {num_samples} or ask for more samples"
                )
