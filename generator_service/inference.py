"""The Open Inference Protocol v2 (KServe / Triton): a request decoded straight into the batcher's Job; gRPC here, REST in rest.py.

A model is a run, a version a step ("" = what the run's rollout policy routes to). What a model takes is its
kind's (generator_service/kinds/): an image model `seed` (UINT64 or INT64 [N], image i is what Generate gives
for seed[i], sample 0) or `latents` (FP32 [N, latent_dim]), optionally `class_labels` (INT32 or INT64 [N]) and
the parameter `truncation` in (0, 1]; a translation model `images` (UINT8 [N, H, W, C]) and the string parameter
`direction`. Output: `images`, UINT8 [N, H, W, C], raw unless the requested output says binary_data = false.

Every request is checked from its headers (names, datatypes, shapes, byte sizes) against the limits and the
model before any tensor is built; raw contents become arrays with numpy.frombuffer (no per-element lists), in a
worker thread when they are large.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import math
import time
from typing import Any

import grpc
import numpy as np

from ganworks import __version__
from ganworks.api import inference_pb2 as oip
from ganworks.api import inference_pb2_grpc as oip_grpc
from ganworks.heap import trim_heap
from ganworks.images import to_uint8
from generator_service.batcher import DeadlineExpiredError
from generator_service.jobs import Job
from generator_service.kinds import OIP_INPUTS, OIP_INPUTS_HELP, serving_kind
from generator_service.servicer import INLINE_PIXELS, GeneratorServicer
from generator_service.validation import RequestError

DTYPES = {"UINT64": np.dtype("<u8"), "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4"), "FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
TYPED_FIELDS = {"UINT64": "uint64_contents", "INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "UINT8": "uint_contents"}
OUTPUT = "images"
# A step is an int64; more digits than this cannot name one.
MAX_VERSION_DIGITS = 18
# Contents above this many bytes are read and checked in a worker thread, not on the event loop.
OFFLOAD_BYTES = 256 * 1024
# A refused request above this many bytes is freed by a garbage collection soon after (see release_refused).
LARGE_REQUEST_BYTES = 1 << 20
# The request parameters any kind reads (others are ignored, as Triton ignores unknown parameters).
PARAMETERS = ("truncation", "direction", "timeout")
MAX_TIMEOUT_MICROSECONDS = 3_600_000_000  # an hour


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def excerpt(value: Any, limit: int = 40) -> str:
    """A short, printable prefix of a caller's value for an error message: never the whole value, never control characters."""
    text = value if isinstance(value, str) else repr(value)
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit]).encode("ascii", "backslashreplace").decode("ascii")
    return f"'{shown}'" + (f"… ({len(text)} characters)" if len(text) > limit else "")


def _shape_text(shape) -> str:
    return str(list(shape)) if len(shape) <= 8 else f"a shape of {len(shape)} dimensions"


def parse_version(version: str) -> int:
    """A model_version as a step: "" is 0 (the routed default); anything but up to 18 ASCII digits is INVALID_ARGUMENT."""
    if not version:
        return 0
    if len(version) > MAX_VERSION_DIGITS or not (version.isascii() and version.isdigit()):
        raise _invalid(f"model_version must be empty (the routed default) or a published step number (up to {MAX_VERSION_DIGITS} digits), got {excerpt(version)}")
    return int(version)


