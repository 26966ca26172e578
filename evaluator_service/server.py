"""EvaluatorServer: the grpc.aio Evaluator service (TLS, bearer token; health and reflection open), its jobs, /metrics and continuous mode."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from evaluator_service.continuous import ContinuousEvaluator
from evaluator_service.errors import InvalidRequestError, NotFoundError
from evaluator_service.evaluation import EvaluationRequest, close_mlflow_runs
from evaluator_service.features import ExtractorCache
from evaluator_service.jobs import Job, JobManager, QueueFullError
from evaluator_service.exporter import EvaluatorMetrics
from evaluator_service.sampler import GeneratorTarget
from evaluator_service.settings import EvaluatorSettings
from ganworks.api import evaluator_pb2 as pb
from ganworks.errors import ConfigError, GanworksError, StoreError, shown
from ganworks.grpcauth import HealthPort, interceptors, listen
from ganworks.rpc import Drain, DrainOnSignal, add_servicer
from ganworks.telemetry import register_secrets, serve_metrics, set_torch_threads

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Evaluator"]
STATES = {"PENDING": pb.EVALUATION_STATE_PENDING, "RUNNING": pb.EVALUATION_STATE_RUNNING, "SUCCEEDED": pb.EVALUATION_STATE_SUCCEEDED, "FAILED": pb.EVALUATION_STATE_FAILED}


def status_of(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, QueueFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, (InvalidRequestError, ConfigError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, StoreError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.FAILED_PRECONDITION


# A path or file URL left in a message after the store's own URL was taken out: a location on the server.
_SERVER_PATH = re.compile(r"(?:file://)?(?<![\w.:/])/(?:[\w.@+-]+/)*[\w.@+-]+/?")


MAX_MESSAGE_CHARS = 800


def public_message(message: str, store) -> str:
    """A message safe for callers: store locations become store keys, other server paths are hidden (logs keep them)."""
    base = store.url.rstrip("/")
    message = message.replace(base + "/", "").replace(base, "<store>")
    message = _SERVER_PATH.sub("<path on the server>", message)
    # A last guard: whatever a message quotes, a caller never gets more than a short page of it.
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "… (cut; the evaluator's log has the rest)"


def to_proto(job: Job, store) -> pb.Evaluation:
    return pb.Evaluation(
        id=job.id, run=job.run, version=job.step, state=STATES[job.state], progress=job.progress, phase=job.phase,
        metrics=job.metrics, metric_names=job.metric_names, extractor=job.extractor, resize_mode=job.resize_mode, num_samples=job.num_samples,
        error=public_message(job.error, store) if job.error else "", warnings=job.warnings, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        report_url=job.report_url, dataset_id=job.dataset_id,
    )


class EvaluatorServicer:
    def __init__(self, jobs: JobManager):
        self.jobs = jobs

    async def Evaluate(self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext) -> pb.Evaluation:
        if not request.run:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "run is empty: set it to the run id to evaluate")
        if request.num_samples < 0 or request.version < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"num_samples and version must be >= 0, got {request.num_samples} and {request.version}")
        evaluation = EvaluationRequest(
            run=request.run, version=request.version, num_samples=request.num_samples, metrics=list(request.metrics),
            extractor=request.extractor, resize_mode=request.resize_mode, seed=request.seed if request.HasField("seed") else None,
            params=dict(request.params),
        )
        try:
            job = await self.jobs.submit(evaluation)
        except GanworksError as exc:
            log.info("refused evaluation of %s: %s", request.run, exc)
            await context.abort(status_of(exc), public_message(str(exc), self.jobs.store))
        except Exception:  # noqa: BLE001 - a bug must still answer with a status, and its details stay in the log
            ref = uuid.uuid4().hex[:8]
            log.exception("evaluation request failed unexpectedly (ref %s)", ref)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref}); the evaluator's log has the details")
        return to_proto(job, self.jobs.store)

    def _job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def GetEvaluation(self, request: pb.GetEvaluationRequest, context: grpc.aio.ServicerContext) -> pb.Evaluation:
        job = self._job(request.id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no evaluation {shown(request.id)} on this server (ListEvaluations shows the known ones)")
        return to_proto(job, self.jobs.store)

    async def WatchEvaluation(self, request: pb.GetEvaluationRequest, context: grpc.aio.ServicerContext):
        job = self._job(request.id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no evaluation {shown(request.id)} on this server (ListEvaluations shows the known ones)")
        while True:
            # Snapshot state and event together: the job may change while the message is being sent.
            changed, done, message = job.changed, job.done, to_proto(job, self.jobs.store)
            yield message
            if done:
                return
            await changed.wait()

    async def ListEvaluations(self, request: pb.ListEvaluationsRequest, context: grpc.aio.ServicerContext) -> pb.ListEvaluationsResponse:
        jobs = self.jobs.listed(request.run)
        if request.limit > 0:
            jobs = jobs[: request.limit]
        return pb.ListEvaluationsResponse(evaluations=[to_proto(j, self.jobs.store) for j in jobs])


class EvaluatorServer(DrainOnSignal):
    """One evaluator instance: its own gRPC server, job manager, metrics registry and (optionally) continuous loop."""

    def __init__(self, settings: EvaluatorSettings, store, registry: CollectorRegistry | None = None):
        self.settings, self.store = settings, store
        self.metrics = EvaluatorMetrics(registry)
        self.extractors = ExtractorCache(store, settings.inception_weights, settings.inception_sha256, settings.auto_fit_extractor, settings.device,
                                         settings.max_cached_extractors, precision=settings.feature_precision)
        self.port = 0
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self._http = None
        self.continuous: ContinuousEvaluator | None = None
        self._stopped = asyncio.Event()
        self.drain = Drain()

    async def start(self) -> None:
        s = self.settings
        register_secrets([s.generator_auth_token])
        GeneratorTarget.from_settings(s)  # an unreadable CA file fails here, not at the first evaluation
        if s.torch_threads:
            set_torch_threads(s.torch_threads)
        self.jobs = JobManager(self.store, s, self.metrics, self.extractors)
        self.metrics.watch_sizes(jobs=self.jobs.jobs, datasets=self.jobs.datasets, extractors=self.extractors.loaded)
        await self.jobs.start()
        register_secrets([s.auth_token])
        self.server = grpc.aio.server(interceptors=interceptors(s.auth_token))
        add_servicer(self.server, EvaluatorServicer(self.jobs), SERVICE, self.drain)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([SERVICE.full_name, reflection.SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], self.server)
        self.port = listen(self.server, s.host, s.port, s.tls_cert, s.tls_key)
        self._health_port = HealthPort(self.health)
        self.health_port = await self._health_port.start(s.host, s.health_port)
        await self.server.start()
        for name in ("", SERVICE.full_name):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if s.metrics_port >= 0:
            self._http, _ = serve_metrics(s.metrics_port, addr=s.host, registry=self.metrics.registry)
            self.metrics_port = int(self._http.server_port)
        if s.continuous:
            if not s.runs:
                raise ConfigError("continuous mode needs the runs to watch: --runs R1,R2 (env GANWORKS_EVALUATOR_RUNS)")
            self.continuous = ContinuousEvaluator(self.store, s, self.jobs)
            self.continuous.start()
        log.info("evaluator serving on %s:%d (TLS %s, auth %s), /metrics on port %s, generator %s%s", s.host, self.port, "on" if s.tls_cert else "off",
                 "on" if s.auth_token else "off", self.metrics_port, s.generator, f", continuous over {','.join(s.runs)}" if s.continuous else "")

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, new calls UNAVAILABLE, calls in flight (watches included) get `grace` seconds."""
        grace = self.settings.grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        log.info("draining: %d calls in flight, up to %.1fs for them to finish", self.drain.inflight, grace)
        self.drain.draining = True  # from here a new call is refused with UNAVAILABLE
        if self.continuous is not None:
            await self.continuous.stop()
        await self.drain.stop_server(self.server, self.health, deadline)
        await self._health_port.stop()
        await self.jobs.stop()
        if not await asyncio.to_thread(close_mlflow_runs, grace):
            log.warning("MLflow tracking was still sending when the evaluator stopped; the rest is dropped")
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self._stopped.set()

    async def wait_for_termination(self) -> None:
        await self._stopped.wait()
