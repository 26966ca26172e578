"""Tests marked `gpu` run where a CUDA device is visible and are skipped, with the reason, everywhere else."""

from __future__ import annotations

import pytest
import torch

NO_CUDA = "needs a CUDA device and none is visible here; on a GPU machine run `make gpu-check` (it runs these too)"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
