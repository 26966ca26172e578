"""Adaptive discriminator augmentation (Karras et al. 2020, StyleGAN2-ADA) for small datasets.

Everything D sees (real, fake and regulariser samples) goes through the same random, differentiable
augmentations, each applied to a sample with probability p: horizontal flip, integer translation (up to
1/8 of the size, reflected at the border), and, for colour images, brightness, contrast and saturation.
p follows the sign of D's logits on real images: over each adjustment interval, if more than `target`
of them are positive (D overfits) p rises, else it falls, by at most batch × interval / speed_images.
All draws come from the caller's CPU generator, so a resumed run augments as the first attempt did;
every op is linear in the images, so R1 can differentiate through them twice.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


class AdaptiveAugment:
    def __init__(self, channels: int, target: float = 0.6, speed_images: int = 100_000, interval: int = 4, p: float = 0.0):
        self.colour = channels == 3
        self.target, self.speed_images, self.interval, self.p = target, speed_images, interval, p
        self._signs = torch.zeros(2, dtype=torch.float64)  # sum of sign(D(real)), count

    # ---- the augmentations ----------------------------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """images (N, C, H, W) with this step's augmentations; unchanged (no draws) while p is 0."""
        if self.p <= 0:
            return images
        n, _, height, width = images.shape
        dev = images.device

        def chosen(shape=()) -> torch.Tensor:  # which samples get an augmentation, as a (N, 1, ...) mask
            return (torch.rand(n, generator=rng) < self.p).float().reshape(n, *([1] * len(shape))).to(dev)

        flip = (torch.rand(n, generator=rng) < self.p).to(dev)
        images = torch.where(flip.reshape(n, 1, 1, 1), images.flip(3), images)
        reach = max(1, round(height / 8)), max(1, round(width / 8))
        shift = [(torch.randint(-r, r + 1, (n,), generator=rng) * (torch.rand(n, generator=rng) < self.p)) for r in reach]
        images = _translate(images, shift[0].to(dev), shift[1].to(dev))
        if self.colour:
            brightness = torch.randn(n, generator=rng).mul(0.2).reshape(n, 1, 1, 1).to(dev)
            images = images + brightness * chosen((1, 1, 1))
            contrast = torch.randn(n, generator=rng).mul(0.5 * math.log(2)).exp().reshape(n, 1, 1, 1).to(dev)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = mean + (images - mean) * (1 + (contrast - 1) * chosen((1, 1, 1)))
            saturation = torch.randn(n, generator=rng).mul(math.log(2)).exp().reshape(n, 1, 1, 1).to(dev)
            grey = images.mean(dim=1, keepdim=True)
            images = grey + (images - grey) * (1 + (saturation - 1) * chosen((1, 1, 1)))
        return images

    # ---- adapting p -----------------------------------------------------------------------------------------------

    def observe(self, real_logits: torch.Tensor) -> None:
        self._signs += torch.tensor([float(real_logits.detach().sign().sum()), float(real_logits.numel())], dtype=torch.float64)

    def adjust(self, step: int, global_batch: int) -> None:
        """After `interval` steps: p moves towards keeping E[sign(D(real))] at the target; every rank gets the same p."""
        if (step + 1) % self.interval:
            return
        signs = self._signs.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(signs)
        self._signs.zero_()
        if signs[1] == 0:
            return
        overfit = float(signs[0] / signs[1])
        step_size = global_batch * self.interval / self.speed_images
        self.p = min(1.0, max(0.0, self.p + math.copysign(step_size, overfit - self.target)))


def _translate(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Each sample shifted by whole pixels (dy, dx), reflected at the border; a gather, so twice differentiable."""
    n, _, height, width = images.shape
    rows = _reflect(torch.arange(height, device=images.device).unsqueeze(0) - dy.unsqueeze(1), height)  # (N, H)
    cols = _reflect(torch.arange(width, device=images.device).unsqueeze(0) - dx.unsqueeze(1), width)  # (N, W)
    batch = torch.arange(n, device=images.device).reshape(n, 1, 1)
    return images.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)
