"""The cyclegan family: its generator pair, PatchGAN discriminators, history pool and learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from ganworks.errors import ModelConfigError
from ganworks.models import get_family
from trainer.translation import HistoryPool, lr_factor

SMALL = {"image_size": 32, "channels": 1, "width": 8, "blocks": 2, "d_width": 8}


def test_an_untrained_round_trip_through_both_generators_keeps_shape_and_range():
    family = get_family("cyclegan")
    params = family.validate(SMALL)
    torch.manual_seed(0)
    pair = family.build_generator(params).eval()
    a = torch.rand(5, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        b = family.translate(pair, a, "a_to_b")
        back = family.translate(pair, b, "b_to_a")
    for images in (b, back):
        assert images.shape == a.shape
        assert images.min() >= -1 and images.max() <= 1
    assert not torch.allclose(b, back)  # two different generators, not one shared


def test_rgb_images_keep_their_shape_and_each_discriminator_scores_patches():
    family = get_family("cyclegan")
    params = family.validate({**SMALL, "channels": 3})
    pair, discriminators = family.build_generator(params), family.build_discriminator(params)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = pair(x, x)
    assert out.fake_b.shape == out.rec_a.shape == out.same_a.shape == x.shape
    scores_a, scores_b = discriminators(x, x)
    assert scores_a.shape[0] == 2 and scores_a.shape[1] == 1 and scores_a.shape[2] > 1  # a map of patch scores per image


def test_a_full_history_pool_returns_a_past_image_with_the_configured_probability():
    pool = HistoryPool(size=20, probability=0.3, rng=torch.Generator().manual_seed(1))
    pool(torch.full((20, 1, 2, 2), -1.0))  # fills the pool: every image comes back as it went in
    new = torch.arange(1, 4001, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    returned = torch.cat([pool(batch) for batch in new.split(50)])
    past = (returned[:, 0, 0, 0] != new[:, 0, 0, 0]).float().mean().item()
    assert abs(past - 0.3) < 0.03


def test_a_history_pool_passes_images_through_until_it_is_full_and_when_its_size_is_zero():
    rng = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 4, 4)
    assert torch.equal(HistoryPool(10, 1.0, rng)(images), images)
    assert torch.equal(HistoryPool(0, 1.0, rng)(images), images)


def test_the_learning_rate_is_constant_then_falls_linearly_to_zero():
    factors = [lr_factor(step, 100, 0.5) for step in range(100)]
    assert factors[:50] == [1.0] * 50
    assert factors[50] == 1.0 and factors[75] == pytest.approx(0.5) and factors[99] == pytest.approx(0.02)


def test_cyclegan_refuses_noise_sampling_and_class_labels_with_messages_that_say_what_to_do():
    family = get_family("cyclegan")
    with pytest.raises(ModelConfigError, match="Translate"):
        family.random_latents(family.validate(SMALL), 4, torch.Generator())
    with pytest.raises(ModelConfigError, match="--dataset-b"):
        family.validate({**SMALL, "num_classes": 3})


def test_history_pools_saved_in_the_resume_state_hand_back_the_same_past_images_as_pools_never_stopped(tmp_path):
    from trainer.train_state import load_rank_states, save_train_state

    def pool(seed_state=None):
        rng = torch.Generator().manual_seed(7)
        if seed_state is not None:
            rng.set_state(seed_state)
        return HistoryPool(size=8, probability=0.5, rng=rng)

    torch.manual_seed(0)
    batches = [torch.randn(4, 1, 4, 4) for _ in range(6)]
    running = pool()
    for batch in batches[:3]:  # 12 images: full, and already swapping
        running(batch)
    padded, count = running.state((1, 4, 4))
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters())
    save_train_state(tmp_path, generator=net, discriminator=net, generator_ema=None, g_optimizer=opt, d_optimizer=opt,
                     rng_states=[running.rng.get_state()], counters={"step": 3}, rank_states=[{"pool_a": padded, "pool_a_count": count}])

    saved = load_rank_states(tmp_path)[0]
    resumed = pool(running.rng.get_state())
    resumed.load(saved["pool_a"], saved["pool_a_count"])
    assert int(saved["pool_a_count"]) == 8
    for batch in batches[3:]:
        assert torch.equal(resumed(batch), running(batch))
    assert load_rank_states(tmp_path / "missing") == {}
