"""Checks a GenerateRequest against the limits and the served model; every refusal says what to change."""

from __future__ import annotations

import dataclasses
import math

import grpc
import numpy as np

from ganworks.api import generator_pb2 as pb
from generator_service.encode import bytes_per_image, effective_format
from ganworks.tabular import records
from ganworks.tabular.sampler import ConditionError
from ganworks.tabular.transformer import DiscreteEncoding
from generator_service.models import LoadedModel

# Standard-normal latents stay within about ±6; far beyond, a network overflows to NaN or saturates to a flat image.
MAX_ABS_LATENT = 100.0
KNOWN_FORMATS = {v.number for v in pb.OutputFormat.DESCRIPTOR.values}
FORMAT_LIST = ", ".join(f"{v.name} ({v.number})" for v in pb.OutputFormat.DESCRIPTOR.values)


class RequestError(Exception):
    """A call that cannot be served as asked; becomes a gRPC status with this message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclasses.dataclass
class ParsedRequest:
    num_samples: int
    output_format: int
    truncation: float
    labels: np.ndarray | None
    latents: np.ndarray | None


def check_basics(request: pb.GenerateRequest, max_samples: int) -> None:
    """What can be checked without the model."""
    if not request.model:
        raise _invalid("model is empty: set it to a run id (ListModels shows the served models)")
    if request.version < 0:
        raise _invalid(f"version must be 0 (newest) or a published step, got {request.version}")
    if request.num_samples <= 0:
        raise _invalid(f"num_samples must be between 1 and {max_samples}, got {request.num_samples}")
    if request.num_samples > max_samples:
        raise _invalid(f"num_samples {request.num_samples} is above this server's maximum of {max_samples} per call; split it into several calls")
    if request.output_format not in KNOWN_FORMATS:
        raise _invalid(f"output_format {request.output_format} is unknown; use one of {FORMAT_LIST}")
    if request.HasField("truncation"):
        psi = request.truncation
        if not math.isfinite(psi) or not 0.0 < psi <= 1.0:
            raise _invalid(f"truncation must be in (0, 1] (1 = no truncation), got {psi}")
    if request.max_images_per_message < 0:
        raise _invalid(f"max_images_per_message must be 0 (server default) or more, got {request.max_images_per_message}")


def check_for_model(request: pb.GenerateRequest, model: LoadedModel, max_message_bytes: int | None) -> ParsedRequest:
    """What depends on the model: labels, latents, and (for unary calls) the answer's size."""
    m = model.manifest
    n = request.num_samples
    labels = None
    if request.class_labels:
        if not m.num_classes:
            raise _invalid(f"model {m.run!r} (version {m.step}) is unconditional: leave class_labels empty")
        if len(request.class_labels) not in (1, n):
            raise _invalid(f"give 0, 1 or num_samples ({n}) class_labels, got {len(request.class_labels)}")
        labels = np.asarray(request.class_labels, dtype=np.int64)
        bad = labels[(labels < 0) | (labels >= m.num_classes)]
        if bad.size:
            raise _invalid(f"class label {int(bad[0])} is out of range: model {m.run!r} has classes 0..{m.num_classes - 1}")
        if labels.size == 1:
            labels = np.repeat(labels, n)
    latents = None
    if request.latents:
        if len(request.latents) != n * m.latent_dim:
            raise _invalid(
                f"latents has {len(request.latents)} values; model {m.run!r} needs num_samples × latent_dim = {n} × {m.latent_dim} = {n * m.latent_dim}"
            )
        latents = np.asarray(request.latents, dtype=np.float32).reshape(n, m.latent_dim)
        if not np.isfinite(latents).all():
            raise _invalid("latents contain NaN or infinity; send finite floats")
        largest = float(np.abs(latents).max())
        if largest > MAX_ABS_LATENT:
            raise _invalid(f"latents must lie in [-{MAX_ABS_LATENT:g}, {MAX_ABS_LATENT:g}] (draws from a standard normal), got a value of magnitude {largest:.3g}")
    fmt = effective_format(request.output_format)
    if max_message_bytes is not None:
        size = n * bytes_per_image(fmt, m.image_size, m.channels)
        if size > max_message_bytes:
            raise _invalid(
                f"the answer would be about {size // 2**20} MiB, above the {max_message_bytes // 2**20} MiB message limit; "
                "ask for fewer samples, use PNG, or call GenerateStream"
            )
    psi = request.truncation if request.HasField("truncation") else 1.0
    return ParsedRequest(num_samples=n, output_format=fmt, truncation=psi, labels=labels, latents=latents)


# ---- GenerateRecords (tabular models) ------------------------------------------------------------------------------

RECORD_FORMATS = {pb.RECORD_FORMAT_UNSPECIFIED: records.ARROW, pb.RECORD_FORMAT_ARROW: records.ARROW, pb.RECORD_FORMAT_CSV: records.CSV}
RECORD_FORMAT_LIST = ", ".join(f"{v.name} ({v.number})" for v in pb.RecordFormat.DESCRIPTOR.values)


def check_records_basics(request: pb.GenerateRecordsRequest, max_rows: int) -> str:
    """What can be checked without the model; the record format ("arrow" or "csv")."""
    if not request.model:
        raise _invalid("model is empty: set it to a run id (ListModels shows the served models)")
    if request.version < 0:
        raise _invalid(f"version must be 0 (newest) or a published step, got {request.version}")
    if not 0 < request.num_rows <= max_rows:
        raise _invalid(f"num_rows must be between 1 and this server's maximum of {max_rows} per call, got {request.num_rows}; split larger requests")
    if request.format not in RECORD_FORMATS:
        raise _invalid(f"format {request.format} is unknown; use one of {RECORD_FORMAT_LIST}")
    if len(request.conditions) > 1:
        raise _invalid(f"give at most one condition (the model conditions on one column at a time), got {len(request.conditions)}")
    return RECORD_FORMATS[request.format]


def _row_bytes(model: LoadedModel) -> int:
    """An upper estimate of one row's size as CSV text (the larger of the two formats)."""
    encodings = model.tabular.transformer.encodings
    return sum(2 + (max(len(level) for level in enc.levels) * 2 if isinstance(enc, DiscreteEncoding) else 24) for enc in encodings)


def check_records_for_model(request: pb.GenerateRecordsRequest, model: LoadedModel, max_message_bytes: int) -> tuple[int, int] | None:
    """The condition as (column, level) of a table model's categorical columns, or None; refusals name what is allowed."""
    condition = None
    if request.conditions:
        wanted = request.conditions[0]
        try:
            condition = model.tabular.sampler.condition(wanted.column, wanted.value)
        except ConditionError as exc:
            raise _invalid(str(exc)) from None
    size = request.num_rows * _row_bytes(model)
    if size > max_message_bytes:
        raise _invalid(f"the answer could reach {size // 2**20} MiB, above the {max_message_bytes // 2**20} MiB message limit; "
                       f"ask for at most {max_message_bytes // _row_bytes(model)} rows per call")
    return condition
