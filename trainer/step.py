"""One GAN training step, the same on every worker: the D step with its regularisers, the G step, then G_ema."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ganworks.models import ModelFamily
from ganworks.optim import optimizer_step
from trainer.ema import ema_beta, update_ema
from trainer.augment import AdaptiveAugment
from trainer.losses import AdversarialLoss, DRegulariser, GRegulariser
from trainer.privacy import per_sample_hooks_off, private_d_update


def data_parallel(module: torch.nn.Module) -> DDP:
    """DDP(module), with every gradient laid out as its parameter is before DDP copies it into its bucket.

    R1's double backward through a (1, C) weight (stylegan2 D's output layer) gives that weight's gradient the strides
    (1, 1) instead of (C, 1) — the same elements, but DDP compares strides and warned on every stylegan2 run that this
    "may impair performance". The hook re-lays such a gradient (C numbers) and leaves every other one untouched.
    """
    for param in module.parameters():
        if param.requires_grad:
            param.register_hook(functools.partial(_laid_out_like, param.stride()))
    return DDP(module)


def _laid_out_like(strides: tuple[int, ...], grad: torch.Tensor) -> torch.Tensor:
    if grad.stride() == strides:
        return grad
    return torch.empty_strided(grad.shape, strides, dtype=grad.dtype, device=grad.device).copy_(grad)


@dataclasses.dataclass
class Networks:
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    G_ddp: torch.nn.Module  # DDP wrappers: their backward all-reduces the gradients
    D_ddp: torch.nn.Module
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer


@dataclasses.dataclass
class StepResult:
    loss_d: torch.Tensor
    loss_g: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    norm_d: float | None  # None: non-finite gradients, the update was skipped
    norm_g: float | None
    extra: dict[str, float] = dataclasses.field(default_factory=dict)  # augment_p, pl_mean: the value after the step

    @property
    def skipped(self) -> bool:
        return self.norm_d is None or self.norm_g is None

    def stats(self) -> dict[str, Any]:
        """The per-step values stats.jsonl averages over each logging interval, in its field order."""
        # A private step's Poisson sample can hold no real image: its d_real counts as 0, not NaN, in the interval's mean.
        d_real = self.real_logits.mean() if self.real_logits.numel() else 0.0
        return {"loss_g": self.loss_g, "loss_d": self.loss_d, "d_real": d_real, "d_fake": self.fake_logits.mean(),
                "grad_norm_g": self.norm_g or 0.0, "grad_norm_d": self.norm_d or 0.0, **self.extra}


class GANStep:
    """Draws latents (and augmentations, and regularisers' noise) from this worker's noise stream, so a resumed run draws what it would have drawn."""

    def __init__(self, nets: Networks, family: ModelFamily, params: dict[str, Any], loss: AdversarialLoss, regularisers: list[DRegulariser],
                 noise: torch.Generator, device: torch.device, autocast: contextlib.AbstractContextManager, batch_size: int,
                 g_regularisers: list[GRegulariser] = (), augment: AdaptiveAugment | None = None, global_batch: int = 0,
                 private: Any = None, world: int = 1):
        self.nets, self.family, self.params, self.loss, self.regularisers = nets, family, params, loss, regularisers
        self.noise, self.device, self.autocast, self.batch_size = noise, device, autocast, batch_size
        self.g_regularisers, self.augment, self.global_batch = list(g_regularisers), augment, global_batch or batch_size
        self.conditional = params.get("num_classes", 0) > 0
        self.private, self.world = private, world  # --dp-epsilon: Opacus' DP optimizer over D (trainer/privacy.py)

    def __call__(self, step: int, real: torch.Tensor, real_y: torch.Tensor | None) -> StepResult:
        loss_d, real_logits, fake_logits, norm_d = self.discriminator_step(step, real, real_y)
        loss_g, norm_g = self.generator_step(step)
        if self.augment is not None:
            self.augment.adjust(step, self.global_batch)
        return StepResult(loss_d, loss_g, real_logits, fake_logits, norm_d, norm_g, self.state())

    def state(self) -> dict[str, float]:
        """What resume must restore besides the networks: the augmentation probability and the regularisers' state."""
        state = {"augment_p": self.augment.p} if self.augment is not None else {}
        for reg in self.g_regularisers:
            state.update(reg.state())
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        if self.augment is not None and "augment_p" in state:
            self.augment.p = float(state["augment_p"])
        for reg in self.g_regularisers:
            reg.load_state(state)

    def _d_input(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images, self.noise) if self.augment is not None else images

    def latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.family.random_latents(self.params, n, self.noise).to(self.device)
        y = self.family.random_labels(self.params, n, self.noise)
        return z, (y.to(self.device) if y is not None else None)

    def discriminator_step(self, step: int, real: torch.Tensor, real_y: torch.Tensor | None):
        if self.private is not None:
            return self.private_discriminator_step(real, real_y)
        return self.plain_discriminator_step(step, real, real_y)

    def private_discriminator_step(self, real: torch.Tensor, real_y: torch.Tensor | None):
        """DP-SGD: one forward over this worker's Poisson sample of real images and batch_size fakes; every row's loss
        gets its own clipped gradient, noise is added to their sum (trainer/privacy.py says why only real rows are charged)."""
        G, n = self.nets.G_ddp.module, self.batch_size
        z, fake_y = self.latents(n)
        with torch.no_grad(), self.autocast:
            fake = G(z, fake_y)
        labels = torch.cat([real_y, fake_y]) if self.conditional else None
        with self.autocast:
            logits = self.nets.D_ddp(torch.cat([real, fake]), labels).float()
        real_logits, fake_logits = logits.split([len(real), n])
        rows = torch.cat([self.loss.d_real(real_logits), self.loss.d_fake(fake_logits)])
        norm_d = private_d_update(self.private, self.nets.D, rows.mean(), self.world)
        # What stats.jsonl shows: the usual D loss (a step may draw no real image at all: then only the fake term).
        loss_d = self.loss.d_term(real_logits, fake_logits) if len(real) else self.loss.d_fake(fake_logits).mean()
        return loss_d.detach(), real_logits.detach(), fake_logits.detach(), norm_d

    def plain_discriminator_step(self, step: int, real: torch.Tensor, real_y: torch.Tensor | None):
        """One forward over real, fake and the regularisers' samples together (DDP wants one forward per backward)."""
        G, D_ddp, n = self.nets.G_ddp.module, self.nets.D_ddp, self.batch_size
        z, fake_y = self.latents(n)
        with torch.no_grad(), self.autocast:
            fake = G(z, fake_y)
        due = [reg for reg in self.regularisers if reg.due(step)]
        real_in = real.detach().requires_grad_(any(reg.needs_real_grad for reg in due))
        extras = [reg.extra_inputs(real, fake, self.noise) for reg in due]
        added = [x for x in extras if x is not None]
        labels = torch.cat([real_y, fake_y, *[real_y] * len(added)]) if self.conditional else None
        with self.autocast:
            logits = D_ddp(self._d_input(torch.cat([real_in, fake, *added])), labels).float()
        real_logits, fake_logits, *added_logits = logits.split([n, n, *(len(x) for x in added)])
        if self.augment is not None:
            self.augment.observe(real_logits)
        loss_d = self.loss.d_term(real_logits, fake_logits)
        next_added = iter(added_logits)
        for reg, extra in zip(due, extras):
            loss_d = loss_d + reg.penalty(real_logits, real_in, next(next_added) if extra is not None else None, extra)
        return loss_d, real_logits, fake_logits, optimizer_step(self.nets.d_opt, self.nets.D, loss_d)

    def generator_step(self, step: int = 0):
        """Through D's plain module, so D's DDP does not wait for gradients D does not get; G regularisers use the same forward."""
        D = self.nets.D
        trainable = [p for p in D.parameters() if p.requires_grad]  # not the blocks --freeze-d-blocks froze
        D.requires_grad_(False)
        z, fake_y = self.latents(self.batch_size)
        due = [reg for reg in self.g_regularisers if reg.due(step)]
        with self.autocast:
            if due:
                fake, latent = self.family.forward_with_latent(self.nets.G_ddp, z, fake_y)
            else:
                fake = self.nets.G_ddp(z, fake_y)
            loss_g = self.loss.g_term(D(self._d_input(fake), fake_y).float())
            for reg in due:
                loss_g = loss_g + reg.penalty(fake, latent, self.noise)
        with per_sample_hooks_off(self.nets.D_ddp) if self.private is not None else contextlib.nullcontext():
            norm_g = optimizer_step(self.nets.g_opt, self.nets.G, loss_g)
        for p in trainable:
            p.requires_grad_(True)
        return loss_g, norm_g

    def update_ema(self, global_batch: int, images_seen: int, half_life_images: float, rampup: float) -> None:
        update_ema(self.nets.G_ema, self.nets.G, ema_beta(global_batch, images_seen, half_life_images, rampup))
