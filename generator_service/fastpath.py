"""Picks, at load time, the fastest form of a snapshot's generator that draws the same images (within one uint8 step).

A form is a copy of the generator whose entry points — what the family's code calls on it: the whole generator for
DCGAN, the mapping network and the synthesis method for StyleGAN2 — run another way: channels-last, under bf16/fp16 autocast, with
TF32, as one CUDA graph per batch-size bucket, or torch.compile'd. A form counts only if its pixels match the
eager fp32 module's to within 1/255 at the batch size measured and at batch 1; the fastest of those (median of a
few timed runs at max_batch_size) is served. A form the model or device cannot run is skipped with a log line.
Runs in the device thread, before the snapshot is swapped in.

The reference is always eager fp32 on the CPU, so a CUDA replica serves what a CPU replica serves. On CUDA the eager
form runs strict fp32 (TF32 off: cuDNN would use it by default), and the last entry of every CUDA form hands its output back in pinned host memory by a non-blocking copy, so the
batcher's `.cpu()` has nothing left to do. CUDA graphs pad a call up to its bucket themselves (zero rows, then cut
off), so they need nothing from the batcher; the batcher's own padding to its shapes only makes the pad empty.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from typing import Any, Callable

import numpy as np
import torch

from ganworks.devices import autocast_dtype, cuda_math, to_host
from ganworks.images import to_uint8
from ganworks.models import ModelFamily

log = logging.getLogger(__name__)
TIMED_RUNS = 3
# torch.compile costs tens of seconds per snapshot and has not been measured on a GPU yet: opt in (gpu-check does).
COMPILE_ENV = "GANWORKS_FAST_PATH_COMPILE"


@dataclasses.dataclass(frozen=True)
class FormPlan:
    """What a form builder needs: the entry points in call order ("" = the generator itself, else a submodule's or a
    method's name), the device, the buckets."""

    entries: tuple[str, ...]
    device: torch.device
    buckets: tuple[int, ...]


def graph_buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes that get a CUDA graph: 1, 2, 4, then multiples of 8, and max_batch (as the batcher's shapes)."""
    return tuple(sorted(b for b in {1, 2, 4, 8, max_batch} | set(range(8, max_batch + 1, 8)) if b <= max_batch))


def _map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    return value


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    # Reduced-precision outputs go back to fp32 so the family's own code after an entry runs as it does eagerly.
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t


class BucketPadding:
    """An entry's forward at a fixed set of batch sizes: a call of n samples is copied into the smallest bucket ≥ n
    (static input buffers, zero rows after the n), run, and its output cut back to n rows. A call above the largest
    bucket, or whose tensors disagree on the batch size, runs as it is. Zero rows change no real sample because a
    served generator treats samples independently (the batcher's own padding relies on it too).

    This class runs the padded call eagerly (it is how the bucket logic is tested on a CPU); BucketGraphs replays a
    CUDA graph captured per bucket instead.
    """

    def __init__(self, forward: Callable[..., Any], buckets: tuple[int, ...]):
        self.forward, self.buckets = forward, tuple(sorted(buckets))
        self.prepared: dict[tuple, tuple[Callable[[], Any], list[torch.Tensor]]] = {}

    def bucket_for(self, n: int) -> int | None:
        return next((b for b in self.buckets if b >= n), None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        names = sorted(kwargs)
        values = list(args) + [kwargs[k] for k in names]
        slots = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        sizes = {values[i].shape[0] if values[i].dim() else -1 for i in slots}
        n = next(iter(sizes)) if len(sizes) == 1 else -1
        bucket = self.bucket_for(n) if n > 0 else None
        if bucket is None:
            return self.forward(*args, **kwargs)
        # Non-tensor arguments (StyleGAN2's noise_mode, track) and the tensors' trailing shapes pick the buffers too.
        key = (bucket, len(args), tuple(names),
               tuple((values[i].dtype, tuple(values[i].shape[1:]), values[i].device) if i in slots else repr(values[i]) for i in range(len(values))))
        if key not in self.prepared:
            self.prepared[key] = self._prepare(values, slots, bucket, len(args), names)
        call, static = self.prepared[key]
        for slot, buffer in zip(slots, static):
            buffer[:n].copy_(values[slot])
            buffer[n:].zero_()
        return _map_tensors(lambda t: t[:n], call())

    def _prepare(self, values: list, slots: list[int], bucket: int, positional: int, names: list[str]) -> tuple[Callable[[], Any], list[torch.Tensor]]:
        static = [torch.zeros((bucket, *values[i].shape[1:]), dtype=values[i].dtype, device=values[i].device) for i in slots]
        filled = list(values)
        for slot, buffer in zip(slots, static):
            filled[slot] = buffer

        def call() -> Any:
            return self.forward(*filled[:positional], **dict(zip(names, filled[positional:])))

        return call, static


class BucketGraphs(BucketPadding):
    """BucketPadding whose padded call is one CUDA graph per bucket (and call signature), captured at its first use
    (fastest_form's checks and the server's warm-up run every bucket before a call is served). The output rows are
    views of the graph's static output: the caller copies them before the next replay."""

    def __init__(self, forward: Callable[..., Any], buckets: tuple[int, ...], device: torch.device):
        super().__init__(forward, buckets)
        self.device, self.pool = device, None

    def _prepare(self, values, slots, bucket, positional, names):
        call, static = super()._prepare(values, slots, bucket, positional, names)
        for slot, buffer in zip(slots, static):
            buffer.copy_(values[slot][:1].expand_as(buffer))  # real values while lazy set-up runs (no zero-row special cases)
        # Lazy set-up (cuDNN plans, allocator blocks) must happen before capture, on a side stream as PyTorch asks.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                call()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = call()
        self.pool = graph.pool()  # every bucket's graph shares one memory pool

        def replay() -> Any:
            graph.replay()
            return out

        return replay, static


def _entry_forward(forward: Callable[..., Any], *, precision: str, buckets: tuple[int, ...] | None, graphs: bool, device: torch.device,
                   last: bool) -> Callable[..., Any]:
    dtype = autocast_dtype(precision)

    def run(*args: Any, **kwargs: Any) -> Any:
        # On CUDA what stays fp32 runs without TF32 unless the form is the TF32 one (cuDNN's default would use it).
        with cuda_math("tf32" if precision == "tf32" else "fp32") if device.type == "cuda" else contextlib.nullcontext():
            if dtype is None:
                return forward(*args, **kwargs)
            with torch.autocast(device.type, dtype=dtype, cache_enabled=False):  # a cached cast would outlive a graph capture
                return _map_tensors(_as_float32, forward(*args, **kwargs))

    if buckets is not None:
        run = BucketGraphs(run, buckets, device) if graphs else BucketPadding(run, buckets)
    if device.type != "cuda":
        return run
    # The last entry's images go to pinned host memory (a copy); earlier entries' outputs stay on the device, copied
    # out of a graph's static buffers before the next replay can overwrite them.
    keep = to_host if last else (torch.clone if graphs else None)

    def handed_back(*args: Any, **kwargs: Any) -> Any:
        out = run(*args, **kwargs)
        return _map_tensors(keep, out) if keep is not None else out

    return handed_back


def form(precision: str = "fp32", *, channels_last: bool = False, graphs: bool = False, buckets: bool = False,
         compile: bool = False) -> Callable[[torch.nn.Module, FormPlan], torch.nn.Module]:
    """A form builder: a copy of the generator whose entries run in this precision (fp32, tf32, fp16, bf16 autocast),
    channels-last, padded to the plan's buckets (graphs=True: as CUDA graphs), or compiled."""

    def build(generator: torch.nn.Module, plan: FormPlan) -> torch.nn.Module:
        if (graphs or precision == "tf32") and plan.device.type != "cuda":
            raise RuntimeError(f"{'CUDA graphs' if graphs else 'TF32'} need a CUDA device")
        module = copy.deepcopy(generator)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        for i, name in enumerate(plan.entries):
            _replace_entry(module, name, lambda forward, last=i == len(plan.entries) - 1: _entry_forward(
                torch.compile(forward) if compile else forward, precision=precision, buckets=plan.buckets if (buckets or graphs) else None,
                graphs=graphs, device=plan.device, last=last))
        return module

    return build


def _channels_last(generator: torch.nn.Module, plan: FormPlan) -> torch.nn.Module:
    if plan.device.type == "cuda":  # with strict fp32 and the pinned host copy, as every CUDA form
        return form("fp32", channels_last=True)(generator, plan)
    return copy.deepcopy(generator).to(memory_format=torch.channels_last)


# A frozen TorchScript graph was a form too, until a 10-minute soak showed each one leaking about 5 MB that
# nothing frees (JIT caches): with a snapshot every few seconds the generator grew 140 MB. Forms must be free.
# Forms tried on every device (bf16 autocast runs on CPUs too; it is served only where it passes the pixel rule).
FORMS: dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]] = {
    "channels_last": _channels_last,
    "bf16_autocast": form("bf16"),
}
# Forms tried on CUDA only. The eager module is wrapped too there, for strict fp32 and the pinned host copy.
CUDA_FORMS: dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]] = {
    "tf32": form("tf32"),
    "fp16_autocast": form("fp16"),
    "channels_last_fp16": form("fp16", channels_last=True),
    "cuda_graphs": form("fp32", graphs=True),
    "cuda_graphs_fp16": form("fp16", graphs=True),
    "cuda_graphs_bf16": form("bf16", graphs=True),
}
COMPILE_FORMS: dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]] = {
    "compile": form("fp32", compile=True),
    "compile_fp16": form("fp16", compile=True),
}


