"""The model-family registry and the DCGAN family: hyperparameters, networks, latents, truncation, manifests."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from ganworks.checkpoint import load_snapshot
from ganworks.errors import ModelConfigError
from ganworks.models import HyperparameterError, build_discriminator, build_generator, get_family

DCGAN = get_family("dcgan")


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


def test_an_unknown_family_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="unknown model family 'stylegan9'; known: ctgan, cyclegan, dcgan"):
        build_generator("stylegan9")


def test_a_bad_value_raises_a_typed_error_naming_the_parameter_and_what_is_allowed():
    with pytest.raises(HyperparameterError, match=r"dcgan width must be an integer >= 1, got 0") as raised:
        DCGAN.validate({"width": 0})

    assert raised.value.param == "width"


def test_values_given_as_text_are_converted_to_the_declared_types_and_defaults_fill_the_rest():
    params = DCGAN.validate({"width": "16", "spectral_norm": "false", "g_norm": "batch"})

    assert (params["width"], params["spectral_norm"], params["g_norm"]) == (16, False, "batch")
    assert params["latent_dim"] == 64 and params["image_size"] == 32


@pytest.mark.parametrize("params", [{"width": 1.5}, {"width": True}, {"spectral_norm": "maybe"}, {"latent_dim": "sixty"}])
def test_values_of_the_wrong_type_are_refused(params):
    with pytest.raises(HyperparameterError, match=f"dcgan {next(iter(params))} must be"):
        DCGAN.validate(params)


def test_the_settable_parameters_exclude_those_the_dataset_decides():
    assert DCGAN.settable() == ["latent_dim", "width", "max_width", "embed_dim", "g_norm", "spectral_norm"]


def test_served_latents_of_a_seed_do_not_depend_on_the_batch_they_land_in():
    params = DCGAN.validate({"latent_dim": 8, "num_classes": 10})

    whole = DCGAN.seeded_latents(params, seed=11, start=0, count=10)
    tail = DCGAN.seeded_latents(params, seed=11, start=6, count=4)

    assert np.array_equal(whole[6:], tail)
    assert np.array_equal(DCGAN.seeded_labels(params, 3, 0, 20)[5:], DCGAN.seeded_labels(params, 3, 5, 15))
    assert not np.allclose(DCGAN.seeded_latents(params, seed=12, start=0, count=10), whole)


def test_served_latents_keep_the_numerics_published_seeds_were_made_with():
    # Sample i of seed s: PCG64 seeded by SeedSequence([s, i, 0]), standard normal float32 (labels: stream 1).
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence([5, 3, 0]))).standard_normal(8, dtype=np.float32)
    label = np.random.Generator(np.random.PCG64(np.random.SeedSequence([5, 3, 1]))).integers(10)
    params = DCGAN.validate({"latent_dim": 8, "num_classes": 10})

    assert np.array_equal(DCGAN.seeded_latents(params, 5, 3, 1)[0], expected)
    assert DCGAN.seeded_labels(params, 5, 3, 1)[0] == label


def test_training_latents_are_drawn_from_the_callers_stream_as_before():
    params = DCGAN.validate({"latent_dim": 8, "num_classes": 10})
    rng, reference = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)

    z, y = DCGAN.random_latents(params, 6, rng), DCGAN.random_labels(params, 6, rng)

    assert torch.equal(z, torch.randn(6, 8, generator=reference))
    assert torch.equal(y, torch.randint(0, 10, (6,), generator=reference))
    assert DCGAN.random_labels(DCGAN.validate({}), 6, rng) is None


def test_truncation_one_is_the_identity_and_zero_gives_the_image_of_the_mean_latent():
    torch.manual_seed(0)
    params = DCGAN.validate({"image_size": 16, "width": 8, "latent_dim": 8, "num_classes": 3})
    generator = DCGAN.build_generator(params).eval()
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])

    with torch.no_grad():
        untruncated = DCGAN.generate(generator, z, y, torch.ones(4))
        mean = DCGAN.generate(generator, z, y, torch.zeros(4))
        mixed = DCGAN.generate(generator, z, y, torch.tensor([1.0, 0.0, 1.0, 0.0]))

        assert torch.equal(untruncated, generator(z, y))
        assert torch.allclose(mean, generator(torch.zeros(4, 8), y), atol=1e-6)
    assert torch.allclose(mixed[0], untruncated[0], atol=1e-6) and torch.allclose(mixed[1], mean[1], atol=1e-6)


def test_the_manifest_fields_come_from_the_family():
    params = DCGAN.validate({"image_size": 64, "channels": 3, "num_classes": 5, "latent_dim": 100})

    assert DCGAN.describe(params) == {"image_size": 64, "channels": 3, "num_classes": 5, "latent_dim": 100}


def test_a_manifest_written_before_model_families_still_loads(local_store):
    old_params = {"image_size": 16, "channels": 1, "latent_dim": 8, "num_classes": 0, "width": 8, "max_width": 512, "embed_dim": 32, "g_norm": "group", "spectral_norm": True}
    torch.manual_seed(0)
    weights = save_safetensors({k: v.contiguous() for k, v in build_generator("dcgan", **old_params).state_dict().items()}, metadata={"format": "pt"})
    local_store.put_bytes("runs/old/checkpoints/000000010/generator.safetensors", weights)
    local_store.put_json("runs/old/checkpoints/000000010/manifest.json", {
        "run": "old", "step": 10, "architecture": "dcgan", "architecture_params": old_params, "image_size": 16, "channels": 1, "num_classes": 0,
        "latent_dim": 8, "sha256": hashlib.sha256(weights).hexdigest(), "images_seen": 640, "created_at": 0.0, "dataset_id": "", "metrics": {}, "format_version": 1})

    snapshot = load_snapshot(local_store, "old", 10)

    assert snapshot.generator(torch.zeros(2, 8)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("name, params", [("dcgan", {"width": 8}), ("stylegan2", {"channel_base": 64, "channel_max": 16, "mapping_layers": 1})])
def test_class_scores_from_one_pass_equal_the_discriminator_asked_once_per_class(name, params):
    family = get_family(name)
    p = family.validate({**params, "image_size": 16, "channels": 1, "num_classes": 5})
    torch.manual_seed(0)
    D = family.build_discriminator(p).eval()
    x = torch.rand(7, 1, 16, 16) * 2 - 1

    with torch.no_grad():
        batched = family.class_scores(D, x, 5)
        one_by_one = torch.stack([D(x, torch.full((7,), k)) for k in range(5)], dim=1)

    assert batched.shape == (7, 5)
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert not torch.allclose(batched[:, 0], batched[:, 1])  # the classes do score differently
