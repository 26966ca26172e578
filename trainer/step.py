"""One GAN training step, the same on every worker: the D step with its regularisers, the G step, then G_ema."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from ganworks.models import ModelFamily
from trainer.ema import ema_beta, update_ema
from trainer.losses import AdversarialLoss, DRegulariser


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

    @property
    def skipped(self) -> bool:
        return self.norm_d is None or self.norm_g is None

    def stats(self) -> dict[str, Any]:
        """The per-step values stats.jsonl averages over each logging interval, in its field order."""
        return {"loss_g": self.loss_g, "loss_d": self.loss_d, "d_real": self.real_logits.mean(), "d_fake": self.fake_logits.mean(),
                "grad_norm_g": self.norm_g or 0.0, "grad_norm_d": self.norm_d or 0.0}


class GANStep:
    """Draws latents from this worker's noise stream, so a resumed run draws what it would have drawn."""

    def __init__(self, nets: Networks, family: ModelFamily, params: dict[str, Any], loss: AdversarialLoss, regularisers: list[DRegulariser],
                 noise: torch.Generator, device: torch.device, autocast: contextlib.AbstractContextManager, batch_size: int):
        self.nets, self.family, self.params, self.loss, self.regularisers = nets, family, params, loss, regularisers
        self.noise, self.device, self.autocast, self.batch_size = noise, device, autocast, batch_size
        self.conditional = params.get("num_classes", 0) > 0

    def __call__(self, step: int, real: torch.Tensor, real_y: torch.Tensor | None) -> StepResult:
        loss_d, real_logits, fake_logits, norm_d = self.discriminator_step(step, real, real_y)
        loss_g, norm_g = self.generator_step()
        return StepResult(loss_d, loss_g, real_logits, fake_logits, norm_d, norm_g)

    def latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.family.random_latents(self.params, n, self.noise).to(self.device)
        y = self.family.random_labels(self.params, n, self.noise)
        return z, (y.to(self.device) if y is not None else None)

    def discriminator_step(self, step: int, real: torch.Tensor, real_y: torch.Tensor | None):
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
            logits = D_ddp(torch.cat([real_in, fake, *added]), labels).float()
        real_logits, fake_logits, *added_logits = logits.split([n, n, *(len(x) for x in added)])
        loss_d = self.loss.d_term(real_logits, fake_logits)
        next_added = iter(added_logits)
        for reg, extra in zip(due, extras):
            loss_d = loss_d + reg.penalty(real_logits, real_in, next(next_added) if extra is not None else None, extra)
        return loss_d, real_logits, fake_logits, _optimizer_step(self.nets.d_opt, self.nets.D, loss_d)

    def generator_step(self):
        """Through D's plain module, so D's DDP does not wait for gradients D does not get."""
        D = self.nets.D
        D.requires_grad_(False)
        z, fake_y = self.latents(self.batch_size)
        with self.autocast:
            loss_g = self.loss.g_term(D(self.nets.G_ddp(z, fake_y), fake_y).float())
        norm_g = _optimizer_step(self.nets.g_opt, self.nets.G, loss_g)
        D.requires_grad_(True)
        return loss_g, norm_g

    def update_ema(self, global_batch: int, images_seen: int, half_life_images: float, rampup: float) -> None:
        update_ema(self.nets.G_ema, self.nets.G, ema_beta(global_batch, images_seen, half_life_images, rampup))


def _optimizer_step(optimizer: torch.optim.Optimizer, module: torch.nn.Module, loss: torch.Tensor) -> float | None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = finite_grad_norm(module)
    if norm is not None:
        optimizer.step()
    return norm


def finite_grad_norm(module: torch.nn.Module) -> float | None:
    """The global gradient norm, or None (and the gradients dropped) when any gradient is NaN or infinite."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    if not torch.isfinite(norm):
        for p in module.parameters():
            p.grad = None
        return None
    return float(norm)
