"""ServingKind: the few entry points a kind of model fills in for the generator service (request check, compute, warm-up)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from generator_service.validation import RequestError


class ServingKind:
    """One kind of model (image, table, translation) as the generator serves it; the servicer and batcher never branch on it.

    `parts` in compute are the batcher's slices of jobs: each has `.job` (a generator_service.jobs.Job), `.start`
    (offset in the job) and `.count`.
    """

    name = ""
    makes = ""  # what its models make, as errors say it
    answered_by = ""  # the calls that serve it, as errors say it
    calls: frozenset[str] = frozenset()  # the RPC names (native and Open Inference Protocol) it answers
    inputs: dict[str, tuple[tuple[str, ...], str]] = {}  # Open Inference Protocol inputs: name -> (datatypes, shape as errors say it)
    inputs_help = ""  # those inputs, as errors say them

    def require(self, model, call: str) -> None:
        """FAILED_PRECONDITION naming the right call when `call` cannot serve this kind of model."""
        if call not in self.calls:
            m = model.manifest
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f"model {m.run!r} (version {m.step}) is a {m.architecture} model, which makes {self.makes}: call {self.answered_by}")

    def attach(self, snapshot) -> Any:
        """What the kind loads beside the generator from a snapshot (a table's transformer); None when nothing."""
        return None

    def compute(self, model, parts: list, padded: int, output_kind: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Runs in the device thread: one forward pass over the parts (padded to `padded` samples); outputs and labels."""
        raise NotImplementedError

    def warm_up(self, model, shapes: list[int], fast_path: bool, max_batch_size: int) -> str | None:
        """Every batch shape through a new snapshot before it serves; raises CheckpointError if it makes NaN/inf.
        Returns what the warm-up chose, for the server's log (e.g. the fast path's form), or None."""
        raise NotImplementedError

    def columns_json(self, model) -> str:
        """DescribeModel's columns_json ("" unless the kind has columns)."""
        return ""

    def tensor_metadata(self, model) -> tuple[list, list]:
        """The Open Inference Protocol inputs and outputs, as (name, datatype, shape) triples."""
        self.require(model, "ModelInfer")
        raise NotImplementedError

    def infer_job(self, model, tensors: dict, parameters: dict, *, max_samples: int, max_message_bytes: int, deadline: float | None):
        """The Job an Open Inference Protocol request asks for, checked against the model before any tensor is built.

        `tensors` maps input names to generator_service.inference.InputTensor (header checked, contents not yet read).
        """
        self.require(model, "ModelInfer")
        raise NotImplementedError
