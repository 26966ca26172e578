"""Adversarial losses and regularisers, each one registry entry: non-saturating (Goodfellow et al. 2014), hinge
(Lim & Ye 2017), least squares (LSGAN, Mao et al. 2017; CycleGAN's), WGAN-GP (Gulrajani et al. 2017) and CTGAN's WGAN-GP
with pac (Xu et al. 2019; Lin et al. 2018), lazy R1 (Mescheder et al. 2018; lazy as in StyleGAN2), and on G's side lazy
path-length regularisation (Karras et al. 2020).

`--loss` names one entry for every kind of run; an entry says the kinds it applies to (a table's discriminator judges
pac rows together, so its gradient penalty is taken per group), and a run of another kind is refused (trainer/planning.py).

A loss is its D term, its G term and the regularisers it cannot do without (WGAN-GP's gradient penalty).
A discriminator regulariser may add samples to D's one forward pass (DDP wants one forward per backward)
and returns its weighted penalty from the logits. Add a loss as one more `LOSSES` entry, a regulariser with a
class like `LazyR1` and a line in `REGULARISERS`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ganworks.errors import ConfigError


class RunOptions(Protocol):
    """The options a run's regularisers are chosen by (trainer.config.TrainOptions has them; not imported: it imports this module)."""

    loss: str
    r1_gamma: float
    r1_every: int
    gp_weight: float
    pl_weight: float
    pl_every: int


@dataclasses.dataclass(frozen=True)
class AdversarialLoss:
    """D's loss is the mean of a per-sample term over the real logits plus one over the fake logits; private training
    (trainer/privacy.py) needs the terms per sample, to clip each sample's gradient."""

    name: str
    d_real: Callable[[torch.Tensor], torch.Tensor]  # real logits → D's loss per real sample
    d_fake: Callable[[torch.Tensor], torch.Tensor]  # fake logits → D's loss per fake sample
    g_term: Callable[[torch.Tensor], torch.Tensor]  # fake logits → G's loss
    regularisers: tuple[str, ...] = ()  # names in REGULARISERS this loss always uses
    kinds: tuple[str, ...] = ("image", "table", "translation")  # the kinds of run it applies to (ganworks.models.KINDS)

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(real logits, fake logits) → D's loss."""
        return self.d_real(real).mean() + self.d_fake(fake).mean()


# Adding a loss is one more entry here.
LOSSES: dict[str, AdversarialLoss] = {loss.name: loss for loss in (
    AdversarialLoss(
        "non-saturating",
        d_real=lambda real: F.softplus(-real),
        d_fake=lambda fake: F.softplus(fake),
        g_term=lambda fake: F.softplus(-fake).mean(),
    ),
    AdversarialLoss(
        "hinge",
        d_real=lambda real: F.relu(1.0 - real),
        d_fake=lambda fake: F.relu(1.0 + fake),
        g_term=lambda fake: -fake.mean(),
    ),
    AdversarialLoss(
        "lsgan",  # targets 1 for real and 0 for fake, as CycleGAN trains
        d_real=lambda real: (real - 1).square(),
        d_fake=lambda fake: fake.square(),
        g_term=lambda fake: (fake - 1).square().mean(),
        kinds=("image", "translation"),
    ),
    AdversarialLoss(
        "wgan-gp",
        d_real=lambda real: -real,
        d_fake=lambda fake: fake,
        g_term=lambda fake: -fake.mean(),
        regularisers=("gradient-penalty",),
        kinds=("image",),
    ),
    AdversarialLoss(
        "wgan-gp-pac",  # CTGAN's: the penalty at interpolates of pac-row groups, one coefficient per group
        d_real=lambda real: -real,
        d_fake=lambda fake: fake,
        g_term=lambda fake: -fake.mean(),
        regularisers=("pac-gradient-penalty",),
        kinds=("table",),
    ),
)}


def get_loss(name: str) -> AdversarialLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"--loss {name!r} is unknown; use one of {', '.join(sorted(LOSSES))}") from None


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return get_loss(name).d_term(real_logits, fake_logits)


def g_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    return get_loss(name).g_term(fake_logits)


