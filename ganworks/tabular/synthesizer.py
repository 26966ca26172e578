"""A fitted CTGAN-class model: transformer + generator, trained in one process with plain PyTorch, saved without pickle.

`fit` is the CTGAN training loop (WGAN-GP, training-by-sampling, generator cross-entropy on the condition);
the Ray/DDP trainer is image-oriented today and does not call it yet. `sample` draws rows, optionally with
`column = value`: the condition vector asks the generator for that value, and the conditioned column's
one-hot is then set to it, so every returned row has exactly the requested value.
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
import torch.nn.functional as F
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


def _gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, pac: int) -> torch.Tensor:
    """WGAN-GP on pac groups: one interpolation coefficient per group, as the discriminator sees groups."""
    alpha = torch.rand(real.shape[0] // pac, 1, 1).repeat(1, pac, real.shape[1]).reshape(-1, real.shape[1])
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return ((grad.reshape(-1, pac * real.shape[1]).norm(2, dim=1) - 1) ** 2).mean()


def _condition_loss(transformer: DataTransformer, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the generator's one-hot logits and the condition, on the conditioned column only."""
    losses, offset = [], 0
    for span in (s for s in transformer.spans if s.discrete):
        target = cond[:, offset : offset + span.width].argmax(dim=1)
        losses.append(F.cross_entropy(raw[:, span.start : span.start + span.width], target, reduction="none"))
        offset += span.width
    return (torch.stack(losses, dim=1) * mask).sum() / raw.shape[0]


def fit(dataset: TabularDataset, epochs: int = 300, batch_size: int = 500, seed: int = 0, lr: float = 2e-4, **model_params: Any) -> TabularModel:
    """Trains a CTGAN-class model on the table (CTGAN's defaults: Adam 2e-4, betas (0.5, 0.9), one D step per G step)."""
    params = FAMILY.validate({**model_params, "data_dim": 1})  # checked before the (slow) mixture fits
    if batch_size % params["pac"] or batch_size < params["pac"]:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of pac={params['pac']}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    transformer = DataTransformer.fit(dataset.schema, dataset.columns, params["max_modes"], params["weight_threshold"], seed)
    encoded = transformer.transform(dataset.columns, rng=rng)
    sampler = ConditionSampler(transformer, encoded)
    params = FAMILY.validate({**params, "data_dim": transformer.width, "cond_dim": sampler.cond_dim})
    generator, discriminator = FAMILY.build_generator(params), FAMILY.build_discriminator(params)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.9), weight_decay=1e-6, foreach=True)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.9), weight_decay=1e-6, foreach=True)
    data = torch.from_numpy(encoded)
    tau = params["gumbel_tau"]
    for _ in range(epochs * max(len(encoded) // batch_size, 1)):
        # discriminator step
        drawn = sampler.sample_training(batch_size, rng)
        z = torch.randn(batch_size, params["latent_dim"])
        if drawn is None:
            cond = cond_real = None
            real = data[torch.from_numpy(rng.integers(len(data), size=batch_size))]
        else:
            cond_np, _, column, level = drawn
            cond = torch.from_numpy(cond_np)
            perm = rng.permutation(batch_size)  # real rows are matched to shuffled conditions, as in CTGAN
            real = data[torch.from_numpy(sampler.sample_real_rows(column[perm], level[perm], rng))]
            cond_real = cond[torch.from_numpy(perm)]
        fake = transformer.activate(generator(z, cond), tau=tau)
        fake_in = fake if cond is None else torch.cat([fake, cond], dim=1)
        real_in = real if cond_real is None else torch.cat([real, cond_real], dim=1)
        # fake and real in one forward pass: pac groups never straddle the two halves (the batch is a multiple of pac)
        scores = discriminator(torch.cat([fake_in.detach(), real_in]))
        loss_d = scores[: batch_size // params["pac"]].mean() - scores[batch_size // params["pac"] :].mean()
        loss_d = loss_d + params["gp_weight"] * _gradient_penalty(discriminator, real_in, fake_in.detach(), params["pac"])
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator step
        drawn = sampler.sample_training(batch_size, rng)
        z = torch.randn(batch_size, params["latent_dim"])
        cond = None if drawn is None else torch.from_numpy(drawn[0])
        raw = generator(z, cond)
        fake = transformer.activate(raw, tau=tau)
        loss_g = -discriminator(fake if cond is None else torch.cat([fake, cond], dim=1)).mean()
        if drawn is not None:
            loss_g = loss_g + _condition_loss(transformer, raw, cond, torch.from_numpy(drawn[1]))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return TabularModel(params, transformer, generator.eval())
