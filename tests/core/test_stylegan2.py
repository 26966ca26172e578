"""The stylegan2 family on its own: modulated convolution, demodulation, truncation in W, style mixing, its hyperparameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganworks.errors import ModelConfigError
from ganworks.models import get_family
from ganworks.models.stylegan2 import modulated_conv2d

SG2 = get_family("stylegan2")
PARAMS = SG2.validate({"image_size": 16, "channels": 1, "num_classes": 3, "latent_dim": 16, "w_dim": 16, "channel_base": 256, "channel_max": 16})


def _per_sample_reference(x, weight, styles, demodulate):
    """The textbook form: for each sample, scale the weight by its style, normalise each output filter, plain conv."""
    outputs = []
    for sample, style in zip(x, styles):
        w = weight * style.reshape(1, -1, 1, 1)
        if demodulate:
            w = w / w.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        outputs.append(F.conv2d(sample.unsqueeze(0), w, padding=weight.shape[-1] // 2))
    return torch.cat(outputs)


@pytest.mark.parametrize("form", ["grouped", "scaled", None])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_each_form_of_the_batched_modulated_conv_equals_a_per_sample_loop_of_plain_convs(demodulate, kernel, form):
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(5, 6, 8, 8, generator=gen), torch.randn(7, 6, kernel, kernel, generator=gen)
    styles = torch.randn(5, 6, generator=gen) + 1

    batched = modulated_conv2d(x, weight, styles, demodulate, form=form)

    assert batched.shape == (5, 7, 8, 8)
    torch.testing.assert_close(batched, _per_sample_reference(x, weight, styles, demodulate), rtol=1e-4, atol=1e-5)


def test_both_forms_give_the_same_gradients_to_the_weight_the_styles_and_the_input():
    grads = []
    for form in ("grouped", "scaled"):
        x = torch.randn(4, 6, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        weight = torch.randn(5, 6, 3, 3, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        styles = (torch.randn(4, 6, generator=torch.Generator().manual_seed(4)) + 1).requires_grad_(True)
        modulated_conv2d(x, weight, styles, True, form=form).sin().sum().backward()
        grads.append((x.grad, weight.grad, styles.grad))
    for grouped, scaled in zip(*grads):
        torch.testing.assert_close(scaled, grouped, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="form must be one of"):
        modulated_conv2d(torch.zeros(1, 6, 4, 4), torch.zeros(5, 6, 3, 3), torch.ones(1, 6), form="looped")


def test_demodulated_outputs_keep_unit_scale_whatever_the_style_magnitude():
    gen = torch.Generator().manual_seed(1)
    x, weight = torch.randn(8, 64, 16, 16, generator=gen), torch.randn(64, 64, 3, 3, generator=gen)

    for scale in (0.01, 1.0, 100.0):
        out = modulated_conv2d(x, weight, scale * (torch.rand(8, 64, generator=gen) + 0.5), demodulate=True)
        assert 0.8 < float(out.std()) < 1.25, scale
    assert float(modulated_conv2d(x, weight, torch.full((8, 64), 100.0), demodulate=False).std()) > 100


def _generator():
    torch.manual_seed(3)
    G = SG2.build_generator(PARAMS)
    with torch.no_grad():  # a w_avg away from zero, and visible noise, so the checks below can fail
        G.mapping.w_avg.normal_()
        for layer in G.convs:
            layer.noise_strength.fill_(0.5)
    return G.eval()


def test_truncation_psi_one_is_the_identity_and_psi_zero_gives_the_mean_w_image():
    G = _generator()
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        plain = G.synthesis(G.mapping(z, y), "const").clamp(-1, 1)
        untruncated = SG2.generate(G, z, y, torch.ones(4))
        mean = SG2.generate(G, z, y, torch.zeros(4))
        mean_image = G.synthesis(G.mapping.w_avg.expand(1, G.num_ws, -1), "const").clamp(-1, 1)
        half = SG2.generate(G, z, y, torch.full((4,), 0.5))

    torch.testing.assert_close(untruncated, plain)
    for image in mean:  # every latent and class gives the one image of w_avg
        torch.testing.assert_close(image, mean_image[0])
    assert not torch.allclose(half, plain, atol=1e-3) and not torch.allclose(half, mean, atol=1e-3)


def test_truncation_cutoff_leaves_the_later_layers_untruncated():
    G = _generator()
    G.truncation_cutoff = 2
    ws = G.mapping(torch.randn(3, 16), torch.tensor([0, 1, 2]))
    truncated = SG2.truncate(G, ws, torch.zeros(3), G.truncation_cutoff)
    assert torch.equal(truncated[:, :2], G.mapping.w_avg.expand(3, 2, -1))
    assert torch.equal(truncated[:, 2:], ws[:, 2:])


def test_served_images_use_fixed_noise_so_a_sample_does_not_depend_on_its_batch():
    G = _generator()
    z, y = torch.randn(6, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        together = SG2.generate(G, z, y, torch.ones(6))
        alone = torch.cat([SG2.generate(G, z[i : i + 1], y[i : i + 1], torch.ones(1)) for i in range(6)])
        random_noise = SG2.generate(G, z, y, torch.ones(6), noise_mode="random")
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(random_noise, together, atol=1e-3)


def test_style_mixing_changes_training_styles_only_when_its_probability_is_positive():
    def training_ws(mixing: float) -> torch.Tensor:
        torch.manual_seed(3)
        G = SG2.build_generator({**PARAMS, "style_mixing": mixing}).train()
        z, y = torch.randn(8, 16), torch.zeros(8, dtype=torch.long)
        with torch.no_grad():
            return G.mix_styles(G.mapping(z, y), z, y)

    base, mixed = training_ws(0.0), training_ws(1.0)
    assert torch.equal(base, base[:, :1].expand_as(base))  # no mixing: one w for every layer
    changed = (mixed != base).any(dim=2)  # (N, num_ws): which layers took the second latent's w
    assert changed.all(dim=0)[-1] and not changed[:, 0].any()  # always from some layer ≥ 1 on, never layer 0


def test_training_updates_w_avg_and_evaluation_leaves_it():
    torch.manual_seed(0)
    G = SG2.build_generator(PARAMS)
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    G.eval()(z, y)
    assert torch.equal(G.mapping.w_avg, torch.zeros(16))
    G.train()(z, y)
    assert G.mapping.w_avg.abs().sum() > 0
    assert "mapping.w_avg" in G.state_dict()  # a snapshot carries it to the generator service


@pytest.mark.parametrize(("values", "named"), [
    ({"channel_base": 8}, "channel_base"), ({"mapping_layers": 0}, "mapping_layers"), ({"w_dim": 0}, "w_dim"),
    ({"truncation_cutoff": 99}, "truncation_cutoff"), ({"style_mixing": 1.5}, "style_mixing"), ({"image_size": 24}, "image_size"),
])
def test_bad_hyperparameters_are_refused_naming_the_one_at_fault(values, named):
    with pytest.raises(ModelConfigError, match=named):
        SG2.validate({**PARAMS, **values})


def test_discriminator_gives_one_logit_per_sample_for_odd_batches_too():
    torch.manual_seed(0)
    D = SG2.build_discriminator(PARAMS)
    for n in (1, 3, 6):
        assert D(torch.randn(n, 1, 16, 16), torch.zeros(n, dtype=torch.long)).shape == (n,)
