"""G_ema: an exponential moving average of the generator's weights with a half-life in images, ramped up as in StyleGAN2-ADA."""

from __future__ import annotations

import copy

import torch


def ema_beta(batch_images: int, images_seen: int, half_life_images: float, rampup: float) -> float:
    """The decay for one step: the average halves its memory every half_life images.

    Early in training the half-life is capped at rampup × images seen, so G_ema follows the fast-changing
    young generator instead of averaging in its random start.
    """
    half_life = half_life_images
    if rampup > 0:
        half_life = min(half_life, images_seen * rampup)
    if half_life <= 0:
        return 0.0
    return 0.5 ** (batch_images / half_life)


def make_ema(generator: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(generator).eval().requires_grad_(False)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, generator: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), generator.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), generator.buffers()):
        b_ema.copy_(b)
