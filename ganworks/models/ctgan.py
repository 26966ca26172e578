"""CTGAN (Xu et al. 2019) networks for tables: a residual-MLP generator and a PacGAN discriminator (Lin et al. 2018).

The generator maps (z, condition vector) to raw outputs, one unit per column of the transformer's encoding;
`DataTransformer.activate` turns them into rows (tanh scalars, Gumbel-softmax one-hots). The discriminator
judges `pac` rows at once, concatenated with their conditions, which penalises mode collapse. Trained with
WGAN-GP (see ganworks/tabular/synthesizer.py), or, under --dp-epsilon, with pac 1 and no gradient penalty
(trainer/kinds/table.py); `data_dim` and `cond_dim` come from the fitted transformer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ganworks.errors import ModelConfigError
from ganworks.models import seeds
from ganworks.models.registry import ModelFamily, Param, register


class Residual(nn.Module):
    """Linear → BatchNorm → ReLU, its output concatenated to its input (the CTGAN generator block)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, cond_dim: int, data_dim: int, width: int, layers: int):
        super().__init__()
        self.latent_dim, self.cond_dim, self.data_dim = latent_dim, cond_dim, data_dim
        blocks, dim = [], latent_dim + cond_dim
        for _ in range(layers):
            blocks.append(Residual(dim, width))
            dim += width
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(dim, data_dim)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = z if cond is None or self.cond_dim == 0 else torch.cat([z, cond], dim=1)
        return self.out(self.blocks(x))


class Discriminator(nn.Module):
    def __init__(self, input_dim: int, width: int, layers: int, pac: int):
        super().__init__()
        self.pac = pac
        blocks, dim = [], input_dim * pac
        for _ in range(layers):
            blocks += [nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            dim = width
        self.body = nn.Sequential(*blocks, nn.Linear(dim, 1))

    def forward(self, rows: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = rows if cond is None else torch.cat([rows, cond], dim=1)
        if x.shape[0] % self.pac:
            raise ValueError(f"the batch ({x.shape[0]} rows) must be a multiple of pac={self.pac}")
        return self.body(x.reshape(x.shape[0] // self.pac, -1))


class CTGANFamily(ModelFamily):
    name = "ctgan"
    kind = "table"
    params = (
        Param("latent_dim", int, 128, "noise dimension (CTGAN's embedding_dim)", min=1, max=4096),
        Param("g_width", int, 256, "units of each generator residual block", min=8, max=4096),
        Param("g_layers", int, 2, "generator residual blocks", min=1, max=8),
        Param("d_width", int, 256, "units of each discriminator layer", min=8, max=4096),
        Param("d_layers", int, 2, "discriminator hidden layers", min=1, max=8),
        Param("pac", int, 10, "rows the discriminator judges together (PacGAN); the batch size must be a multiple", min=1, max=64),
        Param("gumbel_tau", float, 0.2, "Gumbel-softmax temperature of the one-hot outputs", min=0.01, max=10.0),
        Param("max_modes", int, 10, "Gaussian-mixture modes per numeric column", min=1, max=50),
        Param("weight_threshold", float, 0.005, "mixture modes lighter than this are dropped", min=0.0, max=0.5),
        Param("gp_weight", float, 10.0, "WGAN-GP gradient-penalty weight", min=0.0),
        Param("data_dim", int, 0, "width of an encoded row (from the transformer)", min=0, from_data=True),
        Param("cond_dim", int, 0, "width of the condition vector (from the transformer)", min=0, from_data=True),
    )

    def check(self, params: dict[str, Any]) -> None:
        if params["data_dim"] == 0:
            raise ModelConfigError("ctgan models tables: its data_dim comes from a DataTransformer fitted on one; "
                                   "train it on a table (`ganworks train --model ctgan --dataset credit-default`) or with trainer.ctgan.fit")

    def describe(self, params: dict[str, Any]) -> dict[str, int]:
        return {"image_size": 0, "channels": 0, "num_classes": 0, "latent_dim": int(params["latent_dim"])}

    def build_generator(self, params: dict[str, Any]) -> nn.Module:
        return Generator(params["latent_dim"], params["cond_dim"], params["data_dim"], params["g_width"], params["g_layers"])

    def build_discriminator(self, params: dict[str, Any]) -> nn.Module:
        return Discriminator(params["data_dim"] + params["cond_dim"], params["d_width"], params["d_layers"], params["pac"])

    def probe_inputs(self, params: dict[str, Any], rng: torch.Generator, count: int = 4) -> tuple:
        return (torch.randn(count, params["data_dim"] + params["cond_dim"], generator=rng),)

    def random_latents(self, params: dict[str, Any], count: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randn(count, params["latent_dim"], generator=rng)

    def random_labels(self, params: dict[str, Any], count: int, rng: torch.Generator) -> None:
        return None  # conditions come from the ConditionSampler, not from class labels

    def seeded_latents(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray:
        return seeds.normal_rows(seed, start, count, params["latent_dim"])

    def seeded_labels(self, params: dict[str, Any], seed: int, start: int, count: int) -> None:
        return None


FAMILY = register(CTGANFamily())
