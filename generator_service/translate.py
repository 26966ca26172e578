"""Translate calls (translation models, family cyclegan): checks, decoding the caller's images, the batch compute and warm-up.

Images arrive as PNG files or raw uint8 pixels and become float32 C×H×W in [-1, 1] at the model's size. Each
image is translated on its own (the generators use instance norm, and padding rows are zeros that no real image
sees), so an image's answer does not depend on its batch.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import threading
import time

import grpc
import numpy as np
import torch
from PIL import Image

from ganworks.api import generator_pb2 as pb
from ganworks.errors import CheckpointError
from generator_service.encode import bytes_per_image, effective_format
from generator_service.models import LoadedModel
from generator_service.validation import FORMAT_LIST, KNOWN_FORMATS, RequestError, _invalid

DIRECTIONS = {pb.DIRECTION_A_TO_B: "a_to_b", pb.DIRECTION_B_TO_A: "b_to_a"}
# The batcher's queue kinds of Translate jobs: one queue per direction, so a batch runs one generator.
QUEUE_KINDS = {"a_to_b": -2, "b_to_a": -3}
# The largest image side accepted before decoding (a decompression bomb is refused, not decoded).
MAX_SIDE = 4096
_MODES = {"L": 1, "RGB": 3}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class TranslateBudget:
    """What one Translate call may cost before anything is decoded: encoded bytes and decoded pixels, per image and
    per call. Each field is a generator setting (translate_max_*); a refusal names the setting it hit."""

    image_bytes: int = 8 * 2**20
    request_bytes: int = 32 * 2**20
    image_pixels: int = 4096 * 4096
    request_pixels: int = 64 * 2**20

    @classmethod
    def of(cls, settings) -> "TranslateBudget":
        return cls(settings.translate_max_image_bytes, settings.translate_max_request_bytes, settings.translate_max_image_pixels, settings.translate_max_request_pixels)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, read without decoding anything; None when the bytes do not start like a PNG."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def check_translate_budget(request: pb.TranslateRequest, budget: TranslateBudget) -> None:
    """Refuses a call whose images, by their byte lengths and PNG headers (or raw shape), would cost more than the budget."""
    total_bytes = total_pixels = 0
    raw = request.input_format == pb.OUTPUT_FORMAT_UINT8
    for i, data in enumerate(request.images):
        if len(data) > budget.image_bytes:
            raise _invalid(f"image {i} has {len(data)} bytes, above this server's limit of {budget.image_bytes} per image (setting translate_max_image_bytes)")
        total_bytes += len(data)
        if raw:
            pixels = request.shape[0] * request.shape[1]
            if pixels > budget.image_pixels:
                raise _invalid(f"shape {list(request.shape)} is {pixels} pixels an image, above this server's limit of {budget.image_pixels} per image (setting translate_max_image_pixels)")
        else:
            size = png_size(data)
            if size is None:
                raise _invalid(f"image {i} is not a readable PNG file (it does not start with a PNG signature and IHDR header); send PNG bytes, or raw pixels with input_format UINT8 and shape")
            pixels = size[0] * size[1]
            if pixels > budget.image_pixels or max(size) > MAX_SIDE:
                raise _invalid(f"image {i} is {size[1]}×{size[0]} by its PNG header, above this server's limit of {budget.image_pixels} pixels and {MAX_SIDE} a side per image (setting translate_max_image_pixels); it was not decoded")
        total_pixels += pixels
    if total_bytes > budget.request_bytes:
        raise _invalid(f"the call's images hold {total_bytes} bytes, above this server's limit of {budget.request_bytes} per call (setting translate_max_request_bytes); send fewer images per call")
    if total_pixels > budget.request_pixels:
        raise _invalid(f"the call's images hold {total_pixels} pixels by their headers, above this server's limit of {budget.request_pixels} per call (setting translate_max_request_pixels); "
                       "send fewer or smaller images per call; nothing was decoded")


class StopWhen:
    """Tells the decoding thread to stop: the call was cancelled (set from the event loop) or its deadline passed."""

    def __init__(self, deadline: float | None):
        self.deadline, self.cancelled = deadline, threading.Event()

    def check(self, done: int) -> None:
        if self.cancelled.is_set():
            raise RequestError(grpc.StatusCode.CANCELLED, f"the call was cancelled; decoding stopped after {done} images")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, f"the call's deadline passed while its images were decoded (after {done}); give it more time or send fewer images")


def check_translate_basics(request: pb.TranslateRequest, max_images: int, budget: TranslateBudget = TranslateBudget()) -> str:
    """What can be checked without the model, the budget included; the direction ("a_to_b" or "b_to_a")."""
    if not request.model:
        raise _invalid("model is empty: set it to a run id (ListModels shows the served models)")
    if request.version < 0:
        raise _invalid(f"version must be 0 (newest) or a published step, got {request.version}")
    if request.direction not in DIRECTIONS:
        raise _invalid(f"direction must be DIRECTION_A_TO_B (1) or DIRECTION_B_TO_A (2), got {request.direction}")
    if not 0 < len(request.images) <= max_images:
        raise _invalid(f"give between 1 and this server's maximum of {max_images} images per call, got {len(request.images)}")
    if request.input_format not in (pb.OUTPUT_FORMAT_UNSPECIFIED, pb.OUTPUT_FORMAT_PNG, pb.OUTPUT_FORMAT_UINT8):
        raise _invalid(f"input_format must be OUTPUT_FORMAT_PNG (1) or OUTPUT_FORMAT_UINT8 (2), got {request.input_format}")
    if request.output_format not in KNOWN_FORMATS:
        raise _invalid(f"output_format {request.output_format} is unknown; use one of {FORMAT_LIST}")
    if request.input_format == pb.OUTPUT_FORMAT_UINT8:
        shape = list(request.shape)
        if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1 or max(shape[:2]) > MAX_SIDE:
            raise _invalid(f"input_format UINT8 needs shape [height, width, channels] with channels 1 or 3 and sides up to {MAX_SIDE}, got {shape}")
    elif request.shape:
        raise _invalid("shape describes raw UINT8 input; PNG images carry their own size: leave shape empty")
    check_translate_budget(request, budget)
    return DIRECTIONS[request.direction]


def check_translate_model(model: LoadedModel, request: pb.TranslateRequest, max_message_bytes: int) -> int:
    """Refuses an answer above the message limit (the caller checked the model translates); the output format."""
    m, fmt = model.manifest, effective_format(request.output_format)
    size = len(request.images) * bytes_per_image(fmt, m.image_size, m.channels)
    if size > max_message_bytes:
        raise _invalid(f"the answer would be about {size // 2**20} MiB, above the {max_message_bytes // 2**20} MiB message limit; send fewer images per call")
    return fmt


def decode_images(request: pb.TranslateRequest, size: int, channels: int, model_name: str, stop: StopWhen | None = None) -> np.ndarray:
    """The request's images as float32 N×C×H×W in [-1, 1] at the model's size; INVALID_ARGUMENT names the first bad one.
    With `stop`, decoding ends (CANCELLED or DEADLINE_EXCEEDED) before the next image once the call is over."""
    out = np.empty((len(request.images), channels, size, size), dtype=np.float32)
    wanted = f"{size}×{size}×{channels}"
    for i, data in enumerate(request.images):
        if stop is not None:
            stop.check(i)
        if request.input_format == pb.OUTPUT_FORMAT_UINT8:
            h, w, c = request.shape
            if len(data) != h * w * c:
                raise _invalid(f"image {i} has {len(data)} bytes; shape {list(request.shape)} needs {h * w * c}")
            pixels = np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)
            image = Image.fromarray(pixels[..., 0] if c == 1 else pixels, "L" if c == 1 else "RGB")
        else:
            image = _open_png(data, i)
        have = f"{image.size[1]}×{image.size[0]}×{_MODES.get(image.mode, '?')}"
        if not request.resize:
            if image.mode not in _MODES:
                raise _invalid(f"image {i} is a {image.mode!r} PNG; model {model_name!r} takes {wanted} grey (L) or RGB images: convert it, or set resize to convert it here")
            if image.size != (size, size) or _MODES[image.mode] != channels:
                raise _invalid(f"image {i} is {have} (height×width×channels); model {model_name!r} takes {wanted}: send images of that size, or set resize")
        else:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).reshape(size, size, channels)
        out[i] = pixels.transpose(2, 0, 1) / 127.5 - 1.0
    return out


def _open_png(data: bytes, index: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        too_big = max(image.size) > MAX_SIDE
        if not too_big:
            image.load()
    except Exception as exc:  # noqa: BLE001 - whatever the decoder meets in the caller's bytes is the caller's to fix
        raise _invalid(f"image {index} is not a readable PNG file ({type(exc).__name__}: {exc}); send PNG bytes, or raw pixels with input_format UINT8 and shape") from None
    if too_big:
        raise _invalid(f"image {index} is {image.size[1]}×{image.size[0]}; sides above {MAX_SIDE} are refused")
    if image.mode == "P":
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    return image


def compute_translation(model: LoadedModel, inputs: list[np.ndarray], direction: str, padded: int) -> np.ndarray:
    """One forward pass over the parts' images (padded with zero images to a warmed batch shape), in the device thread."""
    size = sum(len(x) for x in inputs)
    if padded > size:
        inputs = [*inputs, np.zeros((padded - size, *inputs[0].shape[1:]), dtype=np.float32)]
    x = torch.from_numpy(np.concatenate(inputs)).to(model.device)
    with torch.inference_mode():
        out = model.family.translate(model.generator, x, direction)
    return out[:size].float().cpu().numpy()


def warm_up_translation(model: LoadedModel, shapes: list[int]) -> None:
    """Every batch shape through both generators before the model serves; one that makes NaN/inf is refused."""
    m = model.manifest
    for size in reversed(shapes):
        x = torch.zeros(size, m.channels, m.image_size, m.image_size, device=model.device)
        for direction in QUEUE_KINDS:
            with torch.inference_mode():
                out = model.family.translate(model.generator, x, direction)
            if not torch.isfinite(out).all():
                raise CheckpointError(f"snapshot {m.step} of model {m.run!r} translates a blank image to NaN/inf ({direction}); it is refused")
