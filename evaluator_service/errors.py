"""Typed errors of the evaluator; each carries a short `reason` (a Prometheus label) and a message saying what to do."""

from __future__ import annotations

from ganworks.errors import GanworksError


class EvaluationError(GanworksError):
    """An evaluation cannot be done as asked."""

    reason = "error"


class InvalidRequestError(EvaluationError, ValueError):
    """A request names something unknown or asks for something impossible."""

    reason = "invalid_input"


class NotFoundError(EvaluationError, LookupError):
    """The run, snapshot or extractor asked for does not exist."""

    reason = "not_found"


class InsufficientSamplesError(InvalidRequestError):
    """Too few samples for a metric as configured (e.g. a KID subset larger than the samples)."""

    reason = "insufficient_samples"


class MetricComputationError(EvaluationError, ArithmeticError):
    """A metric's numerics failed (non-finite statistics, a significant imaginary part)."""

    reason = "numerics"


class WeightsMissingError(EvaluationError):
    """Extractor weights are not where the settings say."""

    reason = "weights_missing"


class WeightsIntegrityError(EvaluationError):
    """Extractor weights do not match their pinned sha256 or their expected layout."""

    reason = "weights_integrity"


class ExtractorMissingError(EvaluationError):
    """A fitted extractor (the dataset classifier) is not in the store."""

    reason = "extractor_missing"


class GeneratorUnavailableError(EvaluationError):
    """The generator service could not be reached within the retry budget."""

    reason = "generator_unavailable"


class GeneratorError(EvaluationError):
    """The generator service refused the request or returned something unusable."""

    reason = "generator_error"
