"""Job: the samples of one call, in the one protocol-neutral form every adapter (Generate, OIP over gRPC and REST) builds."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np


@dataclasses.dataclass(eq=False)
class Job:
    """The samples of one call (or one streamed chunk): indices first_index .. first_index+num_samples-1.

    What a sample is made from depends on the model's kind (generator_service/kinds/): a seed and an index, a
    latent, a caller's image. The batcher does not look inside; the kind's compute does.
    """

    model: object  # a generator_service.models.LoadedModel
    num_samples: int
    seed: int
    output_kind: int  # the queue a job waits in: jobs of one batch share it (an output format, or a kind's own queue)
    first_index: int = 0
    seeds: np.ndarray | None = None  # one seed per sample (sample i is index first_index of seeds[i]), or None: `seed` for all
    labels: np.ndarray | None = None  # num_samples class labels, or None (drawn from the seed)
    latents: np.ndarray | None = None  # num_samples × latent_dim, or None (drawn from the seed)
    truncation: float = 1.0
    condition: tuple[int, int] | None = None  # table models: (column, level) every row has, or None
    inputs: np.ndarray | None = None  # translation models: num_samples images, float32 N×C×H×W in [-1, 1]
    direction: str = ""  # translation models: "a_to_b" or "b_to_a" (part of output_kind, so a batch has one)
    deadline: float | None = None  # time.monotonic() after which computing is pointless
    future: asyncio.Future = dataclasses.field(default=None)  # type: ignore[assignment]
    images: np.ndarray | None = None  # the answer: the kind's compute output for these samples
    used_labels: np.ndarray | None = None
    remaining: int = 0

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline
