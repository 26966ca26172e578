"""GAN losses over discriminator logits: non-saturating (Goodfellow et al. 2014), hinge (Lim & Ye 2017), WGAN-GP (Gulrajani et al. 2017), and R1 (Mescheder et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "non-saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()  # hinge and WGAN train G the same way


def input_gradient_penalty(logits: torch.Tensor, inputs: torch.Tensor, target_norm: float | None) -> torch.Tensor:
    """Mean over samples of ||d logits / d inputs||² (R1, target None) or (||.|| - 1)² (WGAN-GP, target 1)."""
    (grads,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    squared = grads.square().flatten(1).sum(1)
    if target_norm is None:
        return squared.mean()
    return (squared.add(1e-12).sqrt() - target_norm).square().mean()
