"""Optimiser steps that never let a non-finite gradient reach the weights (the image trainer's and ctgan's)."""

from __future__ import annotations

import torch


def optimizer_step(optimizer: torch.optim.Optimizer, module: torch.nn.Module, loss: torch.Tensor) -> float | None:
    """Backward and step; the global gradient norm, or None when it was not finite and the step was skipped."""
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
