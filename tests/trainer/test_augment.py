"""Adaptive augmentation: what it does to images at p = 0 and p = 1, how p follows D's outputs on real images."""

from __future__ import annotations

import torch

from trainer.augment import AdaptiveAugment
from trainer.losses import input_gradient_penalty


def _images(channels: int = 1) -> torch.Tensor:
    return torch.rand(8, channels, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_at_p_zero_images_pass_unchanged_and_no_randomness_is_drawn():
    rng = torch.Generator().manual_seed(1)
    before = rng.get_state()
    images = _images()
    assert AdaptiveAugment(channels=1, p=0.0)(images, rng) is images
    assert torch.equal(rng.get_state(), before)


def test_at_p_one_every_sample_changes_reproducibly_from_the_generator():
    images = _images(3)
    augment = AdaptiveAugment(channels=3, p=1.0)
    first = augment(images, torch.Generator().manual_seed(2))
    again = augment(images, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert ((first - images).abs().flatten(1).max(1).values > 0.1).all()


def test_grey_images_get_only_geometric_augmentations_so_their_pixel_values_stay_the_same_set():
    images = _images(1)
    out = AdaptiveAugment(channels=1, p=1.0)(images, torch.Generator().manual_seed(3))
    # flips and reflected whole-pixel shifts only move pixels: every output value is one of the input's
    for sample, source in zip(out, images):
        assert torch.isin(sample.flatten(), source.flatten()).all()


def test_gradients_pass_through_augmentation_twice_as_r1_needs():
    images = _images(3).requires_grad_(True)
    augmented = AdaptiveAugment(channels=3, p=1.0)(images, torch.Generator().manual_seed(4))
    weight = torch.randn(3 * 16 * 16, requires_grad=True)
    logits = torch.tanh(augmented.flatten(1) @ weight)
    penalty = input_gradient_penalty(logits, images, None)
    penalty.backward()
    assert penalty > 0 and weight.grad is not None and weight.grad.abs().sum() > 0


def test_p_rises_while_d_is_sure_of_the_real_images_and_falls_when_it_is_not():
    augment = AdaptiveAugment(channels=1, target=0.6, speed_images=1000, interval=2)
    for step in range(4):  # every real logit positive: E[sign] = 1 > 0.6
        augment.observe(torch.ones(50))
        augment.adjust(step, global_batch=50)
    assert augment.p == 0.2  # two adjustments of 50 × 2 / 1000

    augment.observe(torch.tensor([1.0, -1.0]))  # E[sign] = 0 < 0.6
    augment.adjust(4, global_batch=50)
    assert augment.p == 0.2  # not yet: adjustments come every 2 steps
    augment.adjust(5, global_batch=50)
    assert abs(augment.p - 0.1) < 1e-12

    for step in range(6, 100):
        augment.observe(-torch.ones(4))
        augment.adjust(step, global_batch=50)
    assert augment.p == 0.0  # clamped at 0
