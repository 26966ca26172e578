"""DCGAN (Radford et al. 2016) for square images of 16–128 px, optionally class-conditional.

The generator takes a latent z (and a class label when conditional: a learned embedding concatenated
to z) and outputs images in [-1, 1]. The discriminator is all-convolutional, optionally spectrally
normalised (Miyato et al. 2018), with a projection head for the class (Miyato & Koyama 2018).
Normalisation in G defaults to per-sample (group norm) so a sample never depends on its batch-mates:
the same seed gives the same image in any batch, in training and serving alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganworks.errors import ModelConfigError
from ganworks.models.registry import Architecture, register

DEFAULTS: dict[str, Any] = {
    "image_size": 32,
    "channels": 1,
    "latent_dim": 64,
    "num_classes": 0,
    "width": 64,
    "max_width": 512,
    "embed_dim": 32,
    "g_norm": "group",
    "spectral_norm": True,
}


def validate(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ModelConfigError(f"unknown dcgan hyperparameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    size = p["image_size"]
    if not isinstance(size, int) or size < 16 or size > 128 or size & (size - 1):
        raise ModelConfigError(f"dcgan image_size must be a power of two from 16 to 128, got {size!r}")
    if p["channels"] not in (1, 3):
        raise ModelConfigError(f"dcgan channels must be 1 or 3, got {p['channels']!r}")
    for key in ("latent_dim", "width", "max_width", "embed_dim"):
        if not isinstance(p[key], int) or p[key] < 1:
            raise ModelConfigError(f"dcgan {key} must be a positive integer, got {p[key]!r}")
    if not isinstance(p["num_classes"], int) or p["num_classes"] < 0:
        raise ModelConfigError(f"dcgan num_classes must be 0 (unconditional) or more, got {p['num_classes']!r}")
    if p["g_norm"] not in ("group", "batch", "none"):
        raise ModelConfigError(f"dcgan g_norm must be 'group', 'batch' or 'none', got {p['g_norm']!r}")
    p["spectral_norm"] = bool(p["spectral_norm"])
    return p


def _widths(image_size: int, width: int, max_width: int) -> list[int]:
    """Channel widths from the 4x4 stage up to the last stage before the output."""
    stages = int(math.log2(image_size)) - 2  # 4 -> image_size
    return [min(width * 2 ** (stages - 1 - i), max_width) for i in range(stages)]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    return nn.Identity()


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, latent_dim: int, num_classes: int, width: int, max_width: int, embed_dim: int, g_norm: str):
        super().__init__()
        self.image_size, self.channels, self.latent_dim, self.num_classes = image_size, channels, latent_dim, num_classes
        widths = _widths(image_size, width, max_width)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_dim = latent_dim + (embed_dim if num_classes else 0)
        self.project = nn.Linear(in_dim, widths[0] * 16)
        self.project_norm = _norm(g_norm, widths[0])
        blocks = []
        for w_in, w_out in zip(widths, widths[1:] + [widths[-1] // 2 or 1]):
            blocks += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=g_norm == "none"), _norm(g_norm, w_out), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(widths[-1] // 2 or 1, channels, 3, 1, 1)
        self._w0 = widths[0]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        h = self.project(z).view(z.shape[0], self._w0, 4, 4)
        h = F.relu(self.project_norm(h))
        return torch.tanh(self.to_image(self.blocks(h)))


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, num_classes: int, width: int, max_width: int, spectral_norm: bool):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        widths = list(reversed(_widths(image_size, width, max_width)))
        layers: list[nn.Module] = [sn(nn.Conv2d(channels, widths[0] // 2 or 1, 3, 1, 1)), nn.LeakyReLU(0.2, inplace=True)]
        w_prev = widths[0] // 2 or 1
        for w in widths:
            layers += [sn(nn.Conv2d(w_prev, w, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            w_prev = w
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Linear(w_prev * 16, 1))
        self.embed = sn(nn.Embedding(num_classes, w_prev * 16)) if num_classes else None
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).flatten(1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out


register(Architecture(name="dcgan", generator=Generator, discriminator=Discriminator, validate=validate))
