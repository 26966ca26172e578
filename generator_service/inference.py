"""The Open Inference Protocol v2 (KServe / Triton gRPC) adapter: each ModelInfer becomes the same internal job as Generate.

A model is a run, a version a step ("" = what the run's rollout policy routes to). Inputs: `seed` (UINT64 or
INT64 [N], image i is what Generate gives for seed[i], sample 0) or `latents` (FP32 [N, latent_dim]), and
optionally `class_labels` (INT32 or INT64 [N]); the request parameter `truncation` (in (0, 1]). Output:
`images`, UINT8 [N, H, W, C], raw unless the requested output says binary_data = false. A translation model
(cyclegan) takes the input `images` (UINT8 [N, H, W, C]) and the string parameter `direction` instead: a Translate call.
"""

from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np

from ganworks import __version__
from ganworks.api import generator_pb2 as pb
from ganworks.api import inference_pb2 as oip
from ganworks.api import inference_pb2_grpc as oip_grpc
from ganworks.images import to_uint8
from generator_service.models import LoadedModel, UnknownModelError
from generator_service.servicer import INLINE_PIXELS, GeneratorServicer
from generator_service.validation import RequestError

DTYPES = {"UINT64": np.dtype("<u8"), "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4"), "FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
TYPED_FIELDS = {"UINT64": "uint64_contents", "INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "UINT8": "uint_contents"}
# name -> (accepted datatypes, shape as said in errors)
INPUTS = {"seed": (("UINT64", "INT64"), "[N]"), "latents": (("FP32",), "[N, latent_dim]"), "class_labels": (("INT32", "INT64"), "[N]"),
          "images": (("UINT8",), "[N, H, W, C]")}
INPUTS_HELP = ("seed (UINT64 or INT64, [N]) or latents (FP32, [N, latent_dim]), and optionally class_labels (INT32 or INT64, [N]); "
               "a translation model: images (UINT8, [N, H, W, C]) and the parameter direction (a_to_b or b_to_a)")
OUTPUT = "images"


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def parse_version(version: str) -> int:
    if not version:
        return 0
    if not version.isdigit():
        raise _invalid(f"model_version must be empty (the routed default) or a published step number, got {version!r}")
    return int(version)


def read_inputs(request: oip.ModelInferRequest) -> dict[str, np.ndarray]:
    """The input tensors by name, from raw_input_contents or typed contents; every mismatch says what was expected."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _invalid(f"raw_input_contents has {len(raw)} buffers for {len(request.inputs)} inputs; send one per input, or typed contents for all")
    tensors: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if name not in INPUTS:
            raise _invalid(f"input {name!r} is unknown; this model takes {INPUTS_HELP}")
        if name in tensors:
            raise _invalid(f"input {name!r} is given twice")
        datatypes, said = INPUTS[name]
        if datatype not in datatypes:
            raise _invalid(f"input {name!r} must be {' or '.join(datatypes)}, got {datatype or 'no datatype'}")
        if len(shape) != said.count(",") + 1 or any(d < 0 for d in shape):
            raise _invalid(f"input {name!r} must have shape {said}, got {shape}")
        count, dtype = math.prod(shape), DTYPES[datatype]
        if raw:
            if len(raw[i]) != count * dtype.itemsize:
                raise _invalid(f"raw contents of input {name!r} have {len(raw[i])} bytes; {datatype} {shape} needs {count * dtype.itemsize}")
            values = np.frombuffer(raw[i], dtype=dtype)
        else:
            typed = getattr(tensor.contents, TYPED_FIELDS[datatype])
            if len(typed) != count:
                raise _invalid(f"input {name!r} has {len(typed)} values in contents.{TYPED_FIELDS[datatype]}; shape {shape} needs {count}")
            values = np.asarray(typed, dtype=dtype)
        tensors[name] = values.reshape(shape)
    return tensors


def to_generate_request(request: oip.ModelInferRequest, tensors: dict[str, np.ndarray]) -> pb.GenerateRequest:
    """The Generate request the inference call asks for (seed = the first seed, which also routes the call)."""
    seeds, latents, labels = tensors.get("seed"), tensors.get("latents"), tensors.get("class_labels")
    if (seeds is None) == (latents is None):
        raise _invalid(f"give exactly one of the inputs seed and latents; this model takes {INPUTS_HELP}")
    n = len(seeds) if seeds is not None else latents.shape[0]
    if labels is not None and len(labels) != n:
        raise _invalid(f"input class_labels must have shape [{n}] (one per image), got [{len(labels)}]")
    if seeds is not None and seeds.dtype.kind == "i" and (seeds < 0).any():
        raise _invalid(f"input seed holds a negative value ({int(seeds.min())}); seeds are 0 .. 2^64-1")
    if labels is not None and ((labels < 0) | (labels >= 2**31)).any():
        raise _invalid("input class_labels holds a label below 0 or above 2^31-1; use the model's classes 0 .. num_classes-1")
    generate = pb.GenerateRequest(model=request.model_name, version=parse_version(request.model_version), num_samples=n, output_format=pb.OUTPUT_FORMAT_UINT8)
    if seeds is not None:
        generate.seed = int(seeds[0])
    if latents is not None:
        generate.latents.extend(latents.ravel().tolist())
    if labels is not None:
        generate.class_labels.extend(labels.tolist())
    if "truncation" in request.parameters:
        param = request.parameters["truncation"]
        choice = param.WhichOneof("parameter_choice")
        if choice not in ("double_param", "int64_param", "uint64_param"):
            raise _invalid(f"parameter truncation must be a number in (0, 1], got a {choice or 'empty'} parameter")
        generate.truncation = float(getattr(param, choice))
    return generate


def wants_typed_output(request: oip.ModelInferRequest) -> bool:
    typed = False
    for output in request.outputs:
        if output.name != OUTPUT:
            raise _invalid(f"output {output.name!r} is unknown; this model has one output, {OUTPUT!r} (UINT8 [N, H, W, C])")
        if "binary_data" in output.parameters:
            typed = not output.parameters["binary_data"].bool_param
    return typed


def to_translate_request(request: oip.ModelInferRequest, tensors: dict[str, np.ndarray]) -> pb.TranslateRequest:
    """The Translate call an inference request with an `images` input asks for (raw uint8 in and out)."""
    images = tensors["images"]
    if len(tensors) > 1:
        raise _invalid(f"a translation call takes the input images alone, got also {sorted(set(tensors) - {'images'})}")
    param = request.parameters["direction"] if "direction" in request.parameters else None
    direction = param.string_param if param is not None and param.WhichOneof("parameter_choice") == "string_param" else ""
    if direction not in ("a_to_b", "b_to_a"):
        raise _invalid(f"set the string parameter direction to a_to_b or b_to_a, got {direction or 'none'}")
    translate = pb.TranslateRequest(model=request.model_name, version=parse_version(request.model_version), input_format=pb.OUTPUT_FORMAT_UINT8,
                                    shape=list(images.shape[1:]), output_format=pb.OUTPUT_FORMAT_UINT8,
                                    direction=pb.DIRECTION_A_TO_B if direction == "a_to_b" else pb.DIRECTION_B_TO_A)
    translate.images.extend(np.ascontiguousarray(image).tobytes() for image in images)
    return translate


def tensor_metadata(model: LoadedModel) -> tuple[list, list]:
    m, tm = model.manifest, oip.ModelMetadataResponse.TensorMetadata
    if model.family.translation:
        images = tm(name=OUTPUT, datatype="UINT8", shape=[-1, m.image_size, m.image_size, m.channels])
        return [images], [images]
    inputs = [tm(name="seed", datatype="UINT64", shape=[-1]), tm(name="latents", datatype="FP32", shape=[-1, m.latent_dim])]
    if m.num_classes:
        inputs.append(tm(name="class_labels", datatype="INT64", shape=[-1]))
    return inputs, [tm(name=OUTPUT, datatype="UINT8", shape=[-1, m.image_size, m.image_size, m.channels])]


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """The inference.GRPCInferenceService calls, over the Generator servicer's router, batcher, limits and metrics."""

    def __init__(self, generator: GeneratorServicer):
        self.generator = generator

    async def ServerLive(self, request, context):
        async with self.generator.serving("ServerLive", context):
            return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        async with self.generator.serving("ServerReady", context):
            return oip.ServerReadyResponse(ready=self.generator.manager.ready())

    async def ModelReady(self, request, context):
        async with self.generator.serving("ModelReady", context):
            manager, step = self.generator.manager, parse_version(request.version)
            if request.name not in manager.runs:
                return oip.ModelReadyResponse(ready=False)
            return oip.ModelReadyResponse(ready=step in manager.loaded_versions(request.name) if step else manager.ready(request.name))

    async def ServerMetadata(self, request, context):
        async with self.generator.serving("ServerMetadata", context):
            return oip.ServerMetadataResponse(name="ganworks", version=__version__, extensions=[])

    async def ModelMetadata(self, request, context):
        async with self.generator.serving("ModelMetadata", context):
            if not request.name:
                raise UnknownModelError(f"name is empty: set it to a run id; served models: {', '.join(self.generator.manager.runs)}")
            model = await self.generator.manager.get(request.name, parse_version(request.version))
            inputs, outputs = tensor_metadata(model)
            versions = [str(s) for s in self.generator.manager.loaded_versions(model.run)]
            return oip.ModelMetadataResponse(name=model.run, versions=versions, platform=f"ganworks_{model.manifest.architecture}", inputs=inputs, outputs=outputs)

    async def ModelInfer(self, request, context):
        g = self.generator
        async with g.serving("ModelInfer", context):
            tensors = read_inputs(request)
            typed = wants_typed_output(request)
            if "images" in tensors:  # a translation model
                job, _ = await g.translated(to_translate_request(request, tensors), context)
                return _infer_response(request, job.model, job.images, typed)
            latents = tensors.get("latents")

            def check_latents(model: LoadedModel) -> None:
                if latents is not None and latents.shape[1] != model.manifest.latent_dim:
                    raise _invalid(f"input 'latents' must be FP32 [N, {model.manifest.latent_dim}] for model {model.run!r} (version {model.step}), got {list(latents.shape)}")

            model, parsed, seed, deadline = await g.prepare(to_generate_request(request, tensors), context, g.max_message_bytes, check_latents)
            if "seed" in tensors:  # image i is sample 0 of seed i, as Generate(seed=seed[i]) gives it
                jobs = [g.job(model, parsed, int(s), deadline, i, 1, first_index=0) for i, s in enumerate(tensors["seed"])]
            else:
                jobs = [g.job(model, parsed, seed, deadline, 0, parsed.num_samples)]
            jobs = await g.compute(jobs)
            images = jobs[0].images if len(jobs) == 1 else np.concatenate([job.images for job in jobs])
            if images.size > INLINE_PIXELS:
                images = await asyncio.get_running_loop().run_in_executor(None, to_uint8, images)
            return _infer_response(request, model, images, typed)


def _infer_response(request: oip.ModelInferRequest, model: LoadedModel, images: np.ndarray, typed: bool) -> oip.ModelInferResponse:
    """The `images` output, UINT8 [N, H, W, C], raw or typed; images are [-1, 1] floats N×C×H×W or already uint8 pixels."""
    pixels = images if images.dtype == np.uint8 else to_uint8(images)
    output = oip.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="UINT8", shape=list(pixels.shape))
    response = oip.ModelInferResponse(model_name=model.run, model_version=str(model.step), id=request.id, outputs=[output])
    if typed:
        response.outputs[0].contents.uint_contents.extend(pixels.ravel().tolist())
    else:
        response.raw_output_contents.append(pixels.tobytes())
    return response
