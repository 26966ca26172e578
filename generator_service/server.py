"""GeneratorServer: builds the grpc.aio server (Generator, health, reflection, TLS, auth) and drains it on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from ganworks.api import generator_pb2 as pb
from ganworks.api import inference_pb2 as oip
from ganworks.errors import ConfigError
from ganworks.grpcauth import HealthPort, interceptors, listen
from ganworks.rpc import DrainOnSignal, add_servicer
from ganworks.telemetry import pick_device, register_secrets, serve_metrics, set_torch_threads
from generator_service.batcher import DynamicBatcher
from generator_service.encode import PngEncoder
from generator_service.inference import InferenceServicer, RefusedRequestReaper
from generator_service.kinds import attach, serving_kind
from generator_service.metrics import GeneratorMetrics
from generator_service.models import LoadedModel, ModelManager
from generator_service.rollout import RolloutRouter
from generator_service.rest import RestEndpoint
from generator_service.servicer import GeneratorServicer
from generator_service.settings import GeneratorSettings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Generator"].full_name
INFERENCE_SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# Health names: "" and the service name answer readiness (every configured model loaded and warmed up),
# "<service>/<model>" one model's readiness, "liveness" only that the process serves at all.
LIVENESS = "liveness"
MAX_REQUEST_BYTES = 16 * 2**20


def grpc_options(settings: GeneratorSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_mb * 2**20),
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        # Clients reconnect now and then, so a Kubernetes Service spreads them over new replicas.
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.grace_seconds * 1000)),
        ("grpc.so_reuseport", 0),
    ]


class GeneratorServer(DrainOnSignal):
    """One generator service instance: its own gRPC server, batcher, models and metrics registry."""

    def __init__(self, settings: GeneratorSettings, store, registry: CollectorRegistry | None = None):
        if not settings.runs:
            raise ConfigError("no runs to serve: pass --runs R1,R2 (env GANWORKS_GENERATOR_RUNS)")
        self.settings, self.store = settings, store
        self.metrics = GeneratorMetrics(registry)
        self.device = pick_device(settings.device)
        self.port = 0
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self.rest_port: int | None = None
        self.rest: RestEndpoint | None = None
        self._http = None
        self._ready_changed = asyncio.Event()

    async def start(self) -> None:
        """Binds the port and starts serving (not ready yet); snapshots load in the background."""
        s = self.settings
        if s.torch_threads:
            set_torch_threads(s.torch_threads)
        register_secrets([s.auth_token])
        self.batcher = DynamicBatcher(max_batch_size=s.max_batch_size, max_queue_delay=s.max_queue_delay_ms / 1000, max_queue_size=s.max_queue_size, metrics=self.metrics)
        self.encoder = PngEncoder(s.png_threads)
        self.manager = ModelManager(
            self.store, s.runs, device=self.device, keep_versions=s.keep_versions, poll_seconds=s.poll_seconds,
            metrics=self.metrics, warm_up=self._warm_up, attach=attach, on_change=self._readiness_changed, max_reloads_per_minute=s.max_reloads_per_minute,
        )
        self.router = RolloutRouter(self.store, self.manager, self.metrics, poll_seconds=s.poll_seconds)
        self.servicer = GeneratorServicer(s, self.manager, self.router, self.batcher, self.encoder, self.metrics)
        refused = lambda method: self.metrics.requests.labels(method, "UNAUTHENTICATED").inc()  # noqa: E731
        self.server = grpc.aio.server(interceptors=interceptors(s.auth_token, refused), options=grpc_options(s))
        # Not the generated add_…_to_server: a request that does not parse must be INVALID_ARGUMENT, not UNKNOWN.
        add_servicer(self.server, self.servicer, pb.DESCRIPTOR.services_by_name["Generator"])
        # The Open Inference Protocol on the same port, over the same servicer's router, batcher, limits and metrics.
        reaper = RefusedRequestReaper()
        add_servicer(self.server, InferenceServicer(self.servicer, reaper), INFERENCE_SERVICE)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([SERVICE_NAME, INFERENCE_SERVICE.full_name, reflection.SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], self.server)
        self.port = listen(self.server, s.host, s.port, s.tls_cert, s.tls_key)
        self._health_port = HealthPort(self.health)
        self.health_port = await self._health_port.start(s.host, s.health_port)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self._readiness()
        await self.server.start()
        if s.metrics_port >= 0:
            try:
                self._http, _ = serve_metrics(s.metrics_port, addr=s.host, registry=self.metrics.registry)
            except OSError as exc:
                await self.server.stop(0)
                raise ConfigError(f"cannot serve /metrics on {s.host}:{s.metrics_port}: {exc.strerror} (--metrics-port; 0 picks a free port, -1 turns it off)") from None
            self.metrics_port = int(self._http.server_port)
        if s.rest_port >= 0:
            self.rest = RestEndpoint(self.servicer, MAX_REQUEST_BYTES, s.auth_token, reaper)
            try:
                self.rest_port = await self.rest.start(s.host, s.rest_port, s.tls_cert, s.tls_key)
            except OSError as exc:
                await self.server.stop(0)
                raise ConfigError(f"cannot serve the REST endpoint on {s.host}:{s.rest_port}: {exc.strerror} (--rest-port; 0 picks a free port, -1 turns it off)") from None
        log.info("generator serving %s on %s:%d (TLS %s, auth %s), /metrics on port %s, REST on port %s", ",".join(s.runs), s.host, self.port,
                 "on" if s.tls_cert else "off", "on" if s.auth_token else "off", self.metrics_port, self.rest_port)
        self._loader = asyncio.create_task(self._load(), name="initial-load")

    async def _load(self) -> None:
        # The rollout policy first, so a pinned step is in place before LATEST makes the server ready.
        await self.router.start()
        await self.manager.start()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.manager.ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"models {self.settings.runs} not loaded within {timeout}s")
            self._ready_changed.clear()
            try:
                await asyncio.wait_for(self._ready_changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def _warm_up(self, model: LoadedModel) -> None:
        """Every batch shape through the new snapshot, in the device thread, before it serves a call.

        So no real call pays for first-use set-up, and memory reaches its plateau here, not under traffic.
        """
        kind, shapes = serving_kind(model), self.batcher.shapes
        run = lambda: kind.warm_up(model, shapes, self.settings.fast_path, self.batcher.max_batch_size)  # noqa: E731
        chosen = await self.batcher.run_on_device(model.device, run)
        if chosen:
            log.info("snapshot %d of model %s %s", model.step, model.run, chosen)

    def _readiness_changed(self) -> None:
        asyncio.get_running_loop().create_task(self._readiness())

    async def _readiness(self) -> None:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        # A replica whose watcher died would serve a stale model forever: liveness says so, and Kubernetes restarts it.
        await self.health.set(LIVENESS, serving if self.manager.watching() else not_serving)
        for run in self.settings.runs:
            await self.health.set(f"{SERVICE_NAME}/{run}", serving if self.manager.ready(run) else not_serving)
        ready = serving if self.manager.ready() else not_serving
        await self.health.set("", ready)
        await self.health.set(SERVICE_NAME, ready)
        self._ready_changed.set()

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, new calls UNAVAILABLE, in-flight calls get up to `grace` seconds to finish."""
        grace = self.settings.grace_seconds if grace is None else grace
        started = time.monotonic()
        drain = self.servicer.drain
        log.info("draining: %d calls in flight, up to %.1fs to finish", drain.inflight, grace)
        drain.draining = True
        await drain.stop_server(self.server, self.health, started + grace)
        await self._health_port.stop()
        if self.rest is not None:
            await self.rest.stop()
        self._loader.cancel()
        await self.router.stop()
        await self.manager.stop()
        await self.batcher.close()
        self.encoder.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        log.info("stopped after %.2fs", time.monotonic() - started)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()

