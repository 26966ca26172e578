"""Under load the batcher cuts batches at a model shape, between requests, so no compute goes to padding."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import torch
from prometheus_client import CollectorRegistry

import generator_service.batcher as batcher_module
from generator_service.batcher import DynamicBatcher
from generator_service.jobs import Job
from generator_service.metrics import GeneratorMetrics

MODEL = types.SimpleNamespace(run="r", step=1, device=torch.device("cpu"))


def _run(sizes: list[int], monkeypatch, max_batch_size: int = 64) -> list[tuple[list[int], int]]:
    """Queues jobs of these sizes at once; returns each model call's (job sizes, padded batch)."""
    calls = []

    def compute(parts, padded, output_kind):
        calls.append(([p.count for p in parts], padded))
        return np.zeros((sum(p.count for p in parts), 1), np.uint8), None

    monkeypatch.setattr(batcher_module, "_compute", compute)

    async def main():
        b = DynamicBatcher(max_batch_size=max_batch_size, max_queue_delay=0.001, max_queue_size=10_000, metrics=GeneratorMetrics(CollectorRegistry()))
        jobs = [Job(model=MODEL, num_samples=n, seed=i, output_kind=0) for i, n in enumerate(sizes)]
        b.submit(jobs)
        await asyncio.gather(*(j.future for j in jobs))
        await b.close()
        return jobs

    jobs = asyncio.run(main())
    assert all(j.images.shape[0] == n for j, n in zip(jobs, sizes)), "every call gets all its samples"
    return calls


def test_33_waiting_single_samples_run_as_32_and_1_not_padded_to_40(monkeypatch):
    calls = _run([1] * 33, monkeypatch)
    assert [(sum(sizes), padded) for sizes, padded in calls] == [(32, 32), (1, 1)]


def test_the_cut_never_splits_a_request_and_a_full_batch_is_never_cut(monkeypatch):
    # 3 + 5 = 8 is a shape; the request of 12 stays whole (padded to 16) rather than split to avoid padding.
    assert [sizes for sizes, _ in _run([3, 5, 12], monkeypatch)] == [[3, 5], [12]]
    assert [(sizes, padded) for sizes, padded in _run([12], monkeypatch)] == [([12], 16)]
    # 70 waiting samples: the first batch is full (64, splitting the last request as before), the rest follows.
    assert [sum(sizes) for sizes, _ in _run([30, 30, 10], monkeypatch)] == [64, 6]
