"""One GAN step on its own (real DDP over a one-process gloo group): what it updates, and where regularisers apply."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.distributed as dist

from ganworks.models import get_family
from tests.s3server import free_port
from trainer.ema import make_ema
from trainer.augment import AdaptiveAugment
from trainer.losses import GradientPenalty, LazyPathLength, LazyR1, get_loss
from trainer.step import GANStep, Networks, data_parallel

DCGAN = get_family("dcgan")
PARAMS = DCGAN.validate({"image_size": 16, "channels": 1, "num_classes": 3, "width": 8, "latent_dim": 8})
SG2 = get_family("stylegan2")
SG2_PARAMS = SG2.validate({"image_size": 16, "channels": 1, "num_classes": 3, "latent_dim": 8, "w_dim": 8, "channel_base": 128, "channel_max": 8})


@pytest.fixture(scope="module")
def process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _gan_step(regularisers=(), loss="hinge", family=DCGAN, params=PARAMS, **extras) -> GANStep:
    torch.manual_seed(0)
    G, D = family.build_generator(params), family.build_discriminator(params)
    nets = Networks(G, D, make_ema(G), data_parallel(G), data_parallel(D), torch.optim.Adam(G.parameters(), lr=1e-3), torch.optim.Adam(D.parameters(), lr=1e-3))
    noise = torch.Generator().manual_seed(1)
    return GANStep(nets, family, params, get_loss(loss), list(regularisers), noise, torch.device("cpu"), contextlib.nullcontext(), batch_size=4, **extras)


def _real() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1, torch.tensor([0, 1, 2, 0])


def test_one_step_updates_g_and_d_and_moves_g_ema_towards_g(process_group):
    gan = _gan_step()
    before = {name: [p.detach().clone() for p in getattr(gan.nets, name).parameters()] for name in ("G", "D", "G_ema")}

    result = gan(0, *_real())
    gan.update_ema(4, images_seen=4, half_life_images=10_000, rampup=0.05)

    for name in ("G", "D", "G_ema"):
        assert any(not torch.equal(a, b) for a, b in zip(before[name], getattr(gan.nets, name).parameters())), f"{name} did not change"
    assert not result.skipped and result.norm_d > 0 and result.norm_g > 0
    assert set(result.stats()) == {"loss_g", "loss_d", "d_real", "d_fake", "grad_norm_g", "grad_norm_d"}


def test_a_lazy_regulariser_changes_d_loss_only_on_the_steps_it_is_due(process_group):
    def loss_d(step: int, regularisers) -> float:
        return float(_gan_step(regularisers).discriminator_step(step, *_real())[0])

    r1 = LazyR1(gamma=10.0, every=2)

    assert loss_d(1, [r1]) == loss_d(1, [])
    assert loss_d(2, [r1]) > loss_d(2, [])


def test_the_gradient_penalty_adds_to_d_loss_through_the_same_forward(process_group):
    with_gp = float(_gan_step([GradientPenalty(weight=10.0)], loss="wgan-gp").discriminator_step(0, *_real())[0])
    plain = float(_gan_step([], loss="wgan-gp").discriminator_step(0, *_real())[0])

    assert with_gp > plain


@pytest.mark.parametrize("family,params", [(SG2, SG2_PARAMS), (DCGAN, PARAMS)], ids=["stylegan2-in-w", "dcgan-in-z"])
def test_path_length_changes_g_loss_only_on_the_steps_it_is_due_and_moves_its_mean(process_group, family, params):
    def loss_g(step: int, regularisers) -> float:
        torch.manual_seed(9)  # the same random noise inputs and style mixing in both runs
        return float(_gan_step(family=family, params=params, g_regularisers=regularisers).generator_step(step)[0])

    pl = LazyPathLength(weight=2.0, every=4)
    assert loss_g(3, [pl]) == loss_g(3, []) and pl.mean == 0.0
    assert loss_g(4, [pl]) > loss_g(4, [])
    assert pl.mean > 0 and pl.state() == {"pl_mean": pl.mean}


def test_r1_leaves_every_stylegan2_gradient_laid_out_like_its_parameter_so_ddp_does_not_warn(process_group):
    """R1's double backward gave D's (1, C) output weight a gradient with other strides, and DDP warned on every
    stylegan2 run that this may impair performance (once per process, so the layout itself is what is checked)."""
    gan = _gan_step([LazyR1(gamma=1.0, every=1)], loss="non-saturating", family=SG2, params=SG2_PARAMS, global_batch=4)

    gan(0, *_real())

    params = dict(gan.nets.D.named_parameters())
    assert all(p.grad is not None for p in params.values())
    assert {name: p.grad.stride() for name, p in params.items() if p.grad.stride() != p.stride()} == {}


def test_a_stylegan2_step_trains_with_r1_path_length_and_augmentation_and_reports_their_state(process_group):
    augment = AdaptiveAugment(channels=1, target=0.6, speed_images=40, interval=1, p=0.5)
    gan = _gan_step([LazyR1(gamma=1.0, every=2)], loss="non-saturating", family=SG2, params=SG2_PARAMS,
                    g_regularisers=[LazyPathLength(weight=2.0, every=2)], augment=augment, global_batch=4)

    result = gan(0, *_real())

    assert not result.skipped and result.norm_d > 0 and result.norm_g > 0
    assert set(result.stats()) >= {"augment_p", "pl_mean"} and result.stats()["augment_p"] in (0.4, 0.6)
    fresh = _gan_step(family=SG2, params=SG2_PARAMS, g_regularisers=[LazyPathLength(weight=2.0, every=2)], augment=AdaptiveAugment(channels=1))
    fresh.load_state(gan.state())  # what resume does with the checkpoint's step_state
    assert fresh.state() == gan.state()