@dataclasses.dataclass
class InputTensor:
    """One input as a request declares it; its contents stay bytes (or the typed field) until array() is called."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    typed: Any = None  # a sequence of numbers (protobuf repeated field or a flat JSON list)

    @property
    def nbytes(self) -> int:
        return len(self.raw) if self.raw is not None else math.prod(self.shape) * DTYPES[self.datatype].itemsize

    def first(self) -> int:
        """The first value (a seed routes the call by it); the header check has made sure there is one."""
        return int(self.array_head())

    def array_head(self):
        if self.raw is not None:
            return np.frombuffer(self.raw, dtype=DTYPES[self.datatype], count=1)[0]
        return self.typed[0]

    def array(self) -> np.ndarray:
        """The contents as an array of the declared shape: a view of the raw bytes, or typed values range-checked for the datatype."""
        dtype = DTYPES[self.datatype]
        if self.raw is not None:
            return np.frombuffer(self.raw, dtype=dtype).reshape(self.shape)
        if dtype.kind == "f":
            values = np.asarray(self.typed, dtype=np.float64)
        else:
            try:
                values = np.asarray(self.typed, dtype=np.int64)
            except OverflowError:  # above 2^63-1 (UINT64) or out of any range
                try:
                    values = np.asarray(self.typed, dtype=np.uint64)
                except OverflowError:
                    raise _invalid(f"input {self.name!r} holds a value outside {self.datatype}'s range") from None
            if values.size:
                low, high, info = int(values.min()), int(values.max()), np.iinfo(dtype)
                if low < info.min or high > info.max:
                    raise _invalid(f"input {self.name!r} holds {low if low < info.min else high}, outside {self.datatype}'s range {info.min} .. {info.max}")
        return values.astype(dtype).reshape(self.shape)


def check_inputs(tensors: list[InputTensor], max_samples: int) -> dict[str, InputTensor]:
    """Names, datatypes, shapes and sizes checked against what some kind takes and the server's limits; nothing is read yet."""
    checked: dict[str, InputTensor] = {}
    for t in tensors:
        if t.name not in OIP_INPUTS:
            raise _invalid(f"input {excerpt(t.name)} is unknown; this model takes {OIP_INPUTS_HELP}")
        if t.name in checked:
            raise _invalid(f"input {t.name!r} is given twice")
        datatypes, said = OIP_INPUTS[t.name]
        if t.datatype not in datatypes:
            said_type = t.datatype if t.datatype.isascii() and t.datatype.isalnum() and len(t.datatype) <= 16 else excerpt(t.datatype)
            raise _invalid(f"input {t.name!r} must be {' or '.join(datatypes)}, got {said_type or 'no datatype'}")
        if len(t.shape) != said.count(",") + 1 or any(d < 0 for d in t.shape):
            raise _invalid(f"input {t.name!r} must have shape {said}, got {_shape_text(t.shape)}")
        if not 1 <= t.shape[0] <= max_samples:
            raise _invalid(f"input {t.name!r} has N = {t.shape[0]}; give between 1 and this server's maximum of {max_samples} per call")
        count, itemsize = math.prod(t.shape), DTYPES[t.datatype].itemsize
        if t.raw is not None:
            if len(t.raw) != count * itemsize:
                raise _invalid(f"raw contents of input {t.name!r} have {len(t.raw)} bytes; {t.datatype} {_shape_text(t.shape)} needs {count * itemsize}")
        elif len(t.typed) != count:
            raise _invalid(f"input {t.name!r} has {len(t.typed)} values; {t.datatype} {_shape_text(t.shape)} needs {count}")
        checked[t.name] = t
    return checked


async def infer(g: GeneratorServicer, name: str, version: str, tensors: list[InputTensor], parameters: dict, remaining: float | None) -> Job:
    """Any protocol's inference call: checked, routed (by the first seed), turned into one Job by the model's kind, computed."""
    step = parse_version(version)
    check_model_name(g, name)
    timeout = request_timeout(parameters.pop("timeout", None))
    if timeout is not None:
        remaining = timeout if remaining is None else min(remaining, timeout)
    checked = check_inputs(tensors, g.settings.max_samples_per_request)
    seed = checked["seed"].first() if "seed" in checked else None
    model, _, deadline = await g.route_to(name, step, seed, remaining)
    build = functools.partial(serving_kind(model).infer_job, model, checked, parameters, max_samples=g.settings.max_samples_per_request,
                              max_message_bytes=g.max_message_bytes, deadline=deadline)
    job = build() if sum(t.nbytes for t in checked.values()) <= OFFLOAD_BYTES else await asyncio.get_running_loop().run_in_executor(None, build)
    if timeout is None:  # a gRPC deadline ends the call through the transport; the timeout parameter needs a timer
        (job,) = await g.compute([job])
        return job
    try:
        (job,) = await asyncio.wait_for(g.compute([job]), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise DeadlineExpiredError(f"the call's timeout of {timeout * 1e6:.0f} microseconds passed before its samples were ready; give it more time or ask for fewer") from None
    return job


def request_timeout(value) -> float | None:
    """The request parameter timeout (Triton's: microseconds, a positive integer) in seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_TIMEOUT_MICROSECONDS:
        raise _invalid(f"parameter timeout must be a whole number of microseconds from 1 to {MAX_TIMEOUT_MICROSECONDS}, got {excerpt(value)}")
    return value / 1e6


async def pixels(job: Job) -> np.ndarray:
    """The job's answer as UINT8 N×H×W×C (image batches make it so already; a translation's floats are converted here)."""
    if job.images.dtype == np.uint8:
        return job.images
    if job.images.size > INLINE_PIXELS:
        return await asyncio.get_running_loop().run_in_executor(None, to_uint8, job.images)
    return to_uint8(job.images)


class RefusedRequestReaper:
    """Frees refused large requests soon, at most one full garbage collection per `interval` seconds.

    A refused call leaves a reference cycle (gRPC's handler frames, the abort's traceback, our error) that holds
    the request until the cyclic collector runs, which may be many calls later: twenty refused 16 MB requests
    kept 250 MB resident. Collecting shortly after such a refusal, then trimming the heap (a 16 MB buffer may
    have come from it), returns that memory at once.
    """

    def __init__(self, interval: float = 1.0):
        self.interval, self._last, self._pending = interval, 0.0, False

    def refused(self, nbytes: int) -> None:
        if nbytes < LARGE_REQUEST_BYTES or self._pending:
            return
        self._pending = True
        delay = max(0.05, self._last + self.interval - time.monotonic())  # after the handler has sent its status
        asyncio.get_running_loop().call_later(delay, self._collect)

    def _collect(self) -> None:
        self._pending, self._last = False, time.monotonic()
        gc.collect()
        trim_heap()


def check_model_name(g: GeneratorServicer, name: str) -> None:
    if not name:
        raise _invalid(f"the model name is empty: set it to a run id; served models: {', '.join(g.manager.runs)}")
    if name not in g.manager.runs:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"model {excerpt(name)} is not served here; served models: {', '.join(g.manager.runs)}")


async def model_metadata(g: GeneratorServicer, name: str, version: str) -> dict:
    """ModelMetadata as the KServe v2 JSON form (the gRPC answer is built from it)."""
    step = parse_version(version)
    check_model_name(g, name)
    model = await g.manager.get(name, step)
    inputs, outputs = serving_kind(model).tensor_metadata(model)
    as_json = lambda triples: [{"name": n, "datatype": d, "shape": s} for n, d, s in triples]  # noqa: E731
    return {"name": model.run, "versions": [str(s) for s in g.manager.loaded_versions(model.run)], "platform": f"ganworks_{model.manifest.architecture}",
            "inputs": as_json(inputs), "outputs": as_json(outputs)}


async def model_ready(g: GeneratorServicer, name: str, version: str) -> bool:
    step = parse_version(version)
    if name not in g.manager.runs:
        return False
    return step in g.manager.loaded_versions(name) if step else g.manager.ready(name)


# ---- gRPC ---------------------------------------------------------------------------------------------------------


def grpc_inputs(request: oip.ModelInferRequest) -> list[InputTensor]:
    """The request's inputs with their raw buffer, or their typed field for the declared datatype."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _invalid(f"raw_input_contents has {len(raw)} buffers for {len(request.inputs)} inputs; send one per input, or typed contents for all")
    tensors = []
    for i, tensor in enumerate(request.inputs):
        field = TYPED_FIELDS.get(tensor.datatype)
        typed = getattr(tensor.contents, field) if field and not raw else ()
        tensors.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), raw=raw[i] if raw else None, typed=typed))
    return tensors


