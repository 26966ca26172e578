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

from ganworks.models.registry import DATA_PARAMS, GaussianLatents, Param, register

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

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x, k) for every class k at once, (n, classes): the features once, the projection for all classes."""
        h = self.features(x).flatten(1)
        return self.head(h) + h @ self.embed.weight.t()


class DCGAN(GaussianLatents):
    """Latents are standard normal z; truncation scales z towards the prior's mean (zero) by ψ."""

    name = "dcgan"
    params = (
        *DATA_PARAMS,
        Param("latent_dim", int, 64, "size of z", min=1),
        Param("width", int, 32, "channel count of the outermost layers", min=1),
        Param("max_width", int, 512, "cap on the channel count of the inner layers", min=1),
        Param("embed_dim", int, 32, "size of G's class embedding", min=1),
        Param("g_norm", str, "group", "G's normalisation; group keeps each sample independent of its batch", choices=("group", "batch", "none")),
        Param("spectral_norm", bool, True, "spectral normalisation in D"),
    )

    def build_generator(self, p: dict[str, Any]) -> nn.Module:
        return Generator(p["image_size"], p["channels"], p["latent_dim"], p["num_classes"], p["width"], p["max_width"], p["embed_dim"], p["g_norm"])

    def build_discriminator(self, p: dict[str, Any]) -> nn.Module:
        return Discriminator(p["image_size"], p["channels"], p["num_classes"], p["width"], p["max_width"], p["spectral_norm"])

    def discriminator_blocks(self, discriminator: nn.Module) -> list[nn.Module]:
        return [m for m in discriminator.features if isinstance(m, nn.Conv2d)]

    def generate(self, generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None, truncation: torch.Tensor) -> torch.Tensor:
        # The truncation trick in z space: the prior's mean is zero, so pulling towards it is a scale.
        z = latents * truncation.to(latents.dtype).unsqueeze(1)
        return generator(z, labels) if labels is not None else generator(z)


DCGAN_FAMILY = register(DCGAN())
