"""Picks, at load time, the fastest form of a snapshot's generator that draws the same images (within one uint8 step).

Forms tried: the eager module and the eager module in channels-last memory format. A form counts only if
its pixels match the eager ones to within 1/255 at the batch size measured and at batch 1; the fastest of those (median of a few timed runs
at max_batch_size) is served. Runs in the device thread, before the snapshot is swapped in.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Callable

import numpy as np
import torch

from ganworks.images import to_uint8
from ganworks.models import ModelFamily

log = logging.getLogger(__name__)
TIMED_RUNS = 3


def _channels_last(generator: torch.nn.Module, example: tuple) -> torch.nn.Module:
    return copy.deepcopy(generator).to(memory_format=torch.channels_last)


# A frozen TorchScript graph was a form too, until a 10-minute soak showed each one leaking about 5 MB that
# nothing frees (JIT caches): with a snapshot every few seconds the generator grew 140 MB. Forms must be free.
FORMS: dict[str, Callable[[torch.nn.Module, tuple], torch.nn.Module]] = {"channels_last": _channels_last}


def _example(family: ModelFamily, params: dict, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latents and labels the way the family draws them for served calls (seeded, so every load measures the same)."""
    z = torch.from_numpy(family.seeded_latents(params, batch, 0, batch)).to(device)
    labels = family.seeded_labels(params, batch, 0, batch)
    return z, (torch.from_numpy(labels).to(device) if labels is not None else None)


def _runner(family: ModelFamily, example: tuple[torch.Tensor, torch.Tensor | None]) -> Callable[[torch.nn.Module], torch.Tensor]:
    """The served call (family.generate, no truncation) on the example, for any form of the module."""
    z, labels = example
    psi = torch.ones(len(z), device=z.device)

    def run(module: torch.nn.Module) -> torch.Tensor:
        with torch.inference_mode():
            return family.generate(module, z, labels, psi)

    return run


def _pixels(run: Callable[[torch.nn.Module], torch.Tensor], module: torch.nn.Module) -> np.ndarray:
    return to_uint8(run(module)).astype(np.int16)


def _median_seconds(run: Callable[[torch.nn.Module], torch.Tensor], module: torch.nn.Module, device: torch.device) -> float:
    times = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        run(module)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def fastest_form(generator: torch.nn.Module, family: ModelFamily, params: dict, *, batch: int, device: torch.device) -> tuple[torch.nn.Module, str, dict[str, float]]:
    """The module to serve, its form's name, and the measured seconds per batch of every form that qualified."""
    big, one = _example(family, params, batch, device), _example(family, params, 1, device)
    run_big, run_one = _runner(family, big), _runner(family, one)
    reference = {batch: _pixels(run_big, generator), 1: _pixels(run_one, generator)}
    timings, modules = {"eager": _median_seconds(run_big, generator, device)}, {"eager": generator}
    for name, build in FORMS.items():
        try:
            # The forms are traced the way the family calls its generator: (latents) or (latents, labels).
            module = build(generator, tuple(t for t in big if t is not None))
            drift = max(int(np.abs(_pixels(run, module) - reference[n]).max()) for n, run in ((batch, run_big), (1, run_one)))
        except Exception as exc:  # noqa: BLE001 - a form the model or device does not support is skipped
            log.info("fast path %s is not available for this model: %s", name, exc)
            continue
        if drift > 1:
            log.info("fast path %s changes pixels by up to %d/255; not used", name, drift)
            continue
        modules[name], timings[name] = module, _median_seconds(run_big, module, device)
    best = min(timings, key=timings.get)
    return modules[best], best, timings
