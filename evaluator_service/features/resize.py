"""Resizing generated and real images to an extractor's input, the two ways published FID numbers were made.

- `legacy-pytorch`: bilinear, align_corners=False on float tensors, as pytorch-fid (and torch-fidelity) do.
- `clean`: PIL bicubic on float32 images per channel, no re-quantization after the resize, as clean-fid does.

Both start from uint8 pixels — the evaluator quantizes generator output first, as a saved image would be —
and return float32 N×C×H×W in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluator_service.errors import InvalidRequestError

RESIZE_MODES = ("legacy-pytorch", "clean")


def check_resize_mode(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise InvalidRequestError(f"unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)}")
    return mode


def _clean(images: np.ndarray, size: int) -> np.ndarray:
    n, _, _, c = images.shape
    out = np.empty((n, c, size, size), dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            plane = Image.fromarray(images[i, :, :, ch].astype(np.float32), mode="F")
            out[i, ch] = np.asarray(plane.resize((size, size), resample=Image.Resampling.BICUBIC))
    return out / 255.0


def resize(images: np.ndarray, size: int, mode: str, device: torch.device | None = None) -> torch.Tensor:
    """uint8 N×H×W×C -> float32 N×C×size×size in [0, 1], on `device` (the CPU by default).

    On CUDA the legacy-pytorch resize runs on the device: the uint8 pixels are copied there first (a quarter of the
    float bytes, pinned for a non-blocking copy), then scaled and interpolated. clean mode resizes with PIL on the CPU.
    """
    check_resize_mode(mode)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise InvalidRequestError(f"images to resize must be uint8 N×H×W×C, got {images.dtype} of shape {images.shape}")
    device = device or torch.device("cpu")
    if mode == "clean" and not (images.shape[1] == size and images.shape[2] == size):
        return torch.from_numpy(_clean(images, size)).to(device)
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    if device.type == "cuda":
        pixels = pixels.pin_memory().to(device, non_blocking=True)
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    if images.shape[1] == size and images.shape[2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
