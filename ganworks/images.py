"""Conversions between generator outputs ([-1, 1] floats, NCHW) and uint8 pixels, PNG files and grids."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] floats, N×C×H×W -> uint8 N×H×W×C, rounded as a saved image would be."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C -> float32 N×C×H×W in [-1, 1], the generator's output range (to_uint8 undoes it exactly)."""
    tensor = torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy())  # read-only: Ray's object store, np.broadcast_to
    return tensor.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def encode_png(pixels: np.ndarray) -> bytes:
    """One H×W×C uint8 image -> PNG bytes (grey for C=1, RGB for C=3)."""
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> H×W×C uint8."""
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[..., None] if array.ndim == 2 else array


def grid(pixels: np.ndarray, columns: int | None = None, padding: int = 2, scale: int = 1) -> np.ndarray:
    """N×H×W×C uint8 images -> one H'×W'×C uint8 grid image, row-major."""
    n, h, w, c = pixels.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        out[y : y + h, x : x + w] = pixels[i]
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def grid_png(pixels: np.ndarray, columns: int | None = None, scale: int = 1) -> bytes:
    return encode_png(grid(pixels, columns, scale=scale))


def flipped_shifted_copies(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """count copies of images drawn at random (N×H×W or N×H×W×C uint8), each flipped left-right with probability
    1/2 and rolled by up to 2 pixels each way: the usual oversampling of a rare image class."""
    rng = np.random.default_rng(seed)
    picks = images[rng.integers(0, len(images), count)]
    out = np.empty_like(picks)
    for i, image in enumerate(picks):
        if rng.random() < 0.5:
            image = image[:, ::-1]
        dy, dx = rng.integers(-2, 3, 2)
        out[i] = np.roll(np.roll(image, dy, axis=0), dx, axis=1)
    return out
