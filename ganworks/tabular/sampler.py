"""Training-by-sampling (CTGAN): a condition draws one categorical column, then one of its levels by log-frequency.

The log keeps rare levels (3% of defaulters) from being drowned by common ones without making them as common
as the others; the real rows shown to the discriminator are drawn among those having the drawn level, so the
generator learns each level's conditional distribution. The condition vector is the one-hot of the drawn
level in the concatenation of every categorical column's levels.
"""

from __future__ import annotations

import numpy as np
import torch

from ganworks.errors import DatasetError, shown
from ganworks.tabular.transformer import DataTransformer


class ConditionError(DatasetError):
    """A requested condition names an unknown column or value; the message lists what is allowed."""


class ConditionSampler:
    def __init__(self, transformer: DataTransformer, encoded: np.ndarray | None = None):
        self.columns = transformer.discrete()
        self.offsets = np.cumsum([0] + [c.width for c in self.columns])[:-1].astype(np.int64)
        self.cond_dim = int(sum(c.width for c in self.columns))
        names = [c.name for c in self.columns]
        self.target = names.index(transformer.schema.target) if transformer.schema.target in names else None
        # Cumulative log-frequency probabilities, one row per column, padded with 1 so one uniform draw per
        # row picks a level for every row at once (no Python loop per row).
        width = max((c.width for c in self.columns), default=0)
        self._cumulative = np.ones((len(self.columns), width))
        for c, column in enumerate(self.columns):
            weights = np.log(np.asarray(column.frequencies, dtype=np.float64) + 1.0)
            self._cumulative[c, : column.width] = np.cumsum(weights / weights.sum())
            self._cumulative[c, column.width - 1 :] = 1.0
        # The encoded rows of level v of column c are _order[_first[g] : _first[g] + _count[g]], g = offsets[c] + v.
        self._order = self._first = self._count = None
        self._starts = np.array([s.start for s in transformer.spans if s.discrete], dtype=np.int64)
        if encoded is not None:
            spans = [s for s in transformer.spans if s.discrete]
            levels = np.concatenate([encoded[:, s.start : s.start + s.width].argmax(axis=1) + off for s, off in zip(spans, self.offsets)]) if spans else np.zeros(0, np.int64)
            self._order = np.argsort(levels, kind="stable") % max(len(encoded), 1)
            self._count = np.bincount(levels, minlength=self.cond_dim)
            self._first = np.concatenate([[0], np.cumsum(self._count)[:-1]]).astype(np.int64)

    def sample_training(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(cond vectors, column mask, column index, level index) for a batch; None when the table has no categorical column."""
        if not self.columns:
            return None
        column = rng.integers(len(self.columns), size=batch)
        level = (self._cumulative[column] > rng.random((batch, 1))).argmax(axis=1).astype(np.int64)
        cond = np.zeros((batch, self.cond_dim), dtype=np.float32)
        cond[np.arange(batch), self.offsets[column] + level] = 1.0
        mask = np.zeros((batch, len(self.columns)), dtype=np.float32)
        mask[np.arange(batch), column] = 1.0
        return cond, mask, column, level

    def sample_real_rows(self, column: np.ndarray, level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each (column, level), the index of a real row that has it."""
        g = self.offsets[column] + level
        if (self._count[g] == 0).any():
            raise ValueError("a drawn level has no real row; training conditions draw only levels present in the data")
        return self._order[self._first[g] + (rng.random(len(g)) * self._count[g]).astype(np.int64)]

    def own_conditions(self, rows: torch.Tensor, rng: np.random.Generator) -> torch.Tensor | None:
        """Condition vectors for given encoded rows: a column drawn uniformly per row, and the row's OWN level of it.

        Private training (trainer/kinds/table.py) uses this instead of training-by-sampling: there the real rows are a
        Poisson sample of the table (as the privacy accountant assumes), not rows looked up by a drawn level, and each
        row's condition is a function of that row alone and of data-independent draws. None without categorical columns.
        """
        if not self.columns:
            return None
        column = torch.from_numpy(rng.integers(len(self.columns), size=len(rows))).to(rows.device)
        width = max(c.width for c in self.columns)
        # levels[i, c]: row i's level of column c (its one-hot's argmax; padding past a column's width is never the max)
        index = torch.from_numpy(self._starts[:, None] + np.arange(width)[None, :]).clamp(max=rows.shape[1] - 1).to(rows.device)
        valid = torch.from_numpy(np.arange(width)[None, :] < np.array([c.width for c in self.columns])[:, None]).to(rows.device)
        levels = rows[:, index].masked_fill(~valid, -1.0).argmax(dim=2)
        cond = torch.zeros(len(rows), self.cond_dim, dtype=rows.dtype, device=rows.device)
        picked = torch.from_numpy(self.offsets).to(rows.device)[column] + levels.gather(1, column[:, None]).squeeze(1)
        cond[torch.arange(len(rows), device=rows.device), picked] = 1.0
        return cond

    def sample_original(self, count: int, rngs: list[np.random.Generator]) -> np.ndarray | None:
        """Conditions for unconditional generation, row i from rngs[i], levels drawn by their real frequency.

        The column is the schema's target when it is categorical: every row is then made as "a row with
        this target level", the conditional the generator learned best (training shows rare levels by
        log-frequency), and the target keeps its real frequency. Without one, a column is drawn per row.
        """
        if not self.columns:
            return None
        cond = np.zeros((count, self.cond_dim), dtype=np.float32)
        for i, rng in enumerate(rngs):
            c = self.target if self.target is not None else int(rng.integers(len(self.columns)))
            freq = np.asarray(self.columns[c].frequencies, dtype=np.float64)
            cond[i, self.offsets[c] + rng.choice(len(freq), p=freq / freq.sum())] = 1.0
        return cond

    def condition(self, column: str, value: str) -> tuple[int, int]:
        """(column index, level index) of `column = value`; ConditionError names what is allowed."""
        names = [c.name for c in self.columns]
        if column not in names:
            raise ConditionError(f"cannot condition on {shown(column)}: conditions name a categorical or boolean column, one of {_listed(names)}")
        index = names.index(column)
        levels = self.columns[index].levels
        text = str(value)
        if text not in levels:
            raise ConditionError(f"{column} = {shown(value)} is not a value of {column}; allowed: {_listed(levels)}")
        return index, levels.index(text)


def _listed(items: list, limit: int = 400) -> str:
    """A list for an error message, cut when long (a column may have thousands of levels)."""
    text = str(items)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(items)} in all)"
