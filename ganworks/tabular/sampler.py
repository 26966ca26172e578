"""Training-by-sampling (CTGAN): a condition draws one categorical column, then one of its levels by log-frequency.

The log keeps rare levels (3% of defaulters) from being drowned by common ones without making them as common
as the others; the real rows shown to the discriminator are drawn among those having the drawn level, so the
generator learns each level's conditional distribution. The condition vector is the one-hot of the drawn
level in the concatenation of every categorical column's levels.
"""

from __future__ import annotations

import numpy as np

from ganworks.errors import DatasetError
from ganworks.tabular.transformer import DataTransformer


class ConditionError(DatasetError):
    """A requested condition names an unknown column or value; the message lists what is allowed."""


class ConditionSampler:
    def __init__(self, transformer: DataTransformer, encoded: np.ndarray | None = None):
        self.columns = transformer.discrete()
        self.offsets = np.cumsum([0] + [c.width for c in self.columns])[:-1].astype(np.int64)
        self.cond_dim = int(sum(c.width for c in self.columns))
        self._log_freq = []
        for column in self.columns:
            weights = np.log(np.asarray(column.frequencies, dtype=np.float64) + 1.0)
            self._log_freq.append(weights / weights.sum())
        self._spans = [s for s in transformer.spans if s.discrete]
        # rows_by_level[c][v]: the indices of encoded rows whose column c has level v
        self._rows_by_level = []
        if encoded is not None:
            for span in self._spans:
                levels = encoded[:, span.start : span.start + span.width].argmax(axis=1)
                self._rows_by_level.append([np.flatnonzero(levels == v) for v in range(span.width)])

    def sample_training(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(cond vectors, column mask, column index, level index) for a batch; None when the table has no categorical column."""
        if not self.columns:
            return None
        column = rng.integers(len(self.columns), size=batch)
        level = np.array([rng.choice(len(self._log_freq[c]), p=self._log_freq[c]) for c in column], dtype=np.int64)
        cond = np.zeros((batch, self.cond_dim), dtype=np.float32)
        cond[np.arange(batch), self.offsets[column] + level] = 1.0
        mask = np.zeros((batch, len(self.columns)), dtype=np.float32)
        mask[np.arange(batch), column] = 1.0
        return cond, mask, column, level

    def sample_real_rows(self, column: np.ndarray, level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each (column, level), the index of a real row that has it."""
        return np.array([rng.choice(self._rows_by_level[c][v]) for c, v in zip(column, level)], dtype=np.int64)

    def sample_original(self, count: int, rngs: list[np.random.Generator]) -> np.ndarray | None:
        """Conditions for unconditional generation, row i from rngs[i]: levels drawn by their real frequency, so the output follows the data."""
        if not self.columns:
            return None
        cond = np.zeros((count, self.cond_dim), dtype=np.float32)
        for i, rng in enumerate(rngs):
            c = int(rng.integers(len(self.columns)))
            freq = np.asarray(self.columns[c].frequencies, dtype=np.float64)
            cond[i, self.offsets[c] + rng.choice(len(freq), p=freq / freq.sum())] = 1.0
        return cond

    def condition(self, column: str, value: str) -> tuple[int, int]:
        """(column index, level index) of `column = value`; ConditionError names what is allowed."""
        names = [c.name for c in self.columns]
        if column not in names:
            raise ConditionError(f"cannot condition on {column!r}: conditions name a categorical or boolean column, one of {names}")
        index = names.index(column)
        levels = self.columns[index].levels
        text = str(value)
        if text not in levels:
            raise ConditionError(f"{column} = {value!r} is not a value of {column}; allowed: {levels}")
        return index, levels.index(text)

    def condition_vectors(self, column: str, value: str, batch: int) -> np.ndarray:
        index, level = self.condition(column, value)
        cond = np.zeros((batch, self.cond_dim), dtype=np.float32)
        cond[:, self.offsets[index] + level] = 1.0
        return cond
