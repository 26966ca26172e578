"""The Open Inference Protocol over HTTP/REST (KServe v2, with Triton's binary tensor data extension) on its own port.

Same calls as the gRPC endpoint (generator_service/inference.py), over the same servicer: token, limits,
batcher and /metrics counts are shared. Paths:

  GET  /v2/health/live, /v2/health/ready              200, or 503 while not ready
  GET  /v2                                            server metadata
  GET  /v2/models/{m}[/versions/{v}]                  model metadata
  GET  /v2/models/{m}[/versions/{v}]/ready            200, or 400 when not ready
  POST /v2/models/{m}[/versions/{v}]/infer            JSON, or JSON + binary tensors (header Inference-Header-Content-Length)

A refusal is {"error": "<message>"} with a 4xx status (the gRPC status it stands for maps to it); a body above
the request limit is refused from its Content-Length before it is read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
from typing import Any

import grpc
import numpy as np
from aiohttp import web

from ganworks import __version__
from generator_service.inference import (
    OFFLOAD_BYTES, OUTPUT, PARAMETERS, InputTensor, RefusedRequestReaper, excerpt, infer, model_metadata, model_ready, pixels, wants_typed_output,
)
from generator_service.servicer import INLINE_PIXELS, GeneratorServicer
from generator_service.validation import RequestError

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 413,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNIMPLEMENTED: 501,
}
MAX_INT64 = 2**63 - 1


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _Context:
    """What GeneratorServicer.serving needs of a call's context, for an HTTP request."""

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, message: str):
        raise _Abort(code, message)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


