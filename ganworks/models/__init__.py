"""Generator/discriminator architectures, reached by the name a manifest records."""

from ganworks.models.registry import ARCHITECTURES, Architecture, build_discriminator, build_generator, get_architecture

# Registers the built-in architectures.
from ganworks.models import dcgan as _dcgan  # noqa: F401,E402

__all__ = ["ARCHITECTURES", "Architecture", "build_discriminator", "build_generator", "get_architecture"]
