"""Runs the real trainer on the shared Ray cluster for the trainer tests."""

from __future__ import annotations

from ganworks.settings import StoreSettings
from trainer import driver
from trainer.config import TrainOptions


def train(store_settings: StoreSettings, run: str, *, steps: int, snapshot_every: int, num_workers: int = 2, **options) -> driver.TrainOutcome:
    """A small, fast conditional run on digits (narrow nets, batch 16); a DCGAN unless options name another model."""
    options.setdefault("model_params", {"width": 8})
    options.setdefault("metrics_port", 0)
    opts = TrainOptions(run=run, dataset="digits", image_size=32, conditional=True, steps=steps, snapshot_every=snapshot_every,
                        num_workers=num_workers, batch_size=16, log_every=1, publish_retry_seconds=30.0, **options)
    plan = driver.plan(opts, store_settings)
    driver.connect_ray(plan.options)
    return driver.train(plan, show_progress=False)
