"""Samples from the generator service over gRPC (uint8 pixels, pinned to one snapshot version), the way users get them."""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterator

import grpc
import numpy as np

from evaluator_service.errors import GeneratorError, GeneratorUnavailableError, NotFoundError
from ganworks.api import generator_pb2 as pb
from ganworks.commandline import read_flag_file
from ganworks.generator_client import GeneratorClient, RetryPolicy, build_translate_request, decode_translation

log = logging.getLogger(__name__)

# Codes that mean "try again shortly": the server is starting, swapping a model in, or its queue is full.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclasses.dataclass
class SampleBatch:
    images: np.ndarray  # uint8 N×H×W×C
    labels: np.ndarray  # int32 N, -1 for an unconditional model


@dataclasses.dataclass(frozen=True)
class GeneratorTarget:
    """Which generator service the evaluator samples from and how it reaches it (plain values, so Ray tasks get them too)."""

    address: str
    retry_seconds: float = 10.0
    auth_token: str = dataclasses.field(default="", repr=False)
    root_certificates: bytes | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings) -> "GeneratorTarget":
        root_certificates = read_flag_file("--generator-tls-ca (env GANWORKS_EVALUATOR_GENERATOR_TLS_CA)", settings.generator_tls_ca)
        return cls(settings.generator, settings.generator_retry_seconds, settings.generator_auth_token, root_certificates)


class GeneratorSampler(GeneratorClient):
    """The generator client as an evaluation worker thread uses it: pinned versions, chunks, typed errors."""

    def __init__(self, target: GeneratorTarget, timeout_seconds: float = 120.0, chunk: int = 256):
        super().__init__(target.address, token=target.auth_token or None, root_certificates=target.root_certificates, timeout=timeout_seconds,
                         retry=RetryPolicy(TRANSIENT, attempts=0, total_seconds=target.retry_seconds, initial_delay=0.2, max_delay=2.0))
        self.retry_seconds, self.chunk = target.retry_seconds, chunk

    def _call(self, what: str, method: str, request, retry: RetryPolicy | None = None):
        try:
            return self.call(method, request, retry=retry)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code in TRANSIENT or code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise GeneratorUnavailableError(
                    f"the generator service at {self.address} did not answer {what} within {self.retry_seconds:.0f}s ({code.name}: {details}); "
                    "check that it runs and that --generator / GANWORKS_EVALUATOR_GENERATOR names it"
                ) from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(f"the generator service at {self.address} does not serve it: {details}") from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise GeneratorError(f"the generator service at {self.address} refused {what} ({code.name}: {details}); "
                                     "give the evaluator its token: GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN or _FILE") from None
            raise GeneratorError(f"the generator service at {self.address} refused {what} ({code.name}: {details})") from None

    def describe(self, run: str, version: int) -> pb.ModelInfo:
        """The served snapshot's description; waits the retry budget for a snapshot the generator has not loaded yet."""
        loading = dataclasses.replace(self.retry, codes=TRANSIENT | {grpc.StatusCode.NOT_FOUND})
        return self._call(f"DescribeModel({run}, version {version})", "DescribeModel", pb.DescribeModelRequest(model=run, version=version), loading)

    def sample(self, run: str, version: int, num_samples: int, seed: int, chunks: range | None = None) -> Iterator[SampleBatch]:
        """num_samples images of run at version, in chunks; chunk i uses its own seed so samples never repeat.

        `chunks` restricts the call to some chunk indices (a Ray worker's share); the images are the same as
        those chunks of a full call.
        """
        for i in chunks if chunks is not None else range(-(-num_samples // self.chunk)):
            start = i * self.chunk
            n = min(self.chunk, num_samples - start)
            request = pb.GenerateRequest(model=run, version=version, num_samples=n, seed=(seed * 1_000_003 + i) % 2**64, output_format=pb.OUTPUT_FORMAT_UINT8)
            response = self._call(f"Generate({run}, version {version})", "Generate", request)
            yield self._decode(response, run, version, n)

    def _decode(self, response: pb.GenerateResponse, run: str, version: int, n: int) -> SampleBatch:
        if response.version != version:
            raise GeneratorError(f"asked the generator for {run} version {version}, it answered with version {response.version}")
        if response.output_format != pb.OUTPUT_FORMAT_UINT8 or len(response.shape) != 3 or len(response.images) != n:
            raise GeneratorError(f"the generator answered {len(response.images)} images of shape {list(response.shape)} in format {response.output_format}; expected {n} UINT8 images")
        h, w, c = response.shape
        images = np.empty((n, h, w, c), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int32)
        for j, image in enumerate(sorted(response.images, key=lambda im: im.index)):
            if len(image.data) != h * w * c:
                raise GeneratorError(f"image {j} from the generator has {len(image.data)} bytes, expected {h * w * c}")
            images[j] = np.frombuffer(image.data, dtype=np.uint8).reshape(h, w, c)
            labels[j] = image.class_label
        return SampleBatch(images, labels)

    def sample_rows(self, run: str, version: int, num_rows: int, seed: int, schema) -> dict[str, np.ndarray]:
        """num_rows rows of a table run at version (GenerateRecords, Arrow), in chunks with their own seeds, as numpy columns."""
        from ganworks.tabular.records import ARROW, records_table

        parts = []
        for i in range(-(-num_rows // self.chunk)):
            n = min(self.chunk, num_rows - i * self.chunk)
            request = pb.GenerateRecordsRequest(model=run, version=version, num_rows=n, seed=(seed * 1_000_003 + i) % 2**64, format=pb.RECORD_FORMAT_ARROW)
            response = self._call(f"GenerateRecords({run}, version {version})", "GenerateRecords", request)
            if response.version != version or response.num_rows != n:
                raise GeneratorError(f"asked the generator for {n} rows of {run} version {version}, it answered {response.num_rows} of version {response.version}")
            parts.append(records_table(response.data, ARROW))
        columns = {}
        for column in schema.columns:
            values = np.concatenate([part.column(column.name).to_numpy(zero_copy_only=False) for part in parts])
            columns[column.name] = values.astype(object) if column.kind == "categorical" else values
        return columns

    def translate_images(self, run: str, version: int, images: np.ndarray, direction: str) -> np.ndarray:
        """uint8 N×H×W×C images translated by a translation run at version (Translate, raw pixels), in chunks, in order."""
        out = []
        for start in range(0, len(images), self.chunk):
            part = images[start : start + self.chunk]
            request = build_translate_request(run, part, direction, version=version, output="uint8")
            response = decode_translation(self._call(f"Translate({run}, version {version}, {direction})", "Translate", request))
            if response.version != version or response.images.shape != part.shape:
                raise GeneratorError(f"asked the generator to translate {len(part)} images of shape {list(part.shape[1:])} with {run} version {version}; "
                                     f"it answered {len(response.images)} of shape {list(response.images.shape[1:])} from version {response.version}")
            out.append(response.images)
        return np.concatenate(out) if out else images[:0].copy()
