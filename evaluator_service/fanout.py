"""Fan-out of sampling and feature extraction to Ray workers for large sample counts.

Each task samples its own range of the generator's chunks (so the samples are exactly those of a single-process
evaluation with the same seed), extracts features with a copy of the extractor, and returns them with their
float64 sums; the driver concatenates in chunk order and merges the sums, so the numbers do not depend on the
number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import secrets
import sys
from typing import Any

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
from ganworks.telemetry import register_secrets

log = logging.getLogger(__name__)

# A worker's generator token comes from its own environment (or the file it names), like the trainer's S3 keys:
# a Ray task's arguments are pickled into the object store and the cluster's logs, so no secret travels in them.
TOKEN_ENV = "GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN"


def token_here() -> str:
    """The generator token of this process: GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN, or the file its _FILE names; "" if neither."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = os.environ.get(TOKEN_ENV + "_FILE")
    if not path:
        return ""
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise EvaluationError(f"{TOKEN_ENV}_FILE on a Ray worker names a file that cannot be read ({exc.strerror})") from None


def without_secrets(target: GeneratorTarget) -> tuple[GeneratorTarget, bool]:
    """The target as a Ray task may carry it (no token) and whether the worker must find a token of its own."""
    return dataclasses.replace(target, auth_token=""), bool(target.auth_token)


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


def extract_shard(target: GeneratorTarget, needs_token: bool, run: str, step: int, seed: int, chunks: range, chunk_size: int, num_samples: int,
                  spec: dict, resize_mode: str, batch_size: int, torch_threads: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One worker's part: samples chunks [chunks.start, chunks.stop) and returns features, logits and their sums."""
    if needs_token:
        token = token_here()
        if not token:
            raise EvaluationError(f"a Ray worker has no generator token: set {TOKEN_ENV} (or {TOKEN_ENV}_FILE) on every Ray node, as on the evaluator; "
                                  "the token is not sent through Ray")
        target = dataclasses.replace(target, auth_token=token)
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


def shard_arguments(target: GeneratorTarget, run: str, step: int, seed: int, bounds: list[int], chunk_size: int, num_samples: int, spec: Any,
                    resize_mode: str, batch_size: int, torch_threads: int) -> list[tuple]:
    """The arguments of each shard's extract_shard task: everything but the token, which each worker reads itself."""
    public, needs_token = without_secrets(target)
    return [(public, needs_token, run, step, seed, range(lo, hi), chunk_size, num_samples, spec, resize_mode, batch_size, torch_threads)
            for lo, hi in zip(bounds, bounds[1:])]


def fan_out(ray_address: str, shards: int, target: GeneratorTarget, run: str, step: int, num_samples: int, seed: int,
            extractor: Extractor, resize_mode: str, batch_size: int, chunk_size: int = 256, torch_threads: int = 1) -> Samples:
    """Features, logits and merged FeatureStats of num_samples generated images, computed by `shards` Ray tasks."""
    local = ray_address in ("", "local")
    if local and "ray" not in sys.modules and "RAY_AUTH_MODE" not in os.environ:
        # Ray's daemons listen on every interface whatever ray.init is told (docs/security.md), so the cluster this
        # process starts takes a fresh token, as the trainer's does; Ray reads RAY_AUTH_MODE once, at import.
        os.environ["RAY_AUTH_MODE"], os.environ["RAY_AUTH_TOKEN"] = "token", secrets.token_hex(32)
        register_secrets([os.environ["RAY_AUTH_TOKEN"]])
    import ray

    needs_token = bool(target.auth_token)
    if not ray.is_initialized():
        if local and needs_token and not token_here():
            # A local cluster's workers are this process's children and inherit its environment: that is how they get
            # a token given by flag. A remote cluster's nodes must have it set (or mounted) themselves.
            os.environ[TOKEN_ENV] = target.auth_token
        ray.init(address=None if local else ray_address, include_dashboard=False, logging_level="WARNING")
    total_chunks = math.ceil(num_samples / chunk_size)
    shards = max(1, min(shards, total_chunks))
    bounds = [round(i * total_chunks / shards) for i in range(shards + 1)]
    spec = ray.put(extractor_spec(extractor))
    task = ray.remote(num_cpus=1)(extract_shard)
    refs = [task.remote(*args) for args in shard_arguments(target, run, step, seed, bounds, chunk_size, num_samples, spec, resize_mode, batch_size, torch_threads)]
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
