"""CTGAN's training (Xu et al. 2019): its step (WGAN-GP with pac, training-by-sampling, the generator's cross-entropy on the
condition) and `fit`, the whole training in one process with plain PyTorch. The loss and its penalty are the loss registry's
"wgan-gp-pac" (trainer/losses.py); trainer/kinds/table.py runs the step under Ray and DDP.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganworks.optim import optimizer_step
from ganworks.tabular.data import TabularDataset
from ganworks.tabular.sampler import ConditionSampler
from ganworks.tabular.synthesizer import FAMILY, TabularModel, prepare
from ganworks.tabular.transformer import DataTransformer
from trainer.losses import LOSSES, AdversarialLoss, loss_regularisers


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
    """One CTGAN training step (a WGAN-GP discriminator step with pac, then a generator step), for `fit` and the Ray trainer.

    G and D may be DistributedDataParallel wrappers: the discriminator step runs D once on fake, real and the
    gradient penalty's interpolates together (DDP wants one forward per backward), and the generator step
    goes through D's plain module with D frozen, so D's gradients are neither computed nor all-reduced.
    Noise, Gumbel draws, dropout and the interpolation come from torch's global RNG; conditions and real
    rows from the `rng` each call is given. The loss is a registry entry for tables (trainer/losses.py): CTGAN's
    wgan-gp-pac by default, whose pac gradient penalty is the only regulariser a table loss has.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 transformer: DataTransformer, sampler: ConditionSampler, data: torch.Tensor, params: dict[str, Any], batch_size: int,
                 loss: AdversarialLoss | None = None):
        if batch_size % params["pac"] or batch_size < params["pac"]:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of pac={params['pac']}")
        self.G, self.D, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        self.G_plain, self.D_plain = getattr(generator, "module", generator), getattr(discriminator, "module", discriminator)
        self.transformer, self.sampler, self.data, self.params, self.batch = transformer, sampler, data, params, batch_size
        self.device = data.device
        self.loss = loss or LOSSES["wgan-gp-pac"]
        self.penalties = loss_regularisers(self.loss, params)

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
        """The loss's D terms on fake and real rows with their conditions, and its penalty at the interpolates between them."""
        n, pac = self.batch, self.params["pac"]
        fake_in, cond, drawn = self.fake_rows(rng)
        if drawn is None:
            real_in = self.data[self._tensor(rng.integers(len(self.data), size=n))]
        else:
            perm = rng.permutation(n)  # real rows are matched to shuffled conditions, as in CTGAN
            real = self.data[self._tensor(self.sampler.sample_real_rows(drawn[2][perm], drawn[3][perm], rng))]
            real_in = self._with(real, cond[self._tensor(perm)])
        # one D forward for fake, real and the penalty's interpolates (one coefficient per pac group, as D judges groups)
        mixed = [reg.extra_inputs(real_in, fake_in, None) for reg in self.penalties]
        scores_fake, scores_real, *scores_mixed = self.D(torch.cat([fake_in, real_in, *mixed])).split(n // pac)
        loss_d, penalty = self.loss.d_term(scores_real, scores_fake), torch.zeros((), device=self.device)
        for reg, inputs, scores in zip(self.penalties, mixed, scores_mixed):
            penalty = reg.gap(scores, inputs)  # the unweighted penalty goes to stats.jsonl
            loss_d = loss_d + reg.weight * penalty
        norm_d = optimizer_step(self.opt_d, self.D_plain, loss_d)
        return loss_d.detach(), scores_real.detach(), scores_fake.detach(), norm_d, penalty.detach()

    def g_term(self, scores: torch.Tensor) -> torch.Tensor:
        """G's adversarial loss from D's scores of its rows."""
        return self.loss.g_term(scores)

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
