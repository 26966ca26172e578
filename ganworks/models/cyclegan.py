"""CycleGAN (Zhu et al. 2017): image-to-image translation learned from two unpaired image sets, domains A and B.

Two ResNet-style generators (encoder, residual blocks, decoder; instance norm, so an image never depends on its
batch-mates) translate A → B and B → A; two PatchGAN discriminators judge overlapping patches of each domain.
The "generator" of a snapshot is the pair (`TranslationPair`), so serving gets both directions from one file;
the "discriminator" is the pair of discriminators. Training (trainer/kinds/translation.py) uses the least-squares
adversarial loss, the cycle-consistency L1 (`cycle_weight`), the identity L1 (`identity_weight`), a history pool
of generated images for the discriminators (`pool_size`, `pool_probability`) and a linear learning-rate decay to
zero from `decay_start` × the run's steps. The manifest names the two domains (`domain_a`, `domain_b`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ganworks.errors import ModelConfigError
from ganworks.models.registry import DATA_PARAMS, ModelFamily, Param, register

DIRECTIONS = ("a_to_b", "b_to_a")


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """7×7 stem, two stride-2 downsamplings, residual blocks at a quarter of the size, two upsamplings, 7×7 to the image."""

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width), nn.ReLU(inplace=True)]
        for w in (width, width * 2):
            layers += [nn.Conv2d(w, w * 2, 3, 2, 1), nn.InstanceNorm2d(w * 2), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(width * 4) for _ in range(blocks)]
        for w in (width * 4, width * 2):
            layers += [nn.ConvTranspose2d(w, w // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(w // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclasses.dataclass
class CycleOutputs:
    """Everything one training forward of the pair makes from a batch of A and a batch of B."""

    fake_b: torch.Tensor  # G_ab(a)
    fake_a: torch.Tensor  # G_ba(b)
    rec_a: torch.Tensor  # G_ba(G_ab(a))
    rec_b: torch.Tensor  # G_ab(G_ba(b))
    same_a: torch.Tensor | None  # G_ba(a): identity, None when its weight is 0
    same_b: torch.Tensor | None  # G_ab(b)


class TranslationPair(nn.Module):
    """Both generators. forward() is the whole training forward (one call, so DDP sees every parameter used once)."""

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        self.a_to_b = ResnetGenerator(channels, width, blocks)
        self.b_to_a = ResnetGenerator(channels, width, blocks)

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor, identity: bool = True) -> CycleOutputs:
        fake_b, fake_a = self.a_to_b(real_a), self.b_to_a(real_b)
        return CycleOutputs(fake_b, fake_a, self.b_to_a(fake_b), self.a_to_b(fake_a),
                            self.b_to_a(real_a) if identity else None, self.a_to_b(real_b) if identity else None)

    def translate(self, images: torch.Tensor, direction: str) -> torch.Tensor:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return (self.a_to_b if direction == "a_to_b" else self.b_to_a)(images)


class PatchDiscriminator(nn.Module):
    """A PatchGAN: one least-squares score per overlapping patch (a map, not one logit per image)."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        w = width
        for _ in range(layers - 1):
            blocks += [nn.Conv2d(w, w * 2, 4, 2, 1), nn.InstanceNorm2d(w * 2), nn.LeakyReLU(0.2, inplace=True)]
            w *= 2
        blocks += [nn.Conv2d(w, w * 2, 4, 1, 1), nn.InstanceNorm2d(w * 2), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(w * 2, 1, 4, 1, 1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DiscriminatorPair(nn.Module):
    """D_a judges domain A (real A vs G_ba's), D_b judges domain B; one forward runs both."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        self.d_a = PatchDiscriminator(channels, width, layers)
        self.d_b = PatchDiscriminator(channels, width, layers)

    def forward(self, images_a: torch.Tensor, images_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d_a(images_a), self.d_b(images_b)


class CycleGAN(ModelFamily):
    name = "cyclegan"
    kind = "translation"
    params = (
        *DATA_PARAMS,
        Param("width", int, 32, "channels of the generators' first layer (×2, ×4 after the downsamplings)", min=4, max=256),
        Param("blocks", int, 6, "residual blocks of each generator", min=1, max=16),
        Param("d_width", int, 32, "channels of the discriminators' first layer", min=4, max=256),
        Param("d_layers", int, 3, "stride-2 layers of each PatchGAN discriminator", min=1, max=5),
        Param("cycle_weight", float, 10.0, "λ of the cycle-consistency L1", min=0.0),
        Param("identity_weight", float, 5.0, "λ_id of the identity L1 (G_ab(b) ≈ b); 0 = off", min=0.0),
        Param("pool_size", int, 50, "generated images each history pool keeps; 0 = no pool", min=0, max=10_000),
        Param("pool_probability", float, 0.5, "chance that D sees a past generated image instead of the new one", min=0.0, max=1.0),
        Param("decay_start", float, 0.5, "fraction of the steps after which the learning rate falls linearly to zero", min=0.0, max=1.0),
        Param("domain_a", str, "", "the dataset spec of domain A", from_data=True),
        Param("domain_b", str, "", "the dataset spec of domain B", from_data=True),
    )

    def check(self, params: dict[str, Any]) -> None:
        if params["num_classes"]:
            raise ModelConfigError("cyclegan is not class-conditional: its two domains are two datasets (--dataset and --dataset-b), not labels")
        smallest = params["image_size"] // 2 ** params["d_layers"]
        if smallest < 2:
            raise ModelConfigError(f"cyclegan d_layers={params['d_layers']} halves {params['image_size']} px below 2 px; use at most {params['image_size'].bit_length() - 2}")

    def describe(self, params: dict[str, Any]) -> dict[str, int]:
        return {"image_size": int(params["image_size"]), "channels": int(params["channels"]), "num_classes": 0, "latent_dim": 0}

    def build_generator(self, p: dict[str, Any]) -> nn.Module:
        return TranslationPair(p["channels"], p["width"], p["blocks"])

    def build_discriminator(self, p: dict[str, Any]) -> nn.Module:
        return DiscriminatorPair(p["channels"], p["d_width"], p["d_layers"])

    def discriminator_blocks(self, discriminator: nn.Module) -> list[nn.Module]:
        return [m for m in discriminator.d_a.net if isinstance(m, nn.Conv2d)] + [m for m in discriminator.d_b.net if isinstance(m, nn.Conv2d)]

    def translate(self, generator: nn.Module, images: torch.Tensor, direction: str) -> torch.Tensor:
        """Images N×C×H×W in [-1, 1] of one domain as the other; each image independently of its batch-mates."""
        return generator.translate(images, direction)

    # A translation model samples from images, not noise: the sampling calls say so.
    def _no_noise(self, *args: Any, **kwargs: Any):
        raise ModelConfigError("cyclegan translates images; it does not sample from noise: call Translate (ganworks translate) with images")

    random_latents = seeded_latents = generate = _no_noise

    def random_labels(self, params: dict[str, Any], count: int, rng: torch.Generator) -> None:
        return None

    def seeded_labels(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray | None:
        return None


FAMILY = register(CycleGAN())