def forms_for(device: torch.device, compile: bool | None = None) -> dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]]:
    """The forms worth trying on this device; torch.compile only when asked (argument, else GANWORKS_FAST_PATH_COMPILE=1)."""
    compile = os.environ.get(COMPILE_ENV, "") == "1" if compile is None else compile
    if device.type != "cuda":
        return dict(FORMS)
    return {**FORMS, **CUDA_FORMS, **(COMPILE_FORMS if compile else {})}


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


class _Recorder:
    """Stands in for the generator (or one of its submodules) during one served call and notes, in order, what the
    family's code calls on it: the module itself, a submodule, or a method of the model's own class (StyleGAN2's
    synthesis is a method). What those calls do inside is not seen: they run on the real module."""

    def __init__(self, target: torch.nn.Module, path: str, calls: list[str]):
        self._target, self._path, self._calls = target, path, calls

    def _note(self, name: str) -> None:
        if name not in self._calls:
            self._calls.append(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._note(self._path)
        return self._target(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        path = f"{self._path}.{name}" if self._path else name
        if isinstance(value, torch.nn.Module):
            return _Recorder(value, path, self._calls)
        if callable(value) and not isinstance(value, torch.Tensor) and not hasattr(torch.nn.Module, name):
            def method(*args: Any, **kwargs: Any) -> Any:
                self._note(path)
                return value(*args, **kwargs)

            return method
        return value


def entry_points(generator: torch.nn.Module, run: Callable[[torch.nn.Module], torch.Tensor]) -> tuple[tuple[str, ...], torch.Tensor]:
    """What the family's served call calls on the generator itself, in call order: "" (the generator), a submodule's
    path ("mapping"), or a method's ("synthesis"); and that call's output."""
    calls: list[str] = []
    out = run(_Recorder(generator, "", calls))  # type: ignore[arg-type]
    return tuple(calls), out


def _replace_entry(module: torch.nn.Module, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Puts wrap(the entry's callable) in the entry's place on this copy: a module's forward, or a method, as an
    instance attribute (nn.Module.__call__ and attribute lookup find it before the class's)."""
    owner_path, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_path) if name else module
    target = getattr(owner, attr) if name else module
    if isinstance(target, torch.nn.Module):
        target.forward = wrap(target.forward)
    else:
        object.__setattr__(owner, attr, wrap(target))


def _median_seconds(run: Callable[[torch.nn.Module], torch.Tensor], module: torch.nn.Module, device: torch.device) -> float:
    times = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        run(module)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


@dataclasses.dataclass
class FormTrial:
    """One form's result: the largest pixel difference from eager fp32 (None if it could not run), its median
    seconds per batch (None unless it qualified), and why it was left out."""

    name: str
    drift: int | None = None
    seconds: float | None = None
    reason: str = ""

    @property
    def qualified(self) -> bool:
        return self.seconds is not None


def measure_forms(generator: torch.nn.Module, family: ModelFamily, params: dict, *, batch: int, device: torch.device,
                  forms: dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]] | None = None) -> tuple[dict[str, torch.nn.Module], list[FormTrial]]:
    """Every form's trial, and the modules of those that qualified ("eager" first)."""
    forms = forms_for(device) if forms is None else forms
    run_big, run_one = _runner(family, _example(family, params, batch, device)), _runner(family, _example(family, params, 1, device))
    # The reference is eager fp32 on the CPU, wherever the model serves: a CUDA form then draws what a CPU replica
    # draws (within one step), not just what the card's own fp32 draws (which may already be a step off).
    cpu = torch.device("cpu")
    on_cpu = generator if device.type == "cpu" else copy.deepcopy(generator).to(cpu)
    entries, out_one = entry_points(on_cpu, _runner(family, _example(family, params, 1, cpu)))
    reference = {1: to_uint8(out_one).astype(np.int16), batch: _pixels(_runner(family, _example(family, params, batch, cpu)), on_cpu)}
    del on_cpu
    plan = FormPlan(entries, device, graph_buckets(batch))
    candidates: dict[str, Callable[[torch.nn.Module, FormPlan], torch.nn.Module]] = {"eager": (lambda g, p: g) if device.type != "cuda" else form("fp32")}
    candidates.update(forms)
    modules, trials = {}, []
    for name, build in candidates.items():
        trial = FormTrial(name)
        trials.append(trial)
        try:
            module = build(generator, plan)
            trial.drift = max(int(np.abs(_pixels(run, module) - reference[n]).max()) for n, run in ((batch, run_big), (1, run_one)))
        except Exception as exc:  # noqa: BLE001 - a form the model or device does not support is skipped
            trial.reason = f"not available: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.info("fast path %s is not available for this model: %s", name, exc)
            continue
        if trial.drift > 1:
            trial.reason = f"changes pixels by up to {trial.drift}/255"
            log.info("fast path %s changes pixels by up to %d/255; not used", name, trial.drift)
            continue
        modules[name], trial.seconds = module, _median_seconds(run_big, module, device)
    return modules, trials


def fastest_form(generator: torch.nn.Module, family: ModelFamily, params: dict, *, batch: int, device: torch.device) -> tuple[torch.nn.Module, str, dict[str, float]]:
    """The module to serve, its form's name, and the measured seconds per batch of every form that qualified."""
    modules, trials = measure_forms(generator, family, params, batch=batch, device=device)
    timings = {t.name: t.seconds for t in trials if t.qualified}
    if not timings:  # not even the eager form ran: serve the module as loaded, as without the fast path
        return generator, "eager", {}
    best = min(timings, key=timings.get)
    return modules[best], best, timings
