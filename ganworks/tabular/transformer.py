"""The CTGAN data transformer (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN"): table ↔ network vectors.

A numeric column is fitted with a variational (Dirichlet-process) Gaussian mixture; modes whose weight is
below `weight_threshold` are discarded. A value x becomes a one-hot over the kept modes (the mode k drawn
from their posterior, or the likeliest) and a scalar α = (x − μ_k) / (4 σ_k) in [−1, 1]. A categorical or
boolean column becomes a one-hot over its levels. The fitted state is plain numbers, saved as JSON (no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ganworks.errors import DatasetError
from ganworks.tabular.data import NUMERIC_KINDS, Schema

FORMAT = "ganworks-tabular-transformer/1"
_CLIP = 0.99


@dataclasses.dataclass
class NumericEncoding:
    name: str
    kind: str  # continuous or integer
    weights: list[float]
    means: list[float]
    stds: list[float]
    low: float
    high: float

    @property
    def width(self) -> int:
        return 1 + len(self.means)


@dataclasses.dataclass
class DiscreteEncoding:
    name: str
    kind: str  # categorical or boolean
    levels: list[str]
    frequencies: list[int]

    @property
    def width(self) -> int:
        return len(self.levels)


@dataclasses.dataclass(frozen=True)
class Span:
    """A run of output units: 'tanh' (one mode scalar) or 'softmax' (a one-hot: modes or levels)."""

    start: int
    width: int
    activation: str
    column: str
    discrete: bool  # a one-hot of a categorical/boolean column (what conditions refer to)


def _fit_mixture(name: str, values: np.ndarray, max_modes: int, weight_threshold: float, seed: int) -> tuple[list[float], list[float], list[float]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    distinct = np.unique(values)
    if len(distinct) == 1:  # a constant column: one mode, any positive spread
        return [1.0], [float(distinct[0])], [1.0]
    mixture = BayesianGaussianMixture(
        # "diag" is the same model as "full" for one column, and fits in half the time (no Cholesky per mode).
        n_components=min(max_modes, len(distinct)), weight_concentration_prior_type="dirichlet_process", covariance_type="diag",
        weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(values.reshape(-1, 1))
    keep = mixture.weights_ > weight_threshold
    if not keep.any():
        keep = mixture.weights_ == mixture.weights_.max()
    weights = mixture.weights_[keep] / mixture.weights_[keep].sum()
    stds = np.sqrt(mixture.covariances_.reshape(-1)[keep])
    return weights.tolist(), mixture.means_.reshape(-1)[keep].tolist(), np.maximum(stds, 1e-6).tolist()


class DataTransformer:
    """Encodes a table into float32 rows the networks use, and decodes generated rows back into a table."""

    def __init__(self, schema: Schema, encodings: list[NumericEncoding | DiscreteEncoding]):
        self.schema = schema
        self.encodings = encodings
        self.spans: list[Span] = []
        start = 0
        for enc in encodings:
            if isinstance(enc, NumericEncoding):
                self.spans += [Span(start, 1, "tanh", enc.name, False), Span(start + 1, enc.width - 1, "softmax", enc.name, False)]
            else:
                self.spans.append(Span(start, enc.width, "softmax", enc.name, True))
            start += enc.width
        self.width = start
        # activate() works on all spans at once: the tanh units, and the one-hots gathered into a padded
        # (spans × widest) block whose padding is -inf, so one softmax covers every one-hot.
        tanh = [s.start for s in self.spans if s.activation == "tanh"]
        soft = [s for s in self.spans if s.activation == "softmax"]
        widest = max((s.width for s in soft), default=0)
        self._tanh_units = torch.tensor(tanh, dtype=torch.long)
        self._onehot_units = torch.tensor([[s.start + min(j, s.width - 1) for j in range(widest)] for s in soft], dtype=torch.long).reshape(len(soft), widest)
        self._onehot_pad = torch.tensor([[j >= s.width for j in range(widest)] for s in soft], dtype=torch.bool).reshape(len(soft), widest)
        # the column order of cat([tanh units, valid one-hot units]) back to the encoding's order
        order = tanh + [s.start + j for s in soft for j in range(s.width)]
        self._unpermute = torch.from_numpy(np.argsort(np.array(order, dtype=np.int64)))

    @classmethod
    def fit(cls, schema: Schema, columns: dict[str, np.ndarray], max_modes: int = 10, weight_threshold: float = 0.005, seed: int = 0) -> "DataTransformer":
        encodings: list[NumericEncoding | DiscreteEncoding] = []
        for column in schema.columns:
            values = columns[column.name]
            if column.kind in NUMERIC_KINDS:
                weights, means, stds = _fit_mixture(column.name, values, max_modes, weight_threshold, seed)
                encodings.append(NumericEncoding(column.name, column.kind, weights, means, stds, float(values.min()), float(values.max())))
            else:
                text = values.astype(str)
                levels, counts = np.unique(text, return_counts=True)
                encodings.append(DiscreteEncoding(column.name, column.kind, levels.tolist(), counts.tolist()))
        return cls(schema, encodings)

    def discrete(self) -> list[DiscreteEncoding]:
        return [e for e in self.encodings if isinstance(e, DiscreteEncoding)]

    # ---- encode / decode ---------------------------------------------------------------------------------------

    def mode_probabilities(self, enc: NumericEncoding, values: np.ndarray) -> np.ndarray:
        means, stds, weights = np.array(enc.means), np.array(enc.stds), np.array(enc.weights)
        log_p = np.log(weights) - np.log(stds) - 0.5 * ((values[:, None] - means) / stds) ** 2
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)

    def transform(self, columns: dict[str, np.ndarray], rng: np.random.Generator | None = None) -> np.ndarray:
        """N × width float32; with rng each value's mode is drawn from its posterior (as in training), else the likeliest."""
        n = len(columns[self.encodings[0].name])
        out = np.zeros((n, self.width), dtype=np.float32)
        start = 0
        for enc in self.encodings:
            values = columns[enc.name]
            if isinstance(enc, NumericEncoding):
                probs = self.mode_probabilities(enc, values.astype(np.float64))
                if rng is None:
                    modes = probs.argmax(axis=1)
                else:
                    modes = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
                alpha = (values - np.array(enc.means)[modes]) / (4 * np.array(enc.stds)[modes])
                out[:, start] = np.clip(alpha, -_CLIP, _CLIP)
                out[np.arange(n), start + 1 + modes] = 1.0
            else:
                lookup = {level: i for i, level in enumerate(enc.levels)}
                text = values.astype(str)
                unknown = sorted(str(v) for v in set(text) - set(lookup))
                if unknown:
                    raise DatasetError(f"column {enc.name!r}: values {unknown[:5]} were not seen when the transformer was fitted; known: {enc.levels}")
                out[np.arange(n), start + np.array([lookup[v] for v in text], dtype=np.int64)] = 1.0
            start += enc.width
        return out

    def inverse_transform(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The table the rows stand for: the likeliest mode/level of each span, numbers clipped to the fitted range."""
        rows = np.asarray(rows, dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        start = 0
        for enc in self.encodings:
            if isinstance(enc, NumericEncoding):
                modes = rows[:, start + 1 : start + enc.width].argmax(axis=1)
                alpha = np.clip(rows[:, start], -1.0, 1.0)
                values = alpha * 4 * np.array(enc.stds)[modes] + np.array(enc.means)[modes]
                values = np.clip(values, enc.low, enc.high)
                out[enc.name] = np.round(values) if enc.kind == "integer" else values
            else:
                levels = np.array(enc.levels, dtype=object)[rows[:, start : start + enc.width].argmax(axis=1)]
                out[enc.name] = np.array([v == "True" for v in levels]) if enc.kind == "boolean" else levels
            start += enc.width
        return out

    def activate(self, raw: torch.Tensor, tau: float = 0.2, hard: bool = False) -> torch.Tensor:
        """Generator outputs → encoded rows: tanh on scalars, Gumbel-softmax on one-hots (straight-through when hard).

        The same as applying F.gumbel_softmax span by span, in a handful of tensor operations whatever the
        number of columns (CTGAN loops over the spans, two small operations per column).
        """
        n = raw.shape[0]
        parts = [torch.tanh(raw[:, self._tanh_units])]
        if len(self._onehot_units):
            logits = raw[:, self._onehot_units].masked_fill(self._onehot_pad, float("-inf"))
            onehots = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)
            parts.append(onehots[:, ~self._onehot_pad])
        return torch.cat(parts, dim=1)[:, self._unpermute].reshape(n, self.width)

    # ---- saving ------------------------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": FORMAT, "schema": self.schema.to_json(),
                "encodings": [{"type": "numeric" if isinstance(e, NumericEncoding) else "discrete", **dataclasses.asdict(e)} for e in self.encodings]}

    @classmethod
    def from_json(cls, data: dict) -> "DataTransformer":
        if data.get("format") != FORMAT:
            raise DatasetError(f"transformer format {data.get('format')!r} is not {FORMAT!r}; re-fit the transformer with this ganworks")
        encodings = []
        for item in data["encodings"]:
            fields = {k: v for k, v in item.items() if k != "type"}
            encodings.append(NumericEncoding(**fields) if item["type"] == "numeric" else DiscreteEncoding(**fields))
        return cls(Schema.from_json(data["schema"]), encodings)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> "DataTransformer":
        return cls.from_json(json.loads(text))
