"""The same seeds give the same pixels, rows and training losses as recorded before the kind of run became a seam (issue #32)."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist

from tests.core import behaviour_freeze
from tests.s3server import free_port

RECORDED = json.loads(behaviour_freeze.FIXTURE.read_text())


@pytest.fixture(scope="module")
def process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_dcgan_snapshot_makes_the_recorded_pixels():
    assert behaviour_freeze.image()["pixels"] == pytest.approx(RECORDED["image"]["pixels"], abs=1e-5)


def test_dcgan_training_steps_give_the_recorded_losses_for_each_loss(process_group):
    got = behaviour_freeze.image_step()
    assert set(got) == set(RECORDED["image_step"])
    for loss, values in RECORDED["image_step"].items():
        assert [v for pair in got[loss] for v in pair] == pytest.approx([v for pair in values for v in pair], abs=1e-4), loss


def test_a_ctgan_fitted_with_a_fixed_seed_makes_the_recorded_rows():
    got, recorded = behaviour_freeze.table(), RECORDED["table"]
    assert got["default"] == recorded["default"] and got["student"] == recorded["student"]
    assert got["balance"] == pytest.approx(recorded["balance"], abs=1e-2)


def test_a_cyclegan_translates_and_trains_as_recorded(process_group):
    got, recorded = behaviour_freeze.translation(), RECORDED["translation"]
    assert got["a_to_b"] == pytest.approx(recorded["a_to_b"], abs=1e-5)
    assert [v for pair in got["step"] for v in pair] == pytest.approx([v for pair in recorded["step"] for v in pair], abs=1e-4)
