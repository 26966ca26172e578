"""Fan-out of sampling and feature extraction to Ray workers for large sample counts.

Each task samples its own range of the generator's chunks (so the samples are exactly those of a single-process
evaluation with the same seed), extracts features with a copy of the extractor, and returns them with their
float64 sums; the driver concatenates in chunk order and merges the sums, so the numbers do not depend on the
number of workers.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluator_service.errors import EvaluationError
from evaluator_service.features import Extractor
from evaluator_service.features.inception import FIDInceptionV3
from evaluator_service.sampler import GeneratorSampler, GeneratorTarget
from evaluator_service.samples import Samples
from evaluator_service.stats import FeatureStats

log = logging.getLogger(__name__)


def extractor_spec(extractor: Extractor) -> dict:
    """What a worker needs to rebuild the extractor: its shape and its weights as safetensors bytes (no pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in extractor.net.state_dict().items()}
    return {
        "id": extractor.id, "input_size": extractor.input_size, "channels": extractor.channels, "feature_dim": extractor.feature_dim,
        "num_logits": extractor.num_logits, "net_channels": getattr(extractor.net, "channels", 3), "weights": save_safetensors(state),
        "inception": extractor.net.options() if isinstance(extractor.net, FIDInceptionV3) else None,
    }


def build_extractor(spec: dict) -> Extractor:
    from evaluator_service.features import classifier, inception

    if spec.get("inception") is not None:
        net: torch.nn.Module = inception.FIDInceptionV3(**spec["inception"])
    else:
        net = classifier.DomainClassifier(spec["net_channels"], spec["num_logits"], spec["input_size"])
    net.load_state_dict(load_safetensors(spec["weights"]))
    net.eval().requires_grad_(False)
    return Extractor(spec["id"], net, spec["input_size"], spec["channels"], spec["feature_dim"], spec["num_logits"], {})


def extract_shard(target: GeneratorTarget, run: str, step: int, seed: int, chunks: range, chunk_size: int, num_samples: int,
                  spec: dict, resize_mode: str, batch_size: int, torch_threads: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One worker's part: samples chunks [chunks.start, chunks.stop) and returns features, logits and their sums."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    extractor = build_extractor(spec)
    feats, logits = [], []
    with GeneratorSampler(target, chunk=chunk_size) as sampler:
        for batch in sampler.sample(run, step, num_samples, seed, chunks=chunks):
            f, lg = extractor.extract(batch.images, resize_mode, batch_size)
            feats.append(f)
            logits.append(lg)
    features = np.concatenate(feats)
    stats = FeatureStats.of(features)
    return features, np.concatenate(logits), (stats.count, stats.total, stats.outer)


def fan_out(ray_address: str, shards: int, target: GeneratorTarget, run: str, step: int, num_samples: int, seed: int,
            extractor: Extractor, resize_mode: str, batch_size: int, chunk_size: int = 256, torch_threads: int = 1) -> Samples:
    """Features, logits and merged FeatureStats of num_samples generated images, computed by `shards` Ray tasks."""
    import ray

    if not ray.is_initialized():
        ray.init(address=None if ray_address in ("", "local") else ray_address, include_dashboard=False, logging_level="WARNING")
    total_chunks = math.ceil(num_samples / chunk_size)
    shards = max(1, min(shards, total_chunks))
    bounds = [round(i * total_chunks / shards) for i in range(shards + 1)]
    spec = ray.put(extractor_spec(extractor))
    task = ray.remote(num_cpus=1)(extract_shard)
    refs = [
        task.remote(target, run, step, seed, range(bounds[i], bounds[i + 1]), chunk_size, num_samples, spec, resize_mode, batch_size, torch_threads)
        for i in range(shards)
    ]
    try:
        parts = ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, EvaluationError):
            raise cause from None
        raise EvaluationError(f"a Ray feature-extraction task failed: {exc}") from None
    stats = FeatureStats(extractor.feature_dim)
    for _, _, (count, total, outer) in parts:
        stats = stats.merge(FeatureStats(extractor.feature_dim, count, total, outer))
    log.info("extracted features of %d samples in %d Ray tasks", num_samples, shards)
    return Samples(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), stats, workers=shards)
