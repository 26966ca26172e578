"""A small client for the generator service (sync and asyncio) that returns numpy arrays; copy it freely.

    from generator_service.client import GeneratorClient
    with GeneratorClient("localhost:50051") as client:
        batch = client.generate("my-run", 16, seed=1)      # batch.images: 16×H×W×C uint8
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Sequence

import grpc
import numpy as np

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc as pb_grpc

FORMATS = {"png": pb.OUTPUT_FORMAT_PNG, "uint8": pb.OUTPUT_FORMAT_UINT8, "float32": pb.OUTPUT_FORMAT_FLOAT32}
# Worth another try: the server restarts or drains (UNAVAILABLE); everything else is the caller's to fix.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 2**20), ("grpc.max_send_message_length", 16 * 2**20)]


@dataclasses.dataclass
class GeneratedImages:
    images: np.ndarray  # N×H×W×C, uint8 (png, uint8) or float32 in [-1, 1]
    labels: np.ndarray  # N class labels, -1 for an unconditional model
    model: str
    version: int
    seed: int


def build_request(model: str, num_samples: int, *, seed: int | None = None, version: int = 0, labels: Sequence[int] = (), truncation: float | None = None, latents: np.ndarray | None = None, output: str = "uint8") -> pb.GenerateRequest:
    if output not in FORMATS:
        raise ValueError(f"output must be one of {sorted(FORMATS)}, got {output!r}")
    request = pb.GenerateRequest(model=model, version=version, num_samples=num_samples, class_labels=list(labels), output_format=FORMATS[output])
    if seed is not None:
        request.seed = seed
    if truncation is not None:
        request.truncation = truncation
    if latents is not None:
        request.latents.extend(np.asarray(latents, dtype=np.float32).ravel().tolist())
    return request


def decode_response(responses: Sequence[pb.GenerateResponse]) -> GeneratedImages:
    """One or more responses (a stream's messages) -> arrays in sample order."""
    from ganworks.images import decode_png

    first = responses[0]
    h, w, c = first.shape
    images, labels = [], []
    for response in responses:
        for image in response.images:
            if response.output_format == pb.OUTPUT_FORMAT_PNG:
                images.append(decode_png(image.data))
            elif response.output_format == pb.OUTPUT_FORMAT_FLOAT32:
                images.append(np.frombuffer(image.data, dtype="<f4").reshape(h, w, c))
            else:
                images.append(np.frombuffer(image.data, dtype=np.uint8).reshape(h, w, c))
            labels.append(image.class_label)
    return GeneratedImages(np.stack(images), np.asarray(labels), first.model, first.version, first.seed)


def _channel_args(token: str | None, root_certificates: bytes | None):
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    creds = grpc.ssl_channel_credentials(root_certificates) if root_certificates is not None else None
    return metadata, creds


class GeneratorClient:
    """Blocking client; retries UNAVAILABLE with exponential backoff up to `retries` times."""

    def __init__(self, address: str, *, token: str | None = None, root_certificates: bytes | None = None, timeout: float = 60.0, retries: int = 4, options=()):
        self._metadata, creds = _channel_args(token, root_certificates)
        opts = CHANNEL_OPTIONS + list(options)
        self.channel = grpc.secure_channel(address, creds, options=opts) if creds else grpc.insecure_channel(address, options=opts)
        self.stub = pb_grpc.GeneratorStub(self.channel)
        self.timeout, self.retries = timeout, retries

    def _call(self, method, request):
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt == self.retries:
                    raise
                time.sleep(min(0.1 * 2**attempt, 2.0) * (0.5 + random.random()))

    def generate(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response([self._call(self.stub.Generate, build_request(model, num_samples, **kwargs))])

    def generate_stream(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response(self._call(lambda r, **kw: list(self.stub.GenerateStream(r, **kw)), build_request(model, num_samples, **kwargs)))

    def list_models(self) -> list[pb.ModelInfo]:
        return list(self._call(self.stub.ListModels, pb.ListModelsRequest()).models)

    def describe(self, model: str, version: int = 0) -> pb.ModelInfo:
        return self._call(self.stub.DescribeModel, pb.DescribeModelRequest(model=model, version=version))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GeneratorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncGeneratorClient:
    """The same for asyncio code (grpc.aio)."""

    def __init__(self, address: str, *, token: str | None = None, root_certificates: bytes | None = None, timeout: float = 60.0, retries: int = 4, options=()):
        self._metadata, creds = _channel_args(token, root_certificates)
        opts = CHANNEL_OPTIONS + list(options)
        self.channel = grpc.aio.secure_channel(address, creds, options=opts) if creds else grpc.aio.insecure_channel(address, options=opts)
        self.stub = pb_grpc.GeneratorStub(self.channel)
        self.timeout, self.retries = timeout, retries

    async def _call(self, method, request):
        for attempt in range(self.retries + 1):
            try:
                return await method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == self.retries:
                    raise
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0) * (0.5 + random.random()))

    async def generate(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response([await self._call(self.stub.Generate, build_request(model, num_samples, **kwargs))])

    async def list_models(self) -> list[pb.ModelInfo]:
        return list((await self._call(self.stub.ListModels, pb.ListModelsRequest())).models)

    async def describe(self, model: str, version: int = 0) -> pb.ModelInfo:
        return await self._call(self.stub.DescribeModel, pb.DescribeModelRequest(model=model, version=version))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncGeneratorClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
