"""The architecture registry and the DCGAN family."""

from __future__ import annotations

import pytest
import torch

from ganworks.errors import ModelConfigError
from ganworks.models import build_discriminator, build_generator


@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_generates_images_in_minus_one_to_one_of_the_asked_shape(size, channels):
    generator = build_generator("dcgan", image_size=size, channels=channels, width=8, latent_dim=16)
    discriminator = build_discriminator("dcgan", image_size=size, channels=channels, width=8)

    images = generator(torch.randn(3, 16))

    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3,)


def test_conditional_models_use_the_label():
    torch.manual_seed(0)
    generator = build_generator("dcgan", image_size=16, num_classes=10, width=8).eval()
    z = torch.randn(1, 64)

    assert not torch.allclose(generator(z, torch.tensor([1])), generator(z, torch.tensor([2])))


def test_a_sample_does_not_depend_on_its_batch_mates():
    torch.manual_seed(0)
    generator = build_generator("dcgan", image_size=16, width=8).eval()
    z = torch.randn(5, 64)

    alone = generator(z[:1])
    together = generator(z)[:1]

    assert torch.allclose(alone, together, atol=1e-5)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"image_size": 48}, "power of two from 16 to 128"),
        ({"image_size": 256}, "power of two from 16 to 128"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"num_classes": -1}, "num_classes"),
        ({"g_norm": "layer"}, "g_norm"),
        ({"depth": 3}, "unknown dcgan hyperparameters"),
    ],
)
def test_invalid_hyperparameters_are_refused_with_the_allowed_values(params, message):
    with pytest.raises(ModelConfigError, match=message):
        build_generator("dcgan", **params)


def test_an_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="unknown architecture 'stylegan9'; known: dcgan"):
        build_generator("stylegan9")
