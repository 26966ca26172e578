"""Bearer-token auth and TLS for every ganworks gRPC server; health and reflection stay open for probes and tools.

The kubelet's native gRPC probes speak plaintext and send no token, so a server with TLS on also serves
grpc.health.v1 alone, in plaintext, on a port of its own (`HealthPort`): probes work, the API stays closed.
"""

from __future__ import annotations

import hmac
from typing import Callable

import grpc

from ganworks.commandline import read_flag_file
from ganworks.errors import ConfigError

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>` metadata with UNAUTHENTICATED."""

    def __init__(self, token: str, on_refused: Callable[[str], None] = lambda method: None):
        self._expected = f"Bearer {token}".encode()
        self._on_refused = on_refused

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode(errors="replace")
        # Constant-time compare: the time to refuse must not reveal how much of the token was right.
        if hmac.compare_digest(given.encode(), self._expected):
            return handler
        self._on_refused(method.rsplit("/", 1)[-1])
        message = "missing or wrong token: send metadata 'authorization: Bearer <token>'" if given else "this server needs a token: send metadata 'authorization: Bearer <token>'"
        return _refusing(handler, message)


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def refuse_unary(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # unreachable: makes this an async generator, as a streaming handler must be

    codec = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse_unary, **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse_unary, **codec)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **codec)


def listen(server: grpc.aio.Server, host: str, port: int, tls_cert: str = "", tls_key: str = "", flags: str = "--host/--port") -> int:
    """Binds host:port, with TLS when a certificate is given; returns the port or raises a ConfigError naming `flags`."""
    address = f"{host}:{port}"
    try:
        if tls_cert:
            credentials = grpc.ssl_server_credentials([(read_flag_file("--tls-key", tls_key), read_flag_file("--tls-cert", tls_cert))])
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"cannot listen on {address}: the port is taken or the host is not an address of this machine ({flags})")
    return bound


class HealthPort:
    """A second grpc.aio server that carries only grpc.health.v1, in plaintext and without a token check.

    It shares the API server's HealthServicer, so it reports exactly what the API port's health reports (readiness,
    liveness, NOT_SERVING while draining); nothing else is registered on it, so no API call reaches it.
    """

    def __init__(self, health) -> None:
        self._health = health
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int, flags: str = "--health-port") -> int | None:
        """Binds host:port (0 picks a free port, -1 serves no health port) and starts; returns the port bound."""
        if port < 0:
            return None
        from grpc_health.v1 import health_pb2_grpc

        self._server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = listen(self._server, host, port, flags=flags)
        await self._server.start()
        return self.port

    async def stop(self, grace: float | None = 0) -> None:
        if self._server is not None:
            await self._server.stop(grace)


def interceptors(token: str, on_refused: Callable[[str], None] = lambda method: None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors a server needs: a token check when a token is set, none otherwise."""
    return [BearerTokenInterceptor(token, on_refused)] if token else []


def add_server_security_flags(parser, env_prefix: str) -> None:
    """The flags every ganworks gRPC server takes for its token and TLS (env `<prefix>AUTH_TOKEN[_FILE]`, `_TLS_CERT`, `_TLS_KEY`)."""
    parser.add_argument("--auth-token-file", help=f"file holding the bearer token calls must send (env {env_prefix}AUTH_TOKEN or _FILE)")
    parser.add_argument("--tls-cert", help="PEM certificate chain file; with --tls-key turns TLS on")
    parser.add_argument("--tls-key", help="PEM private key file")
