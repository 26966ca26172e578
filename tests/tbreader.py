"""Reads a run's TensorBoard folder from the store back with TensorBoard's own reader, as `tensorboard --logdir` would."""

from __future__ import annotations

import pathlib

from ganworks.layout import tensorboard_prefix


def read_tensorboard(store, run: str, folder: pathlib.Path):
    """A loaded EventAccumulator over a local copy of runs/<run>/tb/ (every event file in it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder.mkdir(parents=True, exist_ok=True)
    prefix = tensorboard_prefix(run)
    for info in store.list(prefix):
        (folder / info.key[len(prefix):]).write_bytes(store.get_bytes(info.key))
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator
