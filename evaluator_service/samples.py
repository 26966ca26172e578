"""The samples of one side of an evaluation (reference, held-out or generated), in the forms metrics take them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from evaluator_service.stats import FeatureStats


@dataclasses.dataclass
class Samples:
    features: np.ndarray  # N×D
    logits: np.ndarray  # N×K
    stats: FeatureStats  # float64 mean and covariance of the features
    labels: np.ndarray | None = None  # dataset labels that match the extractor's classes, when there are any
    images: np.ndarray | None = None  # uint8 N×H×W×C, kept only when a metric asks for them
    workers: int = 1  # how many processes extracted the features

    @property
    def classes(self) -> np.ndarray:
        """Labels where they are the extractor's own classes, else the extractor's logits (predicted classes)."""
        return self.labels if self.labels is not None and len(self.labels) else self.logits


@dataclasses.dataclass
class TableSamples:
    """One side of a table run's evaluation: its rows with their schema (a ganworks.tabular.data.TabularDataset)."""

    table: Any
