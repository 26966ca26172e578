"""Same seed, same images: a sample depends on (seed, index), never on the batch it lands in."""

from __future__ import annotations

import numpy as np

from ganworks.models import get_family
from tests.generator.conftest import CONDITIONAL, ONE_STEP, assert_same_images_in_any_batch, publish

DCGAN = get_family("dcgan")


def sample_noise(seed: int, start: int, count: int, latent_dim: int) -> np.ndarray:
    return DCGAN.seeded_latents({"latent_dim": latent_dim}, seed, start, count)


def sample_labels(seed: int, start: int, count: int, num_classes: int) -> np.ndarray:
    return DCGAN.seeded_labels({"num_classes": num_classes}, seed, start, count)



def test_noise_of_sample_i_depends_only_on_seed_and_index():
    whole = sample_noise(seed=11, start=0, count=10, latent_dim=8)
    tail = sample_noise(seed=11, start=6, count=4, latent_dim=8)
    assert np.array_equal(whole[6:], tail)
    assert not np.allclose(sample_noise(seed=12, start=0, count=10, latent_dim=8), whole)
    assert np.array_equal(sample_labels(3, 0, 20, 10)[5:], sample_labels(3, 5, 15, 10))


def test_same_seed_gives_same_images_in_any_batch(local_store, serve):
    publish(local_store, "c", 1, CONDITIONAL)
    # Small batches and a long delay so concurrent calls share batches and large ones are split.
    server = serve(local_store, ["c"], max_batch_size=5, max_queue_delay_ms=30)
    assert_same_images_in_any_batch(server, "c", 12, seed=77, other_sizes=(1, 3, 2, 7, 4, 1, 6), prefix=5)


def test_given_labels_change_the_class_but_not_the_noise(local_store, serve):
    publish(local_store, "c", 1, CONDITIONAL)
    server = serve(local_store, ["c"])
    with server.client() as client:
        drawn = client.generate("c", 6, seed=5, output="float32")
        latents = sample_noise(5, 0, 6, CONDITIONAL["latent_dim"])
        explicit = client.generate("c", 6, seed=123, latents=latents, labels=drawn.labels.tolist(), output="float32")
    assert np.abs(drawn.images - explicit.images).max() <= ONE_STEP


def test_truncation_pulls_samples_towards_the_image_of_the_mean_latent(local_store, serve):
    publish(local_store, "c", 1, CONDITIONAL)
    server = serve(local_store, ["c"])
    with server.client() as client:
        full = client.generate("c", 8, seed=3, labels=[2], output="float32").images
        truncated = client.generate("c", 8, seed=3, labels=[2], truncation=0.1, output="float32").images
        mean = client.generate("c", 1, latents=np.zeros((1, CONDITIONAL["latent_dim"])), labels=[2], output="float32").images
    assert np.abs(truncated - mean).mean() < np.abs(full - mean).mean() / 3
