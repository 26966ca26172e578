"""The loss and regulariser registry: each loss's D and G terms, the regularisers a run gets, unknown names refused."""

from __future__ import annotations

import re

import pytest
import torch

from ganworks.errors import ConfigError
from ganworks.settings import StoreSettings
from trainer import driver
from trainer.config import TrainOptions
from trainer.losses import LOSSES, GradientPenalty, LazyR1, d_loss, g_loss, get_loss, regularisers_for


def test_an_unknown_loss_is_refused_naming_the_flag_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"--loss 'least-squares' is unknown; use one of hinge, lsgan, non-saturating, wgan-gp, wgan-gp-pac"):
        get_loss("least-squares")


def test_the_generator_term_of_an_unknown_loss_is_an_error_not_hinge():
    with pytest.raises(ConfigError, match="--loss 'hinj'"):
        g_loss("hinj", torch.zeros(4))


def test_options_with_an_unknown_loss_fail_validation_before_anything_starts():
    with pytest.raises(ConfigError, match="--loss 'least-squares'"):
        TrainOptions(loss="least-squares").validate()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_rewards_d_for_telling_real_from_fake_and_g_for_fooling_it(name):
    sure, fooled = (torch.full((4,), 3.0), torch.full((4,), -3.0)), (torch.full((4,), -3.0), torch.full((4,), 3.0))

    assert d_loss(name, *sure) < d_loss(name, *fooled)
    assert g_loss(name, fooled[1]) < g_loss(name, sure[1])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_pushes_d_up_on_real_and_down_on_fake_and_g_up_on_fake(name):
    # At 0.5, not 0: a logit of 0 is LSGAN's target for fakes, where its D term is flat.
    real, fake = torch.full((4,), 0.5, requires_grad=True), torch.full((4,), 0.5, requires_grad=True)

    d_real_grad, d_fake_grad = torch.autograd.grad(get_loss(name).d_term(real, fake), (real, fake))
    (g_fake_grad,) = torch.autograd.grad(get_loss(name).g_term(fake), (fake,))

    # Gradient descent moves logits against the gradient: D raises real logits and lowers fake ones; G raises fake ones.
    assert (d_real_grad < 0).all() and (d_fake_grad > 0).all() and (g_fake_grad < 0).all()


def test_a_run_gets_r1_only_when_asked_and_wgan_gp_always_gets_its_gradient_penalty():
    assert regularisers_for(TrainOptions(loss="hinge")) == []
    both = regularisers_for(TrainOptions(loss="wgan-gp", r1_gamma=2.0, r1_every=4, gp_weight=5.0))

    assert [type(r) for r in both] == [LazyR1, GradientPenalty]  # the order their penalties are added in
    assert (both[0].gamma, both[0].every, both[1].weight) == (2.0, 4, 5.0)


def test_lazy_r1_is_due_every_k_steps_and_weighted_by_k():
    r1 = LazyR1(gamma=2.0, every=4)
    weight = torch.tensor([[3.0, 4.0]])  # a linear D: the gradient at every input is the weight, ||w||² = 25
    real = torch.randn(5, 2, requires_grad=True)

    penalty = r1.penalty((real * weight).sum(1), real, None, None)

    assert [r1.due(step) for step in range(6)] == [True, False, False, False, True, False]
    assert penalty.item() == pytest.approx(2.0 / 2 * 4 * 25)


def test_the_gradient_penalty_is_zero_for_a_d_with_unit_gradient_norm_and_grows_away_from_it():
    gp = GradientPenalty(weight=10.0)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    between = gp.extra_inputs(real, fake, torch.Generator().manual_seed(0))

    unit = gp.penalty(None, None, between.flatten(1).sum(1) / 2, between)  # ||∇|| = ||(½,½,½,½)|| = 1
    steep = gp.penalty(None, None, between.flatten(1).sum(1), between)  # ||∇|| = 2

    assert between.requires_grad and between.shape == real.shape
    assert unit.item() == pytest.approx(0.0, abs=1e-6)
    assert steep.item() == pytest.approx(10.0)


@pytest.mark.parametrize("model, loss, fitting", [
    ("ctgan", "wgan-gp", "non-saturating, hinge, wgan-gp-pac (default wgan-gp-pac)"),
    ("cyclegan", "wgan-gp", "non-saturating, hinge, lsgan (default lsgan)"),
    ("dcgan", "wgan-gp-pac", "non-saturating, hinge, lsgan, wgan-gp (default hinge)"),
])
def test_a_loss_that_does_not_apply_to_the_models_kind_of_run_is_refused_naming_those_that_do(tmp_path, model, loss, fitting):
    options = TrainOptions(run="r", model=model, dataset="digits:0", dataset_b="digits:1" if model == "cyclegan" else "", loss=loss)
    with pytest.raises(ConfigError, match=re.escape(f"--loss {loss} does not apply to {model}, a model of ") + r"\w+" + re.escape(f" runs; use one of {fitting}")):
        driver.plan(options, StoreSettings(store=str(tmp_path / "store")))


@pytest.mark.parametrize("model, extra, default", [("dcgan", {}, "hinge"), ("cyclegan", {"dataset_b": "digits:1", "image_size": 16}, "lsgan")])
def test_without_loss_a_run_trains_with_its_kinds_loss_and_run_json_says_which(tmp_path, model, extra, default):
    options = TrainOptions(run="r", model=model, dataset="digits:0", num_workers=1, batch_size=8, **extra)
    assert driver.plan(options, StoreSettings(store=str(tmp_path / "store"))).run_json()["options"]["loss"] == default
