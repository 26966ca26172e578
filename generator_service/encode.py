"""Turns generator outputs ([-1, 1] floats, N×C×H×W) into the bytes each output format promises."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ganworks.api import generator_pb2 as pb
from ganworks.images import encode_png, to_uint8

FORMAT_NAMES = {pb.OUTPUT_FORMAT_PNG: "png", pb.OUTPUT_FORMAT_UINT8: "uint8", pb.OUTPUT_FORMAT_FLOAT32: "float32"}


def effective_format(value: int) -> int:
    """UNSPECIFIED means PNG (the proto says so)."""
    return pb.OUTPUT_FORMAT_PNG if value == pb.OUTPUT_FORMAT_UNSPECIFIED else value


def bytes_per_image(output_format: int, image_size: int, channels: int) -> int:
    """Upper bound of one encoded image (a PNG of noise is barely smaller than its pixels)."""
    pixels = image_size * image_size * channels
    return pixels * 4 if output_format == pb.OUTPUT_FORMAT_FLOAT32 else pixels + 1024


def raw_images(images: np.ndarray, output_format: int) -> list[bytes]:
    """uint8 or float32 pixels, H×W×C row-major little-endian, one bytes object per image."""
    if output_format == pb.OUTPUT_FORMAT_FLOAT32:
        hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype="<f4")
        return [hwc[i].tobytes() for i in range(len(hwc))]
    pixels = to_uint8(images)
    return [pixels[i].tobytes() for i in range(len(pixels))]


class PngEncoder:
    """Encodes PNGs in a thread pool (zlib releases the GIL), so the event loop keeps accepting calls."""

    def __init__(self, threads: int):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="png")
        self._threads = threads

    async def encode(self, images: np.ndarray) -> list[bytes]:
        pixels = to_uint8(images)
        loop = asyncio.get_running_loop()
        # A few chunks rather than one task per image: fewer hand-offs, still all threads busy.
        chunks = np.array_split(np.arange(len(pixels)), min(self._threads, len(pixels)))
        parts = await asyncio.gather(*(loop.run_in_executor(self._pool, _encode_all, pixels[c[0] : c[-1] + 1]) for c in chunks if len(c)))
        return [png for part in parts for png in part]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _encode_all(pixels: np.ndarray) -> list[bytes]:
    return [encode_png(p) for p in pixels]
