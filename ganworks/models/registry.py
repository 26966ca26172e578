"""The architecture registry: a manifest names an architecture and its hyperparameters; this rebuilds the networks."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import torch.nn as nn

from ganworks.errors import ModelConfigError


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    generator: Callable[..., nn.Module]
    discriminator: Callable[..., nn.Module]
    validate: Callable[[dict[str, Any]], dict[str, Any]]


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelConfigError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None


def _call(factory: Callable[..., nn.Module], params: dict[str, Any]) -> nn.Module:
    accepted = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in params.items() if k in accepted})


def build_generator(name: str, **params: Any) -> nn.Module:
    """Builds the generator of architecture name from validated hyperparameters."""
    arch = get_architecture(name)
    return _call(arch.generator, arch.validate(params))


def build_discriminator(name: str, **params: Any) -> nn.Module:
    arch = get_architecture(name)
    return _call(arch.discriminator, arch.validate(params))