def input_gradient_penalty(logits: torch.Tensor, inputs: torch.Tensor, target_norm: float | None) -> torch.Tensor:
    """Mean over samples of ||d logits / d inputs||² (R1, target None) or (||.|| - 1)² (WGAN-GP, target 1)."""
    (grads,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    squared = grads.square().flatten(1).sum(1)
    if target_norm is None:
        return squared.mean()
    return (squared.add(1e-12).sqrt() - target_norm).square().mean()


class DRegulariser:
    """A penalty on D, added to its loss on the steps where `due` says so."""

    needs_real_grad = False  # D's real inputs must require grad (penalties on the gradient at real images)

    def due(self, step: int) -> bool:
        return True

    def extra_inputs(self, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor | None:
        """Samples appended to D's forward (with the real labels when conditional), or None."""
        return None

    def penalty(self, real_logits: torch.Tensor, real: torch.Tensor, extra_logits: torch.Tensor | None, extra: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class LazyR1(DRegulariser):
    """γ/2 · ||∇D(real)||², every `every` steps and scaled by it, so the average strength is as asked."""

    needs_real_grad = True

    def __init__(self, gamma: float, every: int):
        self.gamma, self.every = gamma, every

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def penalty(self, real_logits, real, extra_logits, extra):
        return (self.gamma / 2) * self.every * input_gradient_penalty(real_logits, real, None)


class GradientPenalty(DRegulariser):
    """WGAN-GP: weight · (||∇D(x̂)|| - 1)² at random points x̂ between real and fake images."""

    def __init__(self, weight: float):
        self.weight = weight

    def extra_inputs(self, real, fake, rng):
        alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng).to(real.device)
        return real.lerp(fake, alpha).requires_grad_(True)

    def penalty(self, real_logits, real, extra_logits, extra):
        return self.weight * input_gradient_penalty(extra_logits, extra, 1.0)


class PacGradientPenalty(DRegulariser):
    """CTGAN's WGAN-GP: D judges `pac` rows together, so the interpolates share one coefficient per group of pac rows
    and the penalty is weight · (||∇D|| − 1)² of each group's gradient. Rows are (n, width); the draw is from `rng`
    (None: torch's global stream, as CTGAN's step draws)."""

    def __init__(self, weight: float, pac: int):
        self.weight, self.pac = weight, pac

    def extra_inputs(self, real, fake, rng):
        n = real.shape[0]
        alpha = torch.rand(n // self.pac, 1, 1, device=real.device, generator=rng).expand(-1, self.pac, real.shape[1]).reshape(n, -1)
        return (alpha * real + (1 - alpha) * fake).requires_grad_(True)

    def gap(self, extra_logits: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """The unweighted penalty, (||∇D|| − 1)² averaged over the groups (CTGAN's stats report it)."""
        (grad,) = torch.autograd.grad(extra_logits.sum(), extra, create_graph=True)
        return ((grad.reshape(-1, self.pac * extra.shape[1]).norm(2, dim=1) - 1) ** 2).mean()

    def penalty(self, real_logits, real, extra_logits, extra):
        return self.weight * self.gap(extra_logits, extra)


class GRegulariser:
    """A penalty on G, added to its loss on the steps where `due` says so; `state` is kept in the training checkpoint."""

    def due(self, step: int) -> bool:
        return True

    def penalty(self, images: torch.Tensor, latent: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, float]:
        return {}

    def load_state(self, state: dict[str, float]) -> None:
        pass


class LazyPathLength(GRegulariser):
    """weight · (|J_latentᵀ y| - a)² for random image-space y, a the moving mean of the lengths; every `every` steps, scaled by it.

    Computed on the first 1/shrink of the G step's batch, from its own forward; the mean is averaged over the workers.
    """

    def __init__(self, weight: float, every: int, decay: float = 0.01, shrink: int = 2):
        self.weight, self.every, self.decay, self.shrink = weight, every, decay, shrink
        self.mean = 0.0

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def penalty(self, images, latent, rng):
        k = max(1, images.shape[0] // self.shrink)
        y = torch.randn(images[:k].shape, generator=rng).to(images.device, images.dtype) / math.sqrt(images.shape[2] * images.shape[3])
        (grads,) = torch.autograd.grad((images[:k] * y).sum(), latent, create_graph=True)
        grads = grads[:k].float()
        lengths = grads.square().reshape(k, -1, grads.shape[-1]).sum(2).mean(1).sqrt()  # (k,), per w layer averaged
        batch_mean = lengths.detach().mean()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch_mean)
            batch_mean /= dist.get_world_size()
        self.mean = self.mean + self.decay * (float(batch_mean) - self.mean)
        return self.weight * self.every * (lengths - self.mean).square().mean()

    def state(self) -> dict[str, float]:
        return {"pl_mean": self.mean}

    def load_state(self, state: dict[str, float]) -> None:
        self.mean = float(state.get("pl_mean", self.mean))


def g_regularisers_for(opts: RunOptions) -> list[GRegulariser]:
    return [LazyPathLength(opts.pl_weight, opts.pl_every)] if opts.pl_weight > 0 else []


# Each made from the run's options and its family's hyperparameters (a table's pac and gp_weight are hyperparameters of ctgan).
REGULARISERS: dict[str, Callable[[RunOptions | None, Mapping[str, Any]], DRegulariser]] = {
    "r1": lambda opts, params: LazyR1(opts.r1_gamma, opts.r1_every),
    "gradient-penalty": lambda opts, params: GradientPenalty(opts.gp_weight),
    "pac-gradient-penalty": lambda opts, params: PacGradientPenalty(params["gp_weight"], params["pac"]),
}


def regularisers_for(opts: RunOptions, params: Mapping[str, Any] | None = None) -> list[DRegulariser]:
    """The D regularisers a run uses, in the order their penalties are added: R1 if asked for, then the loss's own."""
    names = (["r1"] if opts.r1_gamma > 0 else []) + list(get_loss(opts.loss).regularisers)
    return [REGULARISERS[name](opts, params or {}) for name in names]


def loss_regularisers(loss: AdversarialLoss, params: Mapping[str, Any]) -> list[DRegulariser]:
    """A loss's own regularisers made from the family's hyperparameters alone (CTGAN's one-process `fit` has no run options)."""
    return [REGULARISERS[name](None, params) for name in loss.regularisers]