def grpc_parameters(parameters) -> dict:
    """The request parameters kinds read, as plain values."""
    values = {}
    for key in PARAMETERS:
        if key in parameters:
            choice = parameters[key].WhichOneof("parameter_choice")
            values[key] = getattr(parameters[key], choice) if choice else None
    return values


def wants_typed_output(names_and_binary: list[tuple[str, bool | None]]) -> bool:
    """True when the one output, `images`, is asked for with binary_data = false."""
    typed = False
    for name, binary in names_and_binary:
        if name != OUTPUT:
            raise _invalid(f"output {excerpt(name)} is unknown; this model has one output, {OUTPUT!r} (UINT8 [N, H, W, C])")
        if binary is not None:
            typed = not binary
    return typed


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """The inference.GRPCInferenceService calls, over the Generator servicer's router, batcher, limits and metrics."""

    def __init__(self, generator: GeneratorServicer, reaper: RefusedRequestReaper | None = None):
        self.generator = generator
        self.reaper = reaper or RefusedRequestReaper()

    async def ServerLive(self, request, context):
        async with self.generator.serving("ServerLive", context):
            return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        async with self.generator.serving("ServerReady", context):
            return oip.ServerReadyResponse(ready=self.generator.manager.ready())

    async def ModelReady(self, request, context):
        async with self.generator.serving("ModelReady", context):
            return oip.ModelReadyResponse(ready=await model_ready(self.generator, request.name, request.version))

    async def ServerMetadata(self, request, context):
        async with self.generator.serving("ServerMetadata", context):
            return oip.ServerMetadataResponse(name="ganworks", version=__version__, extensions=[])

    async def ModelMetadata(self, request, context):
        async with self.generator.serving("ModelMetadata", context):
            meta = await model_metadata(self.generator, request.name, request.version)
            tm = oip.ModelMetadataResponse.TensorMetadata
            return oip.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                             inputs=[tm(**t) for t in meta["inputs"]], outputs=[tm(**t) for t in meta["outputs"]])

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request, context)
        except BaseException:
            self.reaper.refused(sum(len(b) for b in request.raw_input_contents) or request.ByteSize())
            raise

    async def _infer(self, request, context):
        g = self.generator
        async with g.serving("ModelInfer", context):
            outputs = [(o.name, o.parameters["binary_data"].bool_param if "binary_data" in o.parameters else None) for o in request.outputs]
            typed = wants_typed_output(outputs)
            job = await infer(g, request.model_name, request.model_version, grpc_inputs(request), grpc_parameters(request.parameters), context.time_remaining())
            images = await pixels(job)
            output = oip.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="UINT8", shape=images.shape)
            response = oip.ModelInferResponse(model_name=job.model.run, model_version=str(job.model.step), id=request.id, outputs=[output])
            if typed:
                response.outputs[0].contents.uint_contents.extend(images.ravel().tolist())
            else:
                response.raw_output_contents.append(images.tobytes())
            return response
