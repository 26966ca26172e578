"""The samples of one side of an evaluation (reference, held-out or generated), in the forms metrics take them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from evaluator_service.stats import FeatureStats


@dataclasses.dataclass
class Samples:
    features: np.ndarray | None  # N×D; None on a side that only gives pixels and labels
    logits: np.ndarray | None  # N×K
    stats: FeatureStats | None  # float64 mean and covariance of the features
    # True class labels: the dataset's, or those a conditional generator was asked for (-1 from an unconditional one).
    labels: np.ndarray | None = None
    images: np.ndarray | None = None  # uint8 N×H×W×C, kept only when a metric asks for them
    workers: int = 1  # how many processes extracted the features
    labels_are_classes: bool = False  # the labels are the extractor's own classes (it is the dataset's classifier)

    @property
    def classes(self) -> np.ndarray | None:
        """Labels where they are the extractor's own classes, else the extractor's logits (predicted classes)."""
        return self.labels if self.labels_are_classes and self.labels is not None and len(self.labels) else self.logits


@dataclasses.dataclass
class TableSamples:
    """One side of a table run's evaluation: its rows with their schema (a ganworks.tabular.data.TabularDataset)."""

    table: Any


DIRECTIONS = ("a_to_b", "b_to_a")


@dataclasses.dataclass
class DirectionSamples:
    """One side of a translation run's evaluation, keyed by direction ("a_to_b", "b_to_a").

    On the reference side: the real images of each direction's target domain (B for a_to_b), as features and
    statistics. On the generated side: held-out images of each direction's source domain (`sources`), what the
    served model made of them (their features and statistics), those translated back (`cycled`), and the class
    a judging classifier gives each translation (`predicted`) with the classes that count as the target domain.
    """

    features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    stats: dict[str, FeatureStats] = dataclasses.field(default_factory=dict)
    sources: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    cycled: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    predicted: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    target_classes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def domains(self) -> "DirectionSamples":
        return self

    @property
    def translations(self) -> "DirectionSamples":
        return self
