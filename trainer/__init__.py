"""The trainer: Ray Train DDP workers that train a GAN and publish G_ema snapshots to the store."""
