"""The client of the `ganworks.v1.Generator` service, blocking and asyncio, returning numpy arrays.

    from ganworks.generator_client import GeneratorClient
    with GeneratorClient("localhost:50051", token=..., root_certificates=open("ca.crt", "rb").read()) as client:
        batch = client.generate("my-run", 16, seed=1)      # batch.images: 16×H×W×C uint8
        rows = client.generate_records("credit-run", 500, seed=1, condition="default=Yes")  # rows.table: a pyarrow.Table

Both forms share their request building, response decoding, bearer token, TLS and retry policy; the
evaluator's sampler, `ganworks generate` and the demo all call the generator through it.
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
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 2**20), ("grpc.max_send_message_length", 16 * 2**20)]
_STREAMING = {"GenerateStream"}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Which failed calls are tried again, how often and for how long; backoff doubles, with jitter.

    The default retries UNAVAILABLE only (the server restarts or drains); everything else is the caller's to fix.
    """

    codes: frozenset = frozenset({grpc.StatusCode.UNAVAILABLE})
    attempts: int = 5  # tries in all; 0 = no limit (then total_seconds bounds them)
    total_seconds: float = 0.0  # 0 = no time limit
    initial_delay: float = 0.1
    max_delay: float = 2.0

    def start(self) -> "_Attempts":
        return _Attempts(self)


class _Attempts:
    """One call's retry state: after each failure, how long to wait before the next try, or None to give up."""

    def __init__(self, policy: RetryPolicy):
        self.policy, self.tries = policy, 0
        self.deadline = time.monotonic() + policy.total_seconds if policy.total_seconds else None

    def delay_after(self, exc: grpc.RpcError) -> float | None:
        self.tries += 1
        p = self.policy
        if exc.code() not in p.codes or (p.attempts and self.tries >= p.attempts):
            return None
        remaining = self.deadline - time.monotonic() if self.deadline is not None else p.max_delay
        if remaining <= 0:
            return None
        return min(p.initial_delay * 2 ** (self.tries - 1) * (0.5 + random.random()), p.max_delay, remaining)


@dataclasses.dataclass
class GeneratedImages:
    images: np.ndarray  # N×H×W×C, uint8 (png, uint8) or float32 in [-1, 1]
    labels: np.ndarray  # N class labels, -1 for an unconditional model
    model: str
    version: int
    seed: int
    parts: tuple = ()  # (seed, count) of each call when the request was asked for in parts


# A server's default max_samples_per_request; a server older than ModelInfo.max_samples_per_request says 0.
DEFAULT_MAX_PER_CALL = 1024


def part_seed(seed: int, part: int) -> int:
    """The seed of call `part` of a request asked for in parts: part 0 keeps the request's seed (so a request that fits
    one call gives what it always gave), later parts a seed hashed from (seed, part), so parts never repeat each other."""
    if part == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(part)]).generate_state(1, np.uint64)[0])


