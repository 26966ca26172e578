"""The model-family registry: a family declares its hyperparameters, builds its networks, and owns how it samples.

A manifest names a family (`architecture`) and its validated hyperparameters (`architecture_params`);
the trainer, the generator service and the publisher reach a model only through the family found here.
Adding a family is one file defining a `ModelFamily` subclass plus one import line in `ganworks/models/__init__.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from ganworks.errors import ModelConfigError
from ganworks.models import seeds

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class HyperparameterError(ModelConfigError):
    """One hyperparameter has a value outside what its family allows; `param` names it."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default and allowed values. `from_data` ones are set by the trainer from the dataset."""

    name: str
    type: type  # int, float, bool or str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    allowed: str = ""  # a phrase for errors when choices/min/max do not say it well
    from_data: bool = False

    def describe(self) -> str:
        if self.allowed:
            return self.allowed
        if self.choices:
            shown = [repr(c) if isinstance(c, str) else str(c) for c in self.choices]
            return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.type]
        if self.min is not None and self.max is not None:
            return f"{kind} from {self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"{kind} >= {self.min:g}"
        return kind

    def check(self, family: str, value: Any) -> Any:
        """The value converted to the declared type (text as from a command line is parsed) and checked."""
        converted = self._convert(value)
        if converted is None:
            raise HyperparameterError(f"{family} {self.name} must be {self.describe()}, got {value!r}", self.name)
        bad_choice = self.choices and converted not in self.choices
        too_small = self.min is not None and converted < self.min
        too_big = self.max is not None and converted > self.max
        if bad_choice or too_small or too_big:
            raise HyperparameterError(f"{family} {self.name} must be {self.describe()}, got {value!r}", self.name)
        return converted

    def _convert(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            return True if text in _TRUE else False if text in _FALSE else None
        if isinstance(value, bool):
            return None
        try:
            if self.type is int:
                return value if isinstance(value, int) else int(str(value).strip()) if isinstance(value, str) else None
            if self.type is float:
                return float(value) if isinstance(value, (int, float, str)) else None
        except ValueError:
            return None
        return value if isinstance(value, str) else None


class ModelFamily:
    """What the rest of ganworks knows about a kind of model. Subclasses set `name` and `params` and build the networks.

    Networks take (inputs, labels): G(latents, labels) → images in [-1, 1], D(images, labels) → one logit
    per sample. A snapshot holds the state of the module `build_generator` returns (for G_ema): everything
    serving needs goes in it as parameters or buffers (a second generator, a tracked mean of w, ...).
    """

    name: str = ""
    params: tuple[Param, ...] = ()
    # The kind of run (one of KINDS): what it trains on, what a request carries, what a snapshot publishes, how it is
    # evaluated. Each service holds one module per kind (trainer/kinds/, generator_service/kinds/, evaluator_service/kinds/).
    kind: str = "image"

    # ---- hyperparameters ------------------------------------------------------------------------------------

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def settable(self) -> list[str]:
        """The hyperparameters a user sets (`--model-param`); the others come from the dataset."""
        return [p.name for p in self.params if not p.from_data]

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every hyperparameter, typed, defaults filled in; ModelConfigError names the one that is wrong."""
        known = {p.name for p in self.params}
        unknown = set(values) - known
        if unknown:
            raise ModelConfigError(f"unknown {self.name} hyperparameters {sorted(unknown)}; known: {sorted(known)}")
        checked = {p.name: p.check(self.name, values[p.name]) if p.name in values else p.default for p in self.params}
        self.check(checked)
        return checked

    def check(self, params: dict[str, Any]) -> None:
        """Rules across hyperparameters; raise ModelConfigError."""

    def describe(self, params: dict[str, Any]) -> dict[str, int]:
        """What a manifest records besides the hyperparameters: image_size, channels, num_classes, latent_dim."""
        return {key: int(params.get(key, 0)) for key in ("image_size", "channels", "num_classes", "latent_dim")}

    # ---- networks ---------------------------------------------------------------------------------------------

    def build_generator(self, params: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self, params: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def discriminator_blocks(self, discriminator: nn.Module) -> list[nn.Module]:
        """D's blocks from the input side; fine-tuning may freeze the first k (`ganworks train --freeze-d-blocks`)."""
        raise ModelConfigError(f"{self.name} does not name its discriminator's blocks, so its discriminator cannot be partly frozen")

    def new_class_weights(self, role: str, key: str, source: torch.Tensor, axis: int, mix: torch.Tensor) -> torch.Tensor:
        """The start of a class-indexed tensor (`key` of the `role` network: generator, generator_ema, discriminator)
        for a run with other classes than its source (`ganworks train --init-from ... --new-class-init mean|nearest`).
        `mix` is new classes × source classes: new class c starts at sum_k mix[c, k] × source class k along `axis`
        (a row of 1/K: the source's average class; a one-hot row: a copy of one source class).
        A family whose layers scale a class tensor by the class count at run time corrects for that here."""
        moved = source.movedim(axis, 0)
        mixed = mix.to(source.dtype) @ moved.reshape(moved.shape[0], -1)
        return mixed.reshape(mix.shape[0], *moved.shape[1:]).movedim(0, axis)

    def class_scores(self, discriminator: nn.Module, images: torch.Tensor, num_classes: int) -> torch.Tensor:
        """D(x, k) for every image x and class k, (n, num_classes), as D's forward gives them
        (`ganworks train --new-class-init nearest`). A discriminator with a `class_scores(x)` method gives all the
        classes from one pass; any other is asked once per class."""
        if hasattr(discriminator, "class_scores"):
            return discriminator.class_scores(images)
        return torch.stack([discriminator(images, torch.full((len(images),), k, dtype=torch.long)) for k in range(num_classes)], dim=1)

    def probe_inputs(self, params: dict[str, Any], rng: torch.Generator, count: int = 4) -> tuple:
        """`count` random inputs in the shape D takes (with their labels), to probe how D treats a batch (trainer/privacy.py)."""
        labels = torch.zeros(count, dtype=torch.long) if params.get("num_classes", 0) else None
        return torch.randn(count, params.get("channels", 1), params["image_size"], params["image_size"], generator=rng), labels

    # ---- latents and conditions ---------------------------------------------------------------------------------

    def random_latents(self, params: dict[str, Any], count: int, rng: torch.Generator) -> torch.Tensor:
        """Latents for training and sample grids, drawn from the caller's stream."""
        raise NotImplementedError

    def random_labels(self, params: dict[str, Any], count: int, rng: torch.Generator) -> torch.Tensor | None:
        """Class labels for training (None for an unconditional model), drawn after the latents from the same stream."""
        classes = params.get("num_classes", 0)
        return torch.randint(0, classes, (count,), generator=rng) if classes else None

    def seeded_latents(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray:
        """Latents of samples start .. start+count-1 of a request: sample i depends on (seed, i) only, never on its batch."""
        raise NotImplementedError

    def seeded_labels(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray | None:
        raise NotImplementedError

    def generate(self, generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None, truncation: torch.Tensor) -> torch.Tensor:
        """Images for a served batch; truncation holds each sample's ψ in (0, 1] (1 = none), as samples of one batch differ."""
        raise NotImplementedError

    def forward_with_latent(self, generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training images and the latent they are differentiated by for path-length regularisation (z itself by default;
        a family with an intermediate latent space, such as StyleGAN2's w, returns that)."""
        latents = latents.detach().requires_grad_(True)
        return generator(latents, labels), latents


# The hyperparameters every image family takes from the dataset (--image-size, --channels, --conditional).
DATA_PARAMS = (
    Param("image_size", int, 32, "square image size", choices=(16, 32, 64, 128), allowed="a power of two from 16 to 128", from_data=True),
    Param("channels", int, 1, "image channels", choices=(1, 3), from_data=True),
    Param("num_classes", int, 0, "classes of a conditional model; 0 = unconditional", min=0, from_data=True),
)


class GaussianLatents(ModelFamily):
    """Latents are standard normal rows of `latent_dim`, labels uniform: per sample from (seed, index) when served."""

    def random_latents(self, params: dict[str, Any], count: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randn(count, params["latent_dim"], generator=rng)

    def seeded_latents(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray:
        return seeds.normal_rows(seed, start, count, params["latent_dim"])

    def seeded_labels(self, params: dict[str, Any], seed: int, start: int, count: int) -> np.ndarray | None:
        return seeds.uniform_labels(seed, start, count, params["num_classes"]) if params["num_classes"] else None


# The kinds of run: "image" (noise to images), "table" (noise to table rows), "translation" (images to images).
KINDS = ("image", "table", "translation")

FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    if family.kind not in KINDS:
        raise ModelConfigError(f"family {family.name} declares kind {family.kind!r}; known kinds: {', '.join(KINDS)}")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def build_generator(name: str, **params: Any) -> nn.Module:
    """The generator of family name from (unvalidated) hyperparameters; defaults fill the rest."""
    family = get_family(name)
    return family.build_generator(family.validate(params))


def build_discriminator(name: str, **params: Any) -> nn.Module:
    family = get_family(name)
    return family.build_discriminator(family.validate(params))
