"""Tests that need a CUDA device carry the `gpu` marker; without one they are skipped with the reason (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from ganworks.models import build_generator, get_family


@pytest.mark.gpu
def test_a_generator_on_cuda_draws_the_images_it_draws_on_the_cpu():
    params = {"image_size": 32, "channels": 3, "latent_dim": 16, "num_classes": 10, "width": 16}
    torch.manual_seed(0)
    generator = build_generator("dcgan", **params).eval()
    family = get_family("dcgan")
    z, labels, psi = torch.randn(8, 16), torch.arange(8), torch.full((8,), 0.7)

    with torch.inference_mode():
        on_cpu = family.generate(generator, z, labels, psi)
        on_cuda = family.generate(generator.to("cuda"), z.cuda(), labels.cuda(), psi.cuda()).cpu()

    assert (on_cuda - on_cpu).abs().max() <= 1 / 255, "more than one 8-bit level apart"
