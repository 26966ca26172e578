"""A fitted CTGAN-class model (transformer + generator) as serving uses it, saved without pickle, and the data preparation
a table run starts from (`prepare`: the fitted transformer and the encoded rows). Training is the trainer's (trainer/ctgan.py).

`sample` draws rows, optionally with `column = value`: the condition vector asks the generator for that value, and the
conditioned column's one-hot is then set to it, so every returned row has exactly the requested value.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ganworks.checkpoint import Snapshot
from ganworks.errors import CheckpointError, CheckpointFormatError, DatasetError
from ganworks.layout import TRANSFORMER
from ganworks.models import get_family, seeds
from ganworks.tabular.data import TabularDataset
from ganworks.tabular.sampler import ConditionSampler
from ganworks.tabular.transformer import DataTransformer

FAMILY = get_family("ctgan")
GUMBEL_STREAM = 2  # beside seeds.NOISE_STREAM and seeds.LABEL_STREAM
GENERATOR_FILE, TRANSFORMER_FILE, CONFIG_FILE = "generator.safetensors", TRANSFORMER, "model.json"


@dataclasses.dataclass
class TabularModel:
    params: dict[str, Any]
    transformer: DataTransformer
    generator: nn.Module

    @functools.cached_property
    def sampler(self) -> ConditionSampler:
        return ConditionSampler(self.transformer)

    def inputs(self, seed: int, start: int, count: int, condition: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(noise, condition vectors, Gumbel uniforms) of rows start .. start+count-1 of `seed`, each from (seed, index) alone.

        condition is (column index, level index) among the categorical columns (ConditionSampler.condition).
        """
        sampler, indices = self.sampler, range(start, start + count)
        z = seeds.normal_rows(seed, start, count, self.params["latent_dim"])
        if condition is not None:
            cond = np.zeros((count, sampler.cond_dim), dtype=np.float32)
            cond[:, sampler.offsets[condition[0]] + condition[1]] = 1.0
        else:
            cond = sampler.sample_original(count, [seeds.sample_rng(seed, i, seeds.LABEL_STREAM) for i in indices])
        uniform = np.empty((count, self.transformer.width))
        for row, i in enumerate(indices):
            uniform[row] = seeds.sample_rng(seed, i, GUMBEL_STREAM).random(self.transformer.width)
        return z, cond, uniform

    def finish(self, raw: np.ndarray, uniform: np.ndarray, condition: tuple[int, int] | None = None) -> np.ndarray:
        """Encoded rows from the generator's raw outputs: tanh scalars, one-hots drawn by Gumbel-max with the rows' own uniforms.

        argmax(logits + Gumbel noise) draws a one-hot as CTGAN's Gumbel-softmax does (whose argmax decoding
        ignores the temperature). A condition then sets its column's one-hot, so every row has the value.
        """
        rows = raw - np.log(-np.log(np.clip(uniform, 1e-12, 1 - 1e-12)))
        for span in self.transformer.spans:
            if span.activation == "tanh":
                rows[:, span.start] = np.tanh(raw[:, span.start])
        if condition is not None:
            span = [s for s in self.transformer.spans if s.discrete][condition[0]]
            rows[:, span.start : span.start + span.width] = 0.0
            rows[:, span.start + condition[1]] = 1.0
        return rows.astype(np.float32)

    @torch.no_grad()
    def sample(self, count: int, seed: int = 0, condition: tuple[str, str] | None = None, start: int = 0) -> dict[str, np.ndarray]:
        """count rows as a table; row i depends on (seed, start + i) only. condition=(column, value) fixes a categorical column.

        The generator runs in eval mode: its BatchNorm layers use the statistics gathered in training, so a row
        never depends on the other rows of its batch (CTGAN samples with batch statistics instead).
        """
        where = None if condition is None else self.sampler.condition(*condition)  # ConditionError before any work
        z, cond, uniform = self.inputs(seed, start, count, where)
        self.generator.eval()
        raw = self.generator(torch.from_numpy(z), None if cond is None else torch.from_numpy(cond)).numpy()
        return self.transformer.inverse_transform(self.finish(raw, uniform, where))

    # ---- snapshots and folders (safetensors + JSON, no pickle) ---------------------------------------------------------

    def snapshot_files(self) -> dict[str, bytes]:
        """The files a published snapshot carries beside the weights (checkpoint.publish_snapshot(files=...))."""
        return {TRANSFORMER: self.transformer.dumps().encode()}

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> "TabularModel":
        """The model a loaded snapshot of the ctgan family stands for: its generator and the transformer beside it."""
        m = snapshot.manifest
        if TRANSFORMER not in snapshot.files:
            raise CheckpointFormatError(f"snapshot {m.step} of run {m.run!r} is a {m.architecture} model without {TRANSFORMER}; re-publish it with its transformer")
        try:
            transformer = DataTransformer.loads(snapshot.files[TRANSFORMER].decode())
        except (DatasetError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointFormatError(f"{TRANSFORMER} of snapshot {m.step} of run {m.run!r} is unusable: {exc}") from None
        params = FAMILY.validate(m.architecture_params)
        if transformer.width != params["data_dim"] or ConditionSampler(transformer).cond_dim != params["cond_dim"]:
            raise CheckpointFormatError(f"{TRANSFORMER} of snapshot {m.step} of run {m.run!r} does not fit its generator "
                                        f"(width {transformer.width}, generator data_dim {params['data_dim']})")
        return cls(params, transformer, snapshot.generator.eval())


    def save(self, folder: str | pathlib.Path) -> None:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.generator.state_dict().items()}, str(folder / GENERATOR_FILE))
        (folder / TRANSFORMER_FILE).write_text(self.transformer.dumps())
        (folder / CONFIG_FILE).write_text(json.dumps({"architecture": FAMILY.name, "architecture_params": self.params}, sort_keys=True))

    @classmethod
    def load(cls, folder: str | pathlib.Path) -> "TabularModel":
        folder = pathlib.Path(folder)
        missing = [name for name in (GENERATOR_FILE, TRANSFORMER_FILE, CONFIG_FILE) if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(f"{folder}: not a tabular model, {missing} missing; save one with TabularModel.save")
        config = json.loads((folder / CONFIG_FILE).read_text())
        params = FAMILY.validate(config["architecture_params"])
        generator = FAMILY.build_generator(params)
        generator.load_state_dict(load_file(str(folder / GENERATOR_FILE)))
        return cls(params, DataTransformer.loads((folder / TRANSFORMER_FILE).read_text()), generator.eval())


def prepare(dataset: TabularDataset, seed: int, private: tuple[float, float] | None = None, **model_params: Any) -> tuple[dict[str, Any], DataTransformer, np.ndarray, Any]:
    """The validated hyperparameters (data_dim, cond_dim from the table), the fitted transformer, the encoded rows, and
    with private = (ε, δ) the transformer fitted under DP (ganworks.tabular.private.PrivateFit; else None)."""
    params = FAMILY.validate({**model_params, "data_dim": 1})  # checked before the (slow) mixture fits
    fitted, columns = None, dataset.columns
    if private is not None:
        from ganworks.tabular.private import fit_private

        fitted, columns = fit_private(dataset.schema, dataset.columns, *private, max_modes=params["max_modes"], seed=seed)
        transformer = fitted.transformer
    else:
        transformer = DataTransformer.fit(dataset.schema, dataset.columns, params["max_modes"], params["weight_threshold"], seed)
    encoded = transformer.transform(columns, rng=np.random.default_rng(seed))
    params = FAMILY.validate({**params, "data_dim": transformer.width, "cond_dim": ConditionSampler(transformer).cond_dim})
    return params, transformer, encoded, fitted