def split_count(count: int, per_call: int) -> list[int]:
    """How many samples each call asks for: full parts of `per_call`, then the rest."""
    if count < 1 or per_call < 1:
        raise ValueError(f"count and per_call must be at least 1, got {count} and {per_call}")
    return [per_call] * (count // per_call) + ([count % per_call] if count % per_call else [])


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
        for image in sorted(response.images, key=lambda im: im.index):
            if response.output_format == pb.OUTPUT_FORMAT_PNG:
                images.append(decode_png(image.data))
            elif response.output_format == pb.OUTPUT_FORMAT_FLOAT32:
                images.append(np.frombuffer(image.data, dtype="<f4").reshape(h, w, c))
            else:
                images.append(np.frombuffer(image.data, dtype=np.uint8).reshape(h, w, c))
            labels.append(image.class_label)
    return GeneratedImages(np.stack(images), np.asarray(labels), first.model, first.version, first.seed)


RECORD_FORMATS = {"arrow": pb.RECORD_FORMAT_ARROW, "csv": pb.RECORD_FORMAT_CSV}


@dataclasses.dataclass
class GeneratedRecords:
    data: bytes  # the rows as the server sent them: an Arrow IPC stream or CSV
    format: str  # "arrow" or "csv"
    columns: list[str]
    model: str
    version: int
    seed: int
    num_rows: int = 0
    parts: tuple = ()  # (seed, count) of each call when the request was asked for in parts

    @property
    def table(self):
        """The rows as a pyarrow.Table."""
        from ganworks.tabular.records import records_table

        return records_table(self.data, self.format)


def build_records_request(model: str, num_rows: int, *, seed: int | None = None, version: int = 0, condition: str | tuple[str, str] | None = None, format: str = "arrow") -> pb.GenerateRecordsRequest:
    """condition: "column=value" or (column, value); every row then has that value."""
    if format not in RECORD_FORMATS:
        raise ValueError(f"format must be one of {sorted(RECORD_FORMATS)}, got {format!r}")
    request = pb.GenerateRecordsRequest(model=model, version=version, num_rows=num_rows, format=RECORD_FORMATS[format])
    if seed is not None:
        request.seed = seed
    if condition is not None:
        if isinstance(condition, str):
            column, sep, value = condition.partition("=")
            if not sep:
                raise ValueError(f"a condition is column=value, got {condition!r}")
            condition = (column.strip(), value.strip())
        request.conditions.add(column=condition[0], value=condition[1])
    return request


def decode_records(response: pb.GenerateRecordsResponse) -> GeneratedRecords:
    fmt = "csv" if response.format == pb.RECORD_FORMAT_CSV else "arrow"
    return GeneratedRecords(response.data, fmt, list(response.columns), response.model, response.version, response.seed, response.num_rows)


def join_records(parts: Sequence[GeneratedRecords]) -> bytes:
    """The rows of several answers as one Arrow IPC stream or one CSV file (one header)."""
    if len(parts) == 1:
        return parts[0].data
    if parts[0].format == "csv":
        return parts[0].data + b"".join(p.data.split(b"\n", 1)[1] for p in parts[1:])
    import io

    import pyarrow as pa
    import pyarrow.ipc as pa_ipc

    table = pa.concat_tables([p.table for p in parts])
    sink = io.BytesIO()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


DIRECTIONS = {"a_to_b": pb.DIRECTION_A_TO_B, "b_to_a": pb.DIRECTION_B_TO_A}


@dataclasses.dataclass
class TranslatedImages:
    images: np.ndarray  # N×H×W×C, uint8 (png, uint8) or float32 in [-1, 1], in request order
    model: str
    version: int


def build_translate_request(model: str, images: Sequence[bytes] | np.ndarray, direction: str, *, version: int = 0, resize: bool = False, output: str = "uint8") -> pb.TranslateRequest:
    """images: PNG files (a sequence of bytes), or uint8 pixels N×H×W×C (or N×H×W for grey), sent raw."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    if output not in FORMATS:
        raise ValueError(f"output must be one of {sorted(FORMATS)}, got {output!r}")
    request = pb.TranslateRequest(model=model, version=version, direction=DIRECTIONS[direction], output_format=FORMATS[output], resize=resize)
    if isinstance(images, np.ndarray):
        pixels = images[..., None] if images.ndim == 3 else images
        if pixels.ndim != 4 or pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 N×H×W×C (or N×H×W), got {pixels.dtype} of shape {images.shape}")
        request.input_format, request.shape[:] = pb.OUTPUT_FORMAT_UINT8, list(pixels.shape[1:])
        request.images.extend(np.ascontiguousarray(p).tobytes() for p in pixels)
    else:
        request.input_format = pb.OUTPUT_FORMAT_PNG
        request.images.extend(images)
    return request


def decode_translation(response: pb.TranslateResponse) -> TranslatedImages:
    batch = decode_response([pb.GenerateResponse(model=response.model, version=response.version, output_format=response.output_format, shape=response.shape, images=response.images)])
    return TranslatedImages(batch.images, response.model, response.version)


class _ClientBase:
    def __init__(self, address: str, *, token: str | None = None, root_certificates: bytes | None = None, timeout: float = 60.0, retries: int = 4,
                 retry: RetryPolicy | None = None, options: Sequence[tuple[str, object]] = ()):
        """token: sent as `authorization: Bearer …`; root_certificates: PEM bytes to trust, which turns TLS on;
        retries: how often UNAVAILABLE is tried again (or give a whole `retry` policy)."""
        self.address, self.timeout = address, timeout
        self.retry = retry or RetryPolicy(attempts=retries + 1)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._credentials = grpc.ssl_channel_credentials(root_certificates) if root_certificates is not None else None
        self._options = CHANNEL_OPTIONS + list(options)

    def _channel(self, channels):
        if self._credentials is not None:
            return channels.secure_channel(self.address, self._credentials, options=self._options)
        return channels.insecure_channel(self.address, options=self._options)

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.address!r}, tls={self._credentials is not None}, token={'***' if self._metadata else None})"


class GeneratorClient(_ClientBase):
    """Blocking client; see RetryPolicy for what is tried again."""

    def __init__(self, address: str, **kwargs):
        super().__init__(address, **kwargs)
        self.channel = self._channel(grpc)
        self.stub = pb_grpc.GeneratorStub(self.channel)

    def call(self, method: str, request, *, retry: RetryPolicy | None = None, timeout: float | None = None):
        """Calls one Generator method by name under the retry policy; a stream's messages come back as a list."""
        rpc, attempts = getattr(self.stub, method), (retry or self.retry).start()
        while True:
            try:
                response = rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
                return list(response) if method in _STREAMING else response
            except grpc.RpcError as exc:
                delay = attempts.delay_after(exc)
                if delay is None:
                    raise
                time.sleep(delay)

    def generate(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response([self.call("Generate", build_request(model, num_samples, **kwargs))])

    def generate_stream(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response(self.call("GenerateStream", build_request(model, num_samples, **kwargs)))

    def generate_records(self, model: str, num_rows: int, **kwargs) -> GeneratedRecords:
        return decode_records(self.call("GenerateRecords", build_records_request(model, num_rows, **kwargs)))

    def translate(self, model: str, images: Sequence[bytes] | np.ndarray, direction: str, **kwargs) -> TranslatedImages:
        """Images of one domain as the other (a translation model, e.g. cyclegan); see build_translate_request."""
        return decode_translation(self.call("Translate", build_translate_request(model, images, direction, **kwargs)))

    def max_per_call(self, model: str, version: int = 0) -> int:
        """The most samples the server takes in one call (DescribeModel says; older servers: their default)."""
        return self.describe(model, version).max_samples_per_request or DEFAULT_MAX_PER_CALL

    def generate_in_parts(self, model: str, num_samples: int, *, seed: int | None = None, version: int = 0, labels: Sequence[int] = (),
                          per_call: int | None = None, on_part=None, **kwargs) -> GeneratedImages:
        """Any number of images, asked for in calls of at most the server's limit (streamed, so no message-size ceiling).

        Every part comes from the snapshot that answered the first, and part k's seed is part_seed(seed, k): the same
        seed gives the same images. labels: one for all, or one per image. on_part(done, total) after each call.
        """
        if len(labels) > 1 and len(labels) != num_samples:
            raise ValueError(f"give one label for all images or one per image ({num_samples}), got {len(labels)}")
        sizes = split_count(num_samples, per_call or self.max_per_call(model, version))
        batches, start = [], 0
        for k, n in enumerate(sizes):
            part_labels = list(labels) if len(labels) <= 1 else list(labels[start:start + n])
            batch = decode_response(self.call("GenerateStream", build_request(model, n, seed=None if seed is None else part_seed(seed, k), version=version, labels=part_labels, **kwargs)))
            if k == 0:
                seed, version = batch.seed, batch.version
            batches.append(batch)
            start += n
            if on_part is not None:
                on_part(start, num_samples)
        return GeneratedImages(np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]), batches[0].model, version, seed,
                               tuple((b.seed, len(b.images)) for b in batches))

    def generate_records_in_parts(self, model: str, num_rows: int, *, seed: int | None = None, version: int = 0, per_call: int | None = None,
                                  on_part=None, **kwargs) -> GeneratedRecords:
        """Any number of rows, asked for in calls of at most the server's limit and joined into one Arrow stream or CSV;
        seeds and the snapshot as in generate_in_parts."""
        sizes = split_count(num_rows, per_call or self.max_per_call(model, version))
        parts, done = [], 0
        for k, n in enumerate(sizes):
            part = decode_records(self.call("GenerateRecords", build_records_request(model, n, seed=None if seed is None else part_seed(seed, k), version=version, **kwargs)))
            if k == 0:
                seed, version = part.seed, part.version
            parts.append(part)
            done += n
            if on_part is not None:
                on_part(done, num_rows)
        first = parts[0]
        return GeneratedRecords(join_records(parts), first.format, first.columns, first.model, version, seed, num_rows, tuple((p.seed, p.num_rows) for p in parts))

    def list_models(self) -> list[pb.ModelInfo]:
        return list(self.call("ListModels", pb.ListModelsRequest()).models)

    def describe(self, model: str, version: int = 0) -> pb.ModelInfo:
        return self.call("DescribeModel", pb.DescribeModelRequest(model=model, version=version))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GeneratorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncGeneratorClient(_ClientBase):
    """The same for asyncio code (grpc.aio)."""

    def __init__(self, address: str, **kwargs):
        super().__init__(address, **kwargs)
        self.channel = self._channel(grpc.aio)
        self.stub = pb_grpc.GeneratorStub(self.channel)

    async def call(self, method: str, request, *, retry: RetryPolicy | None = None, timeout: float | None = None):
        rpc, attempts = getattr(self.stub, method), (retry or self.retry).start()
        while True:
            try:
                if method in _STREAMING:
                    return [message async for message in rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)]
                return await rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                delay = attempts.delay_after(exc)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def generate(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response([await self.call("Generate", build_request(model, num_samples, **kwargs))])

    async def generate_stream(self, model: str, num_samples: int, **kwargs) -> GeneratedImages:
        return decode_response(await self.call("GenerateStream", build_request(model, num_samples, **kwargs)))

    async def generate_records(self, model: str, num_rows: int, **kwargs) -> GeneratedRecords:
        return decode_records(await self.call("GenerateRecords", build_records_request(model, num_rows, **kwargs)))

    async def translate(self, model: str, images: Sequence[bytes] | np.ndarray, direction: str, **kwargs) -> TranslatedImages:
        return decode_translation(await self.call("Translate", build_translate_request(model, images, direction, **kwargs)))

    async def list_models(self) -> list[pb.ModelInfo]:
        return list((await self.call("ListModels", pb.ListModelsRequest())).models)

    async def describe(self, model: str, version: int = 0) -> pb.ModelInfo:
        return await self.call("DescribeModel", pb.DescribeModelRequest(model=model, version=version))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncGeneratorClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