class RestEndpoint:
    """An aiohttp application over a GeneratorServicer; start() binds host:port (0 picks a free one)."""

    def __init__(self, generator: GeneratorServicer, max_request_bytes: int, token: str = "", reaper: RefusedRequestReaper | None = None):
        self.g, self.max_request_bytes = generator, max_request_bytes
        self.reaper = reaper or RefusedRequestReaper()
        self._expected = f"Bearer {token}".encode() if token else None
        self.app = web.Application(client_max_size=max_request_bytes, middlewares=[self._guard])
        prefixes = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
        self.app.router.add_get("/v2/health/live", self.live)
        self.app.router.add_get("/v2/health/ready", self.ready)
        self.app.router.add_get("/v2", self.server_metadata)
        for prefix in prefixes:
            self.app.router.add_get(prefix, self.metadata)
            self.app.router.add_get(prefix + "/ready", self.model_ready)
            self.app.router.add_post(prefix + "/infer", self.infer)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int, tls_cert: str = "", tls_key: str = "") -> int:
        context = None
        if tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls_cert, tls_key)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context, reuse_port=False)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the bound port when 0 was asked
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the guard every path passes: the token (health stays open, as on gRPC), the size, errors as JSON -------

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if not request.path.startswith("/v2/health/") and self._expected is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(errors="replace"), self._expected):
                method = "ModelInfer" if request.path.endswith("/infer") else "ModelMetadata"
                self.g.metrics.requests.labels(method, "UNAUTHENTICATED").inc()
                said = "missing or wrong token" if given else "this server needs a token"
                return _error(401, f"{said}: send the header 'Authorization: Bearer <token>'")
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            return _error(413, f"the request body is {request.content_length} bytes, above this server's limit of {self.max_request_bytes}; send fewer samples per call")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return _error(413, f"the request body is above this server's limit of {self.max_request_bytes} bytes; send fewer samples per call")
            return _error(exc.status, exc.reason)
        except _Abort as exc:
            return _error(HTTP_STATUS.get(exc.code, 500), exc.message)

    # -- health and metadata ----------------------------------------------------------------------------------

    async def live(self, request):
        return web.Response(status=200)

    async def ready(self, request):
        return web.Response(status=200 if self.g.manager.ready() and not self.g.drain.draining else 503)

    async def server_metadata(self, request):
        async with self.g.serving("ServerMetadata", _Context()):
            return web.json_response({"name": "ganworks", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def metadata(self, request):
        async with self.g.serving("ModelMetadata", _Context()):
            return web.json_response(await model_metadata(self.g, request.match_info["model"], request.match_info.get("version", "")))

    async def model_ready(self, request):
        async with self.g.serving("ModelReady", _Context()):
            ready = await model_ready(self.g, request.match_info["model"], request.match_info.get("version", ""))
            return web.Response(status=200 if ready else 400)

    # -- inference ----------------------------------------------------------------------------------------------

    async def infer(self, request: web.Request):
        try:
            return await self._infer(request)
        except BaseException:
            self.reaper.refused(request.content_length or 0)
            raise

    async def _infer(self, request: web.Request):
        async with self.g.serving("ModelInfer", _Context()):
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # a chunked body, whose size was not announced
                raise RequestError(grpc.StatusCode.OUT_OF_RANGE, f"the request body is above this server's limit of {self.max_request_bytes} bytes; send fewer samples per call") from None
            header_text, binary = _split(body, request.headers.get(HEADER_LENGTH))
            loop = asyncio.get_running_loop()
            header = await loop.run_in_executor(None, _parse_json, header_text) if len(header_text) > OFFLOAD_BYTES else _parse_json(header_text)
            tensors, parameters, typed_output = _read_request(header, binary)
            job = await infer(self.g, request.match_info["model"], request.match_info.get("version", ""), tensors, parameters, None)
            images = await pixels(job)
            output: dict[str, Any] = {"name": OUTPUT, "datatype": "UINT8", "shape": list(images.shape)}
            answer = {"model_name": job.model.run, "model_version": str(job.model.step), "outputs": [output]}
            if isinstance(header.get("id"), str) and header["id"]:
                answer["id"] = header["id"]
            if typed_output:  # JSON numbers: several bytes a pixel, built off the event loop when large
                def as_json() -> str:
                    output["data"] = images.ravel().tolist()
                    return json.dumps(answer)

                text = as_json() if images.size <= INLINE_PIXELS else await loop.run_in_executor(None, as_json)
                return web.Response(text=text, content_type="application/json")
            output["parameters"] = {"binary_data_size": images.nbytes}
            head = json.dumps(answer).encode()
            response = web.StreamResponse(headers={HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"})
            response.content_length = len(head) + images.nbytes
            await response.prepare(request)
            await response.write(head)
            await response.write(memoryview(np.ascontiguousarray(images)).cast("B"))
            await response.write_eof()
            return response


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a request body (Triton's binary tensor data extension)."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isascii() or not header_length.isdigit() or int(header_length) > len(body):
        raise _invalid(f"header {HEADER_LENGTH} must be the JSON part's length in bytes, at most the body's {len(body)}, got {excerpt(header_length)}")
    n = int(header_length)
    return body[:n], memoryview(body)[n:]


def _parse_json(text: bytes) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"the request is not valid JSON ({type(exc).__name__}: {excerpt(str(exc), 80)})") from None
    if not isinstance(value, dict):
        raise _invalid("the request must be a JSON object with 'inputs' (the KServe v2 inference request)")
    return value


def _read_request(header: dict, binary: memoryview) -> tuple[list[InputTensor], dict, bool]:
    """The inputs (binary parts sliced from the body, JSON data as arrays), the parameters and whether the output is JSON data."""
    inputs, outputs = header.get("inputs"), header.get("outputs", [])
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise _invalid("'inputs' must be a list of tensors, each {\"name\", \"datatype\", \"shape\", \"data\" or parameters.binary_data_size}")
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise _invalid("'outputs' must be a list of {\"name\", \"parameters\"}")
    parameters = _parameters(header.get("parameters"), "the request")
    tensors, offset = [], 0
    for i, t in enumerate(inputs):
        name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise _invalid(f"input {i} needs a string 'name' and 'datatype'")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_INT64 for d in shape):
            raise _invalid(f"input {excerpt(name)} needs 'shape', a list of integers from 0 to 2^63-1")
        size = _parameters(t.get("parameters"), f"input {excerpt(name)}").get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary) - offset:
                raise _invalid(f"input {excerpt(name)} says binary_data_size {excerpt(size)}, but {len(binary) - offset} bytes of binary data are left")
            tensors.append(InputTensor(name, datatype, tuple(shape), raw=binary[offset : offset + size]))
            offset += size
        else:
            if "data" not in t:
                raise _invalid(f"input {excerpt(name)} has neither 'data' nor parameters.binary_data_size")
            tensors.append(InputTensor(name, datatype, tuple(shape), typed=_flat_numbers(t["data"], name, datatype)))
    if offset != len(binary):
        raise _invalid(f"the body holds {len(binary)} bytes of binary data, but the inputs' binary_data_size add up to {offset}")
    typed = True  # KServe v2: JSON data unless binary is asked for
    if parameters.get("binary_data_output") is True:
        typed = False
    names = []
    for o in outputs:
        binary_flag = _parameters(o.get("parameters"), "an output").get("binary_data")
        names.append((o.get("name") if isinstance(o.get("name"), str) else repr(o.get("name")), None if binary_flag is None else bool(binary_flag)))
    if names:
        chosen = wants_typed_output(names)
        typed = chosen if any(b is not None for _, b in names) else typed
    return tensors, {k: parameters[k] for k in PARAMETERS if k in parameters}, typed


def _flat_numbers(data, name: str, datatype: str) -> list:
    """A JSON tensor's (nested) list in row-major order as one flat list, of integers only unless the datatype is FP32."""
    allowed = (int, float) if datatype == "FP32" else (int,)
    flat, stack = [], [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, allowed) and not isinstance(item, bool):
            flat.append(item)
        else:
            kind = "numbers" if datatype == "FP32" else "integers"
            raise _invalid(f"input {excerpt(name)} is {excerpt(datatype)}: its 'data' must be a (nested) list of {kind}, got {excerpt(item, 20)}")
    return flat


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"'parameters' of {where} must be a JSON object")
    return value
