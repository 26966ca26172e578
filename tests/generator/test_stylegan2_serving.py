"""A stylegan2 snapshot served by the unchanged generator service: seeds are batch-independent, truncation pulls towards w_avg."""

from __future__ import annotations

import numpy as np
import torch

from ganworks.checkpoint import publish_snapshot, read_manifest
from ganworks.models import get_family
from tests.generator.conftest import assert_same_images_in_any_batch

SG2 = get_family("stylegan2")
PARAMS = SG2.validate({"image_size": 16, "channels": 1, "num_classes": 4, "latent_dim": 16, "w_dim": 16, "channel_base": 256, "channel_max": 16})


def _publish(store, run: str) -> None:
    torch.manual_seed(0)
    G = SG2.build_generator(PARAMS)
    with torch.no_grad():  # as after training: a mean w away from zero and noise that shows
        G.mapping.w_avg.normal_()
        for layer in G.convs:
            layer.noise_strength.fill_(0.5)
    publish_snapshot(store, run=run, step=1, generator_state=G.state_dict(), architecture="stylegan2", architecture_params=PARAMS)


def test_a_stylegan2_seed_gives_the_same_images_in_any_batch_mix(local_store, serve):
    _publish(local_store, "sg")
    assert read_manifest(local_store, "sg", 1).architecture_params == PARAMS  # all it takes to rebuild G and its sampler
    server = serve(local_store, ["sg"], max_batch_size=5, max_queue_delay_ms=30)
    assert_same_images_in_any_batch(server, "sg", 9, seed=21, other_sizes=(1, 4, 2, 3), prefix=4)


def test_served_truncation_pulls_samples_towards_the_mean_w_image(local_store, serve):
    _publish(local_store, "sg")
    server = serve(local_store, ["sg"])
    with server.client() as client:
        full = client.generate("sg", 6, seed=3, output="float32").images
        tight = client.generate("sg", 6, seed=3, truncation=0.05, output="float32").images
    spread = lambda images: float(np.abs(images - images.mean(axis=0)).mean())  # noqa: E731
    assert spread(tight) < 0.2 * spread(full)
