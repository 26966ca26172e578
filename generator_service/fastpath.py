"""Picks, at load time, the fastest form of a snapshot's generator that draws the same images (within one uint8 step).

Forms tried: the eager module, the eager module in channels-last memory format, and a frozen TorchScript
graph (traced, frozen, optimised for inference). A form counts only if its pixels match the eager ones to
within 1/255 at the batch size measured and at batch 1; the fastest of those (median of a few timed runs
at max_batch_size) is served. Runs in the device thread, before the snapshot is swapped in.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from typing import Callable

import numpy as np
import torch

from ganworks.images import to_uint8

log = logging.getLogger(__name__)
TIMED_RUNS = 3


def _channels_last(generator: torch.nn.Module, example: tuple) -> torch.nn.Module:
    return copy.deepcopy(generator).to(memory_format=torch.channels_last)


def _frozen_graph(generator: torch.nn.Module, example: tuple) -> torch.nn.Module:
    # TorchScript is deprecated in favour of torch.compile, which needs a C++ toolchain at load time; the
    # tracer's warnings are about checks (shapes, batch size) that the pixel comparison covers.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(copy.deepcopy(generator).eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


FORMS: dict[str, Callable[[torch.nn.Module, tuple], torch.nn.Module]] = {"channels_last": _channels_last, "frozen_graph": _frozen_graph}


def _example(latent_dim: int, num_classes: int, batch: int, device: torch.device) -> tuple:
    g = torch.Generator().manual_seed(batch)
    z = torch.randn(batch, latent_dim, generator=g).to(device)
    return (z, (torch.arange(batch) % num_classes).to(device)) if num_classes else (z,)


def _pixels(module: torch.nn.Module, example: tuple) -> np.ndarray:
    with torch.inference_mode():
        return to_uint8(module(*example)).astype(np.int16)


def _median_seconds(module: torch.nn.Module, example: tuple) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            module(*example)
            if example[0].is_cuda:
                torch.cuda.synchronize(example[0].device)
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def fastest_form(generator: torch.nn.Module, *, latent_dim: int, num_classes: int, batch: int, device: torch.device) -> tuple[torch.nn.Module, str, dict[str, float]]:
    """The module to serve, its form's name, and the measured seconds per batch of every form that qualified."""
    big, one = _example(latent_dim, num_classes, batch, device), _example(latent_dim, num_classes, 1, device)
    reference = {batch: _pixels(generator, big), 1: _pixels(generator, one)}
    timings, modules = {"eager": _median_seconds(generator, big)}, {"eager": generator}
    for name, build in FORMS.items():
        try:
            module = build(generator, big)
            drift = max(int(np.abs(_pixels(module, ex) - reference[n]).max()) for n, ex in ((batch, big), (1, one)))
        except Exception as exc:  # noqa: BLE001 - a form the model or device does not support is skipped
            log.info("fast path %s is not available for this model: %s", name, exc)
            continue
        if drift > 1:
            log.info("fast path %s changes pixels by up to %d/255; not used", name, drift)
            continue
        modules[name], timings[name] = module, _median_seconds(module, big)
    best = min(timings, key=timings.get)
    return modules[best], best, timings
