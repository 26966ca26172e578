"""CUDA helpers the three services share: fp32 math without TF32 (set and restored), and outputs to the host by pinned memory.

Nothing here needs a GPU to import or to be tested: the backend flags exist on every build of torch, and the host
copy is the identity for a tensor already on the CPU.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# What a caller may ask for; recorded in reports as given.
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def _tf32_flags() -> list[tuple[object, str, object, object]]:
    """(owner, attribute, value for strict fp32, value for TF32) of the backend flags that let CUDA round fp32 math to TF32.

    The allow_tf32 spelling: in torch 2.13 its setters keep the newer fp32_precision flags in step (measured), while
    setting fp32_precision directly leaves the allow_tf32 getters raising "a mix of the legacy and new APIs" for any
    code that still reads them.
    """
    return [(torch.backends.cuda.matmul, "allow_tf32", False, True), (torch.backends.cudnn, "allow_tf32", False, True)]


def tf32_allowed() -> bool:
    """Whether CUDA matmuls or convolutions may run in TF32 now."""
    return any(getattr(owner, name) == tf32 for owner, name, _, tf32 in _tf32_flags())


@contextlib.contextmanager
def cuda_math(precision: str = "fp32") -> Iterator[None]:
    """fp32 math as written (TF32 off; cuDNN has TF32 on by default) unless precision is "tf32"; the flags are put back after.

    The flags are process-wide: call this from the one thread that runs the device, as the services do.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    flags = _tf32_flags()
    saved = [getattr(owner, name) for owner, name, _, _ in flags]
    try:
        for owner, name, strict, tf32 in flags:
            setattr(owner, name, tf32 if precision == "tf32" else strict)
        yield
    finally:
        for (owner, name, _, _), value in zip(flags, saved):
            setattr(owner, name, value)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a reduced precision ("fp16", "bf16"), None for fp32/tf32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A CUDA tensor's copy in (cached) pinned host memory by a non-blocking copy, waiting for that copy only — not
    for the whole device. A CPU tensor is returned as it is.

    Pinned memory lets the copy run by DMA at full bus speed; a fresh block per call (PyTorch's caching host
    allocator makes that cheap) means a result handed to a caller is never overwritten by the next batch.
    """
    if tensor.device.type != "cuda":
        return tensor
    tensor = tensor.contiguous()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(tensor.device))
    done.synchronize()
    return host


def cuda_devices() -> int:
    """How many CUDA devices this process sees (0 without CUDA, or where CUDA_VISIBLE_DEVICES hides them)."""
    return torch.cuda.device_count()
