"""The Generator gRPC methods: validate, resolve the model, queue the samples, answer in the asked format."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time

import grpc
import numpy as np

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc as pb_grpc
from ganworks.errors import CheckpointError, StoreError
from ganworks.rpc import REFUSED_WHILE_DRAINING, Drain, public_message
from ganworks.tabular import records
from generator_service.batcher import DeadlineExpiredError, DynamicBatcher, QueueFullError
from generator_service.jobs import Job
from generator_service.kinds import serving_kind
from generator_service.encode import PngEncoder, bytes_per_image, raw_images
from generator_service.metrics import GeneratorMetrics
from generator_service.models import LoadedModel, ModelManager, ModelNotReadyError, RefusedVersionError, ReloadLimitError, UnknownModelError, UnknownVersionError
from generator_service.rollout import RolloutRouter
from generator_service.settings import GeneratorSettings
from generator_service.translate import QUEUE_KINDS, StopWhen, TranslateBudget, check_translate_basics, check_translate_model, decode_images
from generator_service.validation import ParsedRequest, RequestError, check_basics, check_for_model, check_records_basics, check_records_for_model

log = logging.getLogger(__name__)
# Raw answers up to this many values are converted on the event loop (a few tens of microseconds).
INLINE_PIXELS = 64 * 64 * 3 * 4
# The batcher's queue kind of GenerateRecords jobs: rows are decoded and formatted after the batch, so every
# format shares one queue per model version.
TABULAR_OUTPUT = -1

_ERROR_CODES = (
    (UnknownModelError, grpc.StatusCode.NOT_FOUND),
    (UnknownVersionError, grpc.StatusCode.NOT_FOUND),
    (ModelNotReadyError, grpc.StatusCode.UNAVAILABLE),
    (RefusedVersionError, grpc.StatusCode.FAILED_PRECONDITION),
    (ReloadLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExpiredError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (CheckpointError, grpc.StatusCode.FAILED_PRECONDITION),
)


class GeneratorServicer(pb_grpc.GeneratorServicer):
    def __init__(self, settings: GeneratorSettings, manager: ModelManager, router: RolloutRouter, batcher: DynamicBatcher, encoder: PngEncoder, metrics: GeneratorMetrics):
        self.settings, self.manager, self.router, self.batcher, self.encoder, self.metrics = settings, manager, router, batcher, encoder, metrics
        self.max_message_bytes = settings.max_message_mb * 2**20
        self.drain = Drain()  # the server's stop turns it to draining and waits for it to be idle

    # -- bookkeeping shared by every method of every protocol (the inference servicer uses it too) ---------

    @contextlib.asynccontextmanager
    async def serving(self, method: str, context: grpc.aio.ServicerContext):
        started, code, counted = time.perf_counter(), grpc.StatusCode.OK, False

        def count(final: grpc.StatusCode) -> None:
            # Counted before the status is sent: a client that reads /metrics after its error sees its call there.
            nonlocal counted
            if not counted:
                counted = True
                self.metrics.count_call(method, final.name, time.perf_counter() - started)
                self.metrics.inflight.dec()

        self.metrics.inflight.inc()
        try:
            async with self.drain.counted():
                if self.drain.draining:
                    raise RequestError(grpc.StatusCode.UNAVAILABLE, REFUSED_WHILE_DRAINING)
                yield
        except RequestError as exc:
            code = exc.code
            count(code)
            await context.abort(exc.code, exc.message)
        except asyncio.CancelledError:
            remaining = context.time_remaining()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001 - typed errors become their status, the rest INTERNAL
            code = next((mapped for kind, mapped in _ERROR_CODES if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
            count(code)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
                await context.abort(code, f"internal error in {method}; the server log has the details")
            await context.abort(code, public_message(str(exc), self.manager.store.url))  # store keys, never the server's store URL or paths
        finally:
            count(code)

    async def route(self, request, context) -> tuple[LoadedModel, int, float | None]:
        """The model version a native call goes to (routed by its seed), the seed in effect and the call's deadline."""
        # Translate has no seed: its calls are routed (under a canary policy) by a random draw.
        seed = request.seed if "seed" in request.DESCRIPTOR.fields_by_name and request.HasField("seed") else None
        return await self.route_to(request.model, request.version, seed, context.time_remaining())

    async def route_to(self, name: str, version: int, seed: int | None, remaining: float | None) -> tuple[LoadedModel, int, float | None]:
        """Any protocol's routing: the model version for (name, version, seed), the seed in effect (drawn when None), the deadline."""
        if remaining is not None and remaining <= 0:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline had passed when it arrived; give it more time")
        deadline = time.monotonic() + remaining if remaining is not None else None
        seed = secrets.randbits(63) if seed is None else seed
        return await self.router.resolve(name, version, seed), seed, deadline

    async def prepare(self, request: pb.GenerateRequest, context, max_message_bytes: int | None, call: str) -> tuple[LoadedModel, ParsedRequest, int, float | None]:
        """Validates a request, routes it to a model version (by its seed) and checks it against that model."""
        check_basics(request, self.settings.max_samples_per_request)
        model, seed, deadline = await self.route(request, context)
        serving_kind(model).require(model, call)
        parsed = check_for_model(request, model, max_message_bytes)
        return model, parsed, seed, deadline

    def job(self, model, parsed: ParsedRequest, seed: int, deadline, start: int, count: int, first_index: int | None = None) -> Job:
        """The internal job for samples start .. start+count-1 of a parsed request (first_index: their index for the seed)."""
        return Job(
            model=model,
            num_samples=count,
            seed=seed,
            output_kind=parsed.output_format,
            first_index=start if first_index is None else first_index,
            labels=None if parsed.labels is None else parsed.labels[start : start + count],
            latents=None if parsed.latents is None else parsed.latents[start : start + count],
            truncation=parsed.truncation,
            deadline=deadline,
        )

    async def compute(self, jobs: list[Job]) -> list[Job]:
        """Queues jobs through the batcher and waits for all of them."""
        self.batcher.submit(jobs)
        try:
            for job in jobs:
                await job.future
        finally:
            _forget(jobs)
        return jobs

    async def _response(self, job: Job, parsed: ParsedRequest, seed: int) -> pb.GenerateResponse:
        model = job.model
        if parsed.output_format == pb.OUTPUT_FORMAT_PNG:
            data = await self.encoder.encode(job.images)
        elif job.images.dtype == np.uint8:  # the batch made the pixels (kinds/image.py)
            data = [image.tobytes() for image in job.images]
        elif job.images.size <= INLINE_PIXELS:
            data = raw_images(job.images, parsed.output_format)  # cheaper than a hop to a thread
        else:
            data = await asyncio.get_running_loop().run_in_executor(None, raw_images, job.images, parsed.output_format)
        labels = job.used_labels if model.manifest.num_classes else np.full(job.num_samples, -1)
        return pb.GenerateResponse(
            model=model.run,
            version=model.step,
            output_format=parsed.output_format,
            shape=[model.manifest.image_size, model.manifest.image_size, model.manifest.channels],
            images=[pb.Image(data=d, class_label=int(label), index=job.first_index + i) for i, (d, label) in enumerate(zip(data, labels))],
            seed=seed,
        )

    # -- the methods --------------------------------------------------------------------------------------

    async def Generate(self, request, context):
        async with self.serving("Generate", context):
            model, parsed, seed, deadline = await self.prepare(request, context, self.max_message_bytes, "Generate")
            (job,) = await self.compute([self.job(model, parsed, seed, deadline, 0, parsed.num_samples)])
            return await self._response(job, parsed, seed)

    async def GenerateStream(self, request, context):
        async with self.serving("GenerateStream", context):
            model, parsed, seed, deadline = await self.prepare(request, context, None, "GenerateStream")
            m = model.manifest
            fits = max(1, self.max_message_bytes // bytes_per_image(parsed.output_format, m.image_size, m.channels))
            per_message = min(request.max_images_per_message or self.settings.stream_images_per_message, fits)
            jobs = [self.job(model, parsed, seed, deadline, start, min(per_message, parsed.num_samples - start)) for start in range(0, parsed.num_samples, per_message)]
            self.batcher.submit(jobs)
            try:
                for job in jobs:
                    await job.future
                    yield await self._response(job, parsed, seed)
            finally:
                _forget(jobs)

    async def GenerateRecords(self, request, context):
        async with self.serving("GenerateRecords", context):
            fmt = check_records_basics(request, self.settings.max_samples_per_request)
            model, seed, deadline = await self.route(request, context)
            serving_kind(model).require(model, "GenerateRecords")
            condition = check_records_for_model(request, model, self.max_message_bytes)
            job = Job(model=model, num_samples=request.num_rows, seed=seed, output_kind=TABULAR_OUTPUT, condition=condition, deadline=deadline)
            (job,) = await self.compute([job])
            transformer = model.tabular.transformer
            data = await asyncio.get_running_loop().run_in_executor(None, lambda: records.encode(transformer.inverse_transform(job.images), transformer.schema, fmt))
            return pb.GenerateRecordsResponse(model=model.run, version=model.step, format=pb.RECORD_FORMAT_CSV if fmt == records.CSV else pb.RECORD_FORMAT_ARROW,
                                              data=data, num_rows=job.num_samples, columns=transformer.schema.names, seed=seed)

    async def translated(self, request: pb.TranslateRequest, context) -> tuple[Job, int]:
        """A Translate request checked, decoded, batched and computed; the job and output format (OIP images go through kinds/translation.py)."""
        direction = check_translate_basics(request, self.settings.max_samples_per_request, TranslateBudget.of(self.settings))
        model, _, deadline = await self.route(request, context)
        serving_kind(model).require(model, "Translate")
        fmt = check_translate_model(model, request, self.max_message_bytes)
        m = model.manifest
        stop = StopWhen(deadline)  # decoding ends when the call does
        context.add_done_callback(lambda _: stop.cancelled.set())
        inputs = await asyncio.get_running_loop().run_in_executor(None, decode_images, request, m.image_size, m.channels, m.run, stop)
        job = Job(model=model, num_samples=len(inputs), seed=0, output_kind=QUEUE_KINDS[direction], inputs=inputs, direction=direction, deadline=deadline)
        (job,) = await self.compute([job])
        return job, fmt

    async def Translate(self, request, context):
        async with self.serving("Translate", context):
            job, fmt = await self.translated(request, context)
            model, m = job.model, job.model.manifest
            if fmt == pb.OUTPUT_FORMAT_PNG:
                data = await self.encoder.encode(job.images)
            else:
                data = await asyncio.get_running_loop().run_in_executor(None, raw_images, job.images, fmt)
            return pb.TranslateResponse(model=model.run, version=model.step, direction=request.direction, output_format=fmt, shape=[m.image_size, m.image_size, m.channels],
                                        images=[pb.Image(data=d, class_label=-1, index=i) for i, d in enumerate(data)])

    async def ListModels(self, request, context):
        async with self.serving("ListModels", context):
            models = [self._info(self.manager.current(run)) for run in self.manager.runs if self.manager.current(run) is not None]
            return pb.ListModelsResponse(models=models)

    async def DescribeModel(self, request, context):
        async with self.serving("DescribeModel", context):
            if not request.model:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "model is empty: set it to a run id (ListModels shows the served models)")
            if request.version < 0:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"version must be 0 (newest) or a published step, got {request.version}")
            route = self.router.route(request.model) if request.version == 0 else None
            # Version 0 is "what a call without a version gets": under a pinned or canary policy that is the stable
            # step the policy serves, not LATEST.
            return self._info(route.stable if route is not None else await self.manager.get(request.model, request.version))

    def _info(self, model: LoadedModel) -> pb.ModelInfo:
        m = model.manifest
        return pb.ModelInfo(
            model=m.run,
            version=m.step,
            architecture=m.architecture,
            architecture_params_json=json.dumps(m.architecture_params, sort_keys=True),
            image_size=m.image_size,
            channels=m.channels,
            num_classes=m.num_classes,
            latent_dim=m.latent_dim,
            images_seen=m.images_seen,
            sha256=m.sha256,
            created_at=m.created_at,
            metrics={k: float(v) for k, v in m.metrics.items()},
            loaded_versions=self.manager.loaded_versions(m.run),
            dataset_id=m.dataset_id,
            columns_json=serving_kind(model).columns_json(model),
            max_samples_per_request=self.settings.max_samples_per_request,
        )


def _forget(jobs: list[Job]) -> None:
    """A caller that went away leaves nothing behind in the queue, and no unretrieved exception."""
    for job in jobs:
        if not job.future.done():
            job.future.cancel()
        elif not job.future.cancelled():
            job.future.exception()
