"""One CycleGAN training step (the generator pair, then the discriminator pair), its history pool and learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ganworks.optim import optimizer_step
from trainer.losses import LOSSES, AdversarialLoss
from trainer.step import Networks, StepResult


class HistoryPool:
    """Generated images D has been shown, so it is not only fitted to G's latest mistakes (Shrivastava et al. 2017).

    Until the pool is full each new image goes in and comes back. Then each new image is, with `probability`,
    swapped for a random past one (which D sees instead), else passed through. Draws come from the caller's
    stream, so a run is reproducible.
    """

    def __init__(self, size: int, probability: float, rng: torch.Generator):
        self.size, self.probability, self.rng = size, probability, rng
        self.images: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.rng)) < self.probability:
                slot = int(torch.randint(0, self.size, (), generator=self.rng))
                out.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(size × shape images, zero-padded past the filled ones; the count filled) — one shape on every rank, for the checkpoint."""
        padded = torch.zeros((self.size, *shape))
        if self.images:
            padded[: len(self.images)] = torch.stack(self.images).cpu()
        return padded, torch.tensor([len(self.images)])

    def load(self, padded: torch.Tensor, count: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.images = [image.to(device) for image in padded[: int(count.item())]]


def lr_factor(step: int, steps: int, decay_start: float) -> float:
    """1 until decay_start × steps, then linearly down to (almost) 0 at the last step."""
    start = int(decay_start * steps)
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1, steps - start))


class CycleStep:
    """G step (adversarial + λ·cycle + λ_id·identity, through the plain D pair) then D step (real vs pooled fakes, one DDP forward).
    The adversarial terms are a loss of the registry (trainer/losses.py): CycleGAN's least squares (lsgan) by default."""

    def __init__(self, nets: Networks, params: dict[str, Any], noise: torch.Generator, loss: AdversarialLoss | None = None):
        self.nets, self.params, self.loss = nets, params, loss or LOSSES["lsgan"]
        self.cycle_weight, self.identity_weight = params["cycle_weight"], params["identity_weight"]
        self.pool_a = HistoryPool(params["pool_size"], params["pool_probability"], noise)
        self.pool_b = HistoryPool(params["pool_size"], params["pool_probability"], noise)

    def pool_state(self, image_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Both history pools as tensors for the resume checkpoint (a resumed run shows D the fakes it would have seen)."""
        out = {}
        for name, pool in (("pool_a", self.pool_a), ("pool_b", self.pool_b)):
            out[name], out[f"{name}_count"] = pool.state(image_shape)
        return out

    def load_pools(self, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> None:
        for name, pool in (("pool_a", self.pool_a), ("pool_b", self.pool_b)):
            pool.load(tensors[name], tensors[f"{name}_count"], device)

    def set_lr(self, factor: float, g_lr: float, d_lr: float) -> None:
        for opt, base in ((self.nets.g_opt, g_lr), (self.nets.d_opt, d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def __call__(self, real_a: torch.Tensor, real_b: torch.Tensor) -> StepResult:
        D = self.nets.D
        D.requires_grad_(False)
        out = self.nets.G_ddp(real_a, real_b, self.identity_weight > 0)
        judged_a, judged_b = D(out.fake_a, out.fake_b)
        adversarial = self.loss.g_term(judged_a) + self.loss.g_term(judged_b)
        cycle = F.l1_loss(out.rec_a, real_a) + F.l1_loss(out.rec_b, real_b)
        loss_g = adversarial + self.cycle_weight * cycle
        identity = torch.zeros(())
        if out.same_a is not None:
            identity = F.l1_loss(out.same_a, real_a) + F.l1_loss(out.same_b, real_b)
            loss_g = loss_g + self.identity_weight * identity
        norm_g = optimizer_step(self.nets.g_opt, self.nets.G, loss_g)
        D.requires_grad_(True)

        n = len(real_a)
        logits_a, logits_b = self.nets.D_ddp(torch.cat([real_a, self.pool_a(out.fake_a)]), torch.cat([real_b, self.pool_b(out.fake_b)]))
        real_logits = torch.cat([logits_a[:n].flatten(), logits_b[:n].flatten()])
        fake_logits = torch.cat([logits_a[n:].flatten(), logits_b[n:].flatten()])
        loss_d = 0.5 * (self.loss.d_term(logits_a[:n], logits_a[n:]) + self.loss.d_term(logits_b[:n], logits_b[n:]))
        norm_d = optimizer_step(self.nets.d_opt, D, loss_d)
        # Cycle L1 per direction (mean over both), in [0, 2] pixel units of [-1, 1] images.
        extra = {"cycle_l1": float(cycle.detach()) / 2, "identity_l1": float(identity.detach()) / 2, "adversarial_g": float(adversarial.detach())}
        return StepResult(loss_d.detach(), loss_g.detach(), real_logits.detach(), fake_logits.detach(), norm_d, norm_g, extra)
