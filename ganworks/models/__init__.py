"""Model families (architecture, hyperparameters, sampling), reached by the name a manifest records."""

from ganworks.models.registry import FAMILIES, KINDS, HyperparameterError, ModelFamily, Param, build_discriminator, build_generator, get_family

# One line per family: importing the module registers it.
from ganworks.models import dcgan as _dcgan  # noqa: F401,E402
from ganworks.models import ctgan as _ctgan  # noqa: F401,E402
from ganworks.models import stylegan2 as _stylegan2  # noqa: F401,E402
from ganworks.models import cyclegan as _cyclegan  # noqa: F401,E402

__all__ = ["FAMILIES", "KINDS", "HyperparameterError", "ModelFamily", "Param", "build_discriminator", "build_generator", "get_family"]
