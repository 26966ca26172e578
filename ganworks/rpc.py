"""Registers a grpc.aio servicer so that a request that does not parse is INVALID_ARGUMENT, never UNKNOWN.

The generated `add_*Servicer_to_server` functions decode requests before the servicer runs, and grpc
reports a decode failure as UNKNOWN; here the decode failure reaches the method as a marker, which is
answered with a status and a message a caller can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
import signal
import time
from typing import Any, Callable

import grpc
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MalformedRequest:
    """Stands in for a request whose bytes are not a valid message of the method's input type."""

    type_name: str
    reason: str


def _tolerant(message_class: type) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (pb_message.DecodeError, RuntimeWarning, ValueError) as exc:
            return MalformedRequest(message_class.DESCRIPTOR.full_name, str(exc))

    return deserialize


def _message(request: MalformedRequest) -> str:
    return f"the request is not a valid {request.type_name} message ({request.reason}); build it with the protos in proto/ (or a client generated from them)"


REFUSED_WHILE_DRAINING = "the server is shutting down; retry, another replica will answer"


class Drain:
    """Counts a server's calls in flight and, once draining, refuses new ones with UNAVAILABLE.

    grpc's own `server.stop(grace)` cancels a call that has arrived but not yet reached its handler, and the
    caller sees CANCELLED, which clients do not retry (grpc/grpc#41785). Refusing here first, and stopping the
    grpc server only once the calls in flight are done, gives every caller of a draining server UNAVAILABLE.
    """

    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self._idle = asyncio.Event()  # bound to no loop until awaited (Python >= 3.10)
        self._idle.set()

    @contextlib.asynccontextmanager
    async def counted(self):
        """Counts the block as a call in flight (refusing it while draining is the caller's to do)."""
        self.inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def call(self, context: grpc.aio.ServicerContext):
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, REFUSED_WHILE_DRAINING)
        async with self.counted():
            yield

    async def stop_server(self, server: grpc.aio.Server, health: Any, deadline: float) -> None:
        """The end of a drain (self.draining already set): health NOT_SERVING, up to `deadline` (time.monotonic())
        for the calls in flight, then the server stops, cancelling what still runs when the time left is up."""
        await health.enter_graceful_shutdown()  # every health name NOT_SERVING, kept there whatever readiness says later
        if not await self.wait_idle(deadline - time.monotonic()):
            log.warning("grace period over with %d calls still in flight; they are cancelled", self.inflight)
        await server.stop(max(0.0, deadline - time.monotonic()))

    async def wait_idle(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for the calls in flight to end; False when some are still running."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout))
            return True
        except asyncio.TimeoutError:
            return False


def _guard_unary(behavior: Callable, drain: Drain) -> Callable:
    @functools.wraps(behavior)
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with drain.call(context):
            if isinstance(request, MalformedRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(request))
            return await behavior(request, context)

    return guarded


def _guard_stream(behavior: Callable, drain: Drain) -> Callable:
    @functools.wraps(behavior)
    async def guarded(request: Any, context: grpc.aio.ServicerContext):
        async with drain.call(context):
            if isinstance(request, MalformedRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(request))
            async for item in behavior(request, context):
                yield item

    return guarded


def add_servicer(server: grpc.aio.Server, servicer: Any, service: ServiceDescriptor, drain: Drain | None = None) -> None:
    """Registers the unary-request methods of `service` implemented by `servicer` on `server` (calls counted by `drain`)."""
    drain = drain or Drain()
    handlers = {}
    for method in service.methods:
        if method.client_streaming:
            raise NotImplementedError(f"{method.full_name}: client-streaming methods are not supported here")
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        behavior = getattr(servicer, method.name)
        if method.server_streaming:
            handler = grpc.unary_stream_rpc_method_handler(_guard_stream(behavior, drain), request_deserializer=_tolerant(request_class), response_serializer=response_class.SerializeToString)
        else:
            handler = grpc.unary_unary_rpc_method_handler(_guard_unary(behavior, drain), request_deserializer=_tolerant(request_class), response_serializer=response_class.SerializeToString)
        handlers[method.name] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


class DrainOnSignal:
    """Mixin for a server with an async `stop()` drain: signal handlers start that drain once, whatever signals follow."""

    _stopping: "asyncio.Task | None" = None

    def stop_soon(self) -> "asyncio.Task":
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self.stop())
        return self._stopping


# A path or file URL left in a message after the store's own URL was taken out: a location on the server.
_SERVER_PATH = re.compile(r"(?:file://)?(?<![\w.:/])/(?:[\w.@+-]+/)*[\w.@+-]+/?")


def public_message(message: str, store_url: str) -> str:
    """An error message safe for callers: store locations become store keys, other server paths are hidden (logs keep them)."""
    base = store_url.rstrip("/")
    message = message.replace(base + "/", "").replace(base, "<store>")
    return _SERVER_PATH.sub("<path on the server>", message)

async def serve_until_signalled(server: Any, name: str, host: str) -> None:
    """Starts `server`, prints the line launchers wait for, drains on SIGTERM/SIGINT and returns once it has stopped."""
    await server.start()
    print(f"ganworks {name} listening on {host}:{server.port} metrics_port={server.metrics_port}", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop_soon)
    await server.wait_for_termination()
    await server.stop_soon()
