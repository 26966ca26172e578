"""ganworks: train, serve and evaluate GANs — the shared core (store, checkpoints, models, datasets, settings)."""

__version__ = "0.1.0"
