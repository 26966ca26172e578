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
from ganworks.optim import optimizer_step
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


# CTGAN's optimiser: Adam with these betas and weight decay, for both networks.
BETAS, WEIGHT_DECAY = (0.5, 0.9), 1e-6


def optimizers(generator: nn.Module, discriminator: nn.Module, lr: float = 2e-4) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    return tuple(torch.optim.Adam(net.parameters(), lr=lr, betas=BETAS, weight_decay=WEIGHT_DECAY, foreach=True) for net in (generator, discriminator))


def _condition_loss(transformer: DataTransformer, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the generator's one-hot logits and the condition, on the conditioned column only."""
    losses, offset = [], 0
    for span in (s for s in transformer.spans if s.discrete):
        target = cond[:, offset : offset + span.width].argmax(dim=1)
        losses.append(F.cross_entropy(raw[:, span.start : span.start + span.width], target, reduction="none"))
        offset += span.width
    return (torch.stack(losses, dim=1) * mask).sum() / raw.shape[0]


@dataclasses.dataclass
class CTGANStepResult:
    loss_d: torch.Tensor
    loss_g: torch.Tensor
    real_scores: torch.Tensor
    fake_scores: torch.Tensor
    norm_d: float | None  # None: a non-finite gradient, the update was skipped
    norm_g: float | None
    gradient_penalty: torch.Tensor
    condition_loss: torch.Tensor


class CTGANStep:
    """One CTGAN training step (a WGAN-GP discriminator step, then a generator step), for `fit` and the Ray trainer.

    G and D may be DistributedDataParallel wrappers: the discriminator step runs D once on fake, real and the
    gradient penalty's interpolates together (DDP wants one forward per backward), and the generator step
    goes through D's plain module with D frozen, so D's gradients are neither computed nor all-reduced.
    Noise, Gumbel draws, dropout and the interpolation come from torch's global RNG; conditions and real
    rows from the `rng` each call is given.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 transformer: DataTransformer, sampler: ConditionSampler, data: torch.Tensor, params: dict[str, Any], batch_size: int):
        if batch_size % params["pac"] or batch_size < params["pac"]:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of pac={params['pac']}")
        self.G, self.D, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        self.G_plain, self.D_plain = getattr(generator, "module", generator), getattr(discriminator, "module", discriminator)
        self.transformer, self.sampler, self.data, self.params, self.batch = transformer, sampler, data, params, batch_size
        self.device = data.device

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def _with(self, rows: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return rows if cond is None else torch.cat([rows, cond], dim=1)

    def __call__(self, rng: np.random.Generator) -> "CTGANStepResult":
        loss_d, scores_real, scores_fake, norm_d, penalty = self.discriminator_step(rng)
        loss_g, loss_cond, norm_g = self.generator_step(rng)
        return CTGANStepResult(loss_d, loss_g, scores_real, scores_fake, norm_d, norm_g, penalty, loss_cond)

    def fake_rows(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None, tuple | None]:
        """Generated rows for D (no gradient to G) with their training-by-sampling conditions appended, and the draw."""
        drawn = self.sampler.sample_training(self.batch, rng)
        cond = None if drawn is None else self._tensor(drawn[0])
        z = torch.randn(self.batch, self.params["latent_dim"], device=self.device)
        with torch.no_grad():
            return self._with(self.transformer.activate(self.G_plain(z, cond), tau=self.params["gumbel_tau"]), cond), cond, drawn

    def discriminator_step(self, rng: np.random.Generator):
        """WGAN-GP on fake and real rows with their conditions, and the interpolates between them."""
        n, pac, p = self.batch, self.params["pac"], self.params
        fake_in, cond, drawn = self.fake_rows(rng)
        if drawn is None:
            real_in = self.data[self._tensor(rng.integers(len(self.data), size=n))]
        else:
            perm = rng.permutation(n)  # real rows are matched to shuffled conditions, as in CTGAN
            real = self.data[self._tensor(self.sampler.sample_real_rows(drawn[2][perm], drawn[3][perm], rng))]
            real_in = self._with(real, cond[self._tensor(perm)])
        # one interpolation coefficient per pac group, as the discriminator judges groups
        alpha = torch.rand(n // pac, 1, 1, device=self.device).expand(-1, pac, real_in.shape[1]).reshape(n, -1)
        mixed = (alpha * real_in + (1 - alpha) * fake_in).requires_grad_(True)
        scores_fake, scores_real, scores_mixed = self.D(torch.cat([fake_in, real_in, mixed])).split(n // pac)
        (grad,) = torch.autograd.grad(scores_mixed.sum(), mixed, create_graph=True)
        penalty = ((grad.reshape(-1, pac * real_in.shape[1]).norm(2, dim=1) - 1) ** 2).mean()
        loss_d = scores_fake.mean() - scores_real.mean() + p["gp_weight"] * penalty
        norm_d = optimizer_step(self.opt_d, self.D_plain, loss_d)
        return loss_d.detach(), scores_real.detach(), scores_fake.detach(), norm_d, penalty.detach()

    def g_term(self, scores: torch.Tensor) -> torch.Tensor:
        """G's adversarial loss from D's scores of its rows (WGAN's; a private run's loss replaces it)."""
        return -scores.mean()

    def generator_step(self, rng: np.random.Generator):
        """Fool D, and make the conditioned value (cross-entropy on the conditioned column)."""
        n, p = self.batch, self.params
        drawn = self.sampler.sample_training(n, rng)
        cond = None if drawn is None else self._tensor(drawn[0])
        raw = self.G(torch.randn(n, p["latent_dim"], device=self.device), cond)
        self.D_plain.requires_grad_(False)
        try:
            loss_adv = self.g_term(self.D_plain(self._with(self.transformer.activate(raw, tau=p["gumbel_tau"]), cond)))
        finally:
            self.D_plain.requires_grad_(True)
        loss_cond = _condition_loss(self.transformer, raw, cond, self._tensor(drawn[1])) if drawn is not None else torch.zeros((), device=self.device)
        loss_g = loss_adv + loss_cond
        norm_g = optimizer_step(self.opt_g, self.G_plain, loss_g)
        return loss_g.detach(), loss_cond.detach(), norm_g


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


def fit(dataset: TabularDataset, epochs: int = 300, batch_size: int = 500, seed: int = 0, lr: float = 2e-4, **model_params: Any) -> TabularModel:
    """Trains a CTGAN-class model on the table in this process (CTGAN's defaults: Adam 2e-4, betas (0.5, 0.9), one D step per G step)."""
    pac = FAMILY.validate({**model_params, "data_dim": 1})["pac"]
    if batch_size % pac or batch_size < pac:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of pac={pac}")
    params, transformer, encoded, _ = prepare(dataset, seed, **model_params)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator, discriminator = FAMILY.build_generator(params), FAMILY.build_discriminator(params)
    step = CTGANStep(generator, discriminator, *optimizers(generator, discriminator, lr), transformer, ConditionSampler(transformer, encoded),
                     torch.from_numpy(encoded), params, batch_size)
    for _ in range(epochs * max(len(encoded) // batch_size, 1)):
        step(rng)
    return TabularModel(params, transformer, generator.eval())
