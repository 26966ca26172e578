"""Where training computes with --use-gpu: one GPU per worker, NCCL between them, bf16 autocast, and a clear refusal
when the GPUs are not there."""

from __future__ import annotations

import contextlib

import torch

from ganworks.devices import cuda_devices
from ganworks.errors import ConfigError


def backend(use_gpu: bool) -> str:
    """The process-group backend: NCCL between GPUs, gloo between CPU workers."""
    return "nccl" if use_gpu else "gloo"


def autocast(device: torch.device, mixed_precision: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when mixed precision is on (bf16 keeps fp32's range: no loss scaling); fp32 otherwise."""
    if device.type == "cuda" and mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_gpus(use_gpu: bool, num_workers: int, cluster_gpus: float | None = None) -> None:
    """Refuses --use-gpu with fewer GPUs than workers: the Ray cluster's GPUs when given, else this machine's."""
    if not use_gpu:
        return
    available = cuda_devices() if cluster_gpus is None else cluster_gpus
    if num_workers > available:
        where = "the Ray cluster" if cluster_gpus is not None else "this machine (torch.cuda.device_count())"
        fix = f"lower --num-workers to {int(available)}" if available >= 1 else "train on CPUs without --use-gpu (gloo)"
        raise ConfigError(f"--use-gpu with --num-workers {num_workers} needs {num_workers} GPUs, one per worker (NCCL); "
                          f"{where} has {available:g}; {fix}, or add GPUs")
