"""The fast path: the fastest form of a snapshot that draws the same pixels (within one uint8 step) is served."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ganworks.checkpoint import load_snapshot
from ganworks.images import to_uint8
from generator_service import fastpath
from ganworks.models import get_family
from tests.generator.conftest import SMALL, publish


class _Shifted(torch.nn.Module):
    """A 'form' that draws different pixels: it must never be chosen, however fast it is."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z, labels=None):
        return self.generator(z) + 0.1


def test_a_form_that_changes_pixels_by_more_than_one_step_is_never_served(monkeypatch):
    torch.manual_seed(0)
    from ganworks.models import build_generator

    generator = build_generator("dcgan", **SMALL).eval()
    monkeypatch.setattr(fastpath, "FORMS", {**fastpath.FORMS, "shifted": lambda g, example: _Shifted(g)})
    family = get_family("dcgan")
    module, form, timings = fastpath.fastest_form(generator, family, family.validate(SMALL), batch=8, device=torch.device("cpu"))
    assert "shifted" not in timings and form != "shifted"
    assert {"eager", "channels_last"} <= set(timings)


def test_served_images_stay_within_one_step_of_the_eager_model(local_store, serve, caplog):
    caplog.set_level(logging.INFO, logger="generator_service.server")
    publish(local_store, "r", 4)
    server = serve(local_store, ["r"], fast_path=True, max_batch_size=16)
    with server.client() as client:
        served = client.generate("r", 8, seed=3, output="uint8").images
    eager = load_snapshot(local_store, "r", 4).generator
    with torch.inference_mode():
        expected = to_uint8(eager(torch.from_numpy(get_family("dcgan").seeded_latents(SMALL, 3, 0, 8))))
    assert np.abs(served.astype(int) - expected.astype(int)).max() <= 1
    assert "snapshot 4 of model r serves its" in caplog.text
