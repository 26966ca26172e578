"""A small untrained conditional DCGAN "run" on digits, as the trainer would record and publish it: for tests and
benchmarks that need a run to serve or evaluate without training one."""

from __future__ import annotations

import torch

from ganworks.checkpoint import publish_snapshot
from ganworks.data import load_dataset
from ganworks.layout import run_info_key
from ganworks.models import build_generator

GENERATOR_PARAMS = {"image_size": 32, "channels": 1, "latent_dim": 16, "width": 16, "num_classes": 10}


def write_run_json(store, run: str) -> None:
    """run.json of a conditional DCGAN trained on digits' train split."""
    ds = load_dataset("digits", image_size=32, channels=1, split="train")
    store.put_json(run_info_key(run), {
        "run": run, "code_version": "test", "options": {},
        "dataset": {"spec": "digits", "id": ds.id, "image_size": 32, "channels": 1, "num_classes": 10, "split": "train"},
        "architecture": "dcgan", "architecture_params": GENERATOR_PARAMS,
    })


def publish(store, run: str, step: int) -> None:
    """An untrained snapshot at `step`, its weights seeded by the step."""
    torch.manual_seed(step)
    generator = build_generator("dcgan", **GENERATOR_PARAMS)
    publish_snapshot(store, run=run, step=step, generator_state=generator.state_dict(), architecture="dcgan", architecture_params=GENERATOR_PARAMS)
