"""Image models (DCGAN, StyleGAN2): samples drawn from (seed, index) or given latents; Generate, GenerateStream, ModelInfer."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ganworks.api import generator_pb2 as pb
from ganworks.errors import CheckpointError
from ganworks.images import to_uint8
from generator_service.fastpath import fastest_form
from generator_service.jobs import Job
from generator_service.kinds.base import ServingKind
from generator_service.validation import MAX_ABS_LATENT, _invalid


class ImageKind(ServingKind):
    name = "image"
    makes = "images from noise"
    answered_by = "Generate or GenerateStream"
    calls = frozenset({"Generate", "GenerateStream", "ModelInfer"})
    # Open Inference Protocol inputs: name -> (accepted datatypes, shape as errors say it)
    inputs = {"seed": (("UINT64", "INT64"), "[N]"), "latents": (("FP32",), "[N, latent_dim]"), "class_labels": (("INT32", "INT64"), "[N]")}
    inputs_help = "seed (UINT64 or INT64, [N]) or latents (FP32, [N, latent_dim]), and optionally class_labels (INT32 or INT64, [N])"

    def compute(self, model, parts, padded, output_kind):
        """Each sample's latent from (seed, index) or the caller; one forward pass; uint8 N×H×W×C when the queue wants uint8.

        The batch is padded with zero latents to `padded` samples; the generator treats samples independently
        (per-sample normalisation), so the padding changes no real sample and is cut off the result.
        """
        manifest, family, params = model.manifest, model.family, model.manifest.architecture_params
        latents, labels, psi = [], [], []
        for part in parts:
            latents.extend(_rows(part, part.job.latents, functools.partial(family.seeded_latents, params)))
            psi.append(np.full(part.count, part.job.truncation, dtype=np.float32))
            if manifest.num_classes:
                labels.extend(_rows(part, part.job.labels, functools.partial(family.seeded_labels, params)))
        size = sum(p.count for p in parts)
        if padded > size:
            latents.append(np.zeros((padded - size, manifest.latent_dim), dtype=np.float32))
            psi.append(np.ones(padded - size, dtype=np.float32))
            if labels:
                labels.append(np.zeros(padded - size, dtype=np.int64))
        z = torch.from_numpy(np.concatenate(latents)).to(model.device)
        y = torch.from_numpy(np.concatenate(labels)).to(model.device) if labels else None
        with torch.inference_mode():
            out = family.generate(model.generator, z, y, torch.from_numpy(np.concatenate(psi)).to(model.device))
        images = out[:size].float().cpu().numpy()
        # Pixels for the whole batch in one pass here, not per call on the event loop.
        return (to_uint8(images) if output_kind == pb.OUTPUT_FORMAT_UINT8 else images), (y[:size].cpu().numpy() if y is not None else None)

    def warm_up(self, model, shapes, fast_path, max_batch_size):
        m, chosen = model.manifest, None
        if fast_path:
            model.generator, form, timings = fastest_form(model.generator, model.family, model.family.validate(m.architecture_params), batch=max_batch_size, device=model.device)
            measured = ", ".join(f"{name} {max_batch_size / seconds:.0f}" for name, seconds in timings.items())
            chosen = f"serves its {form} form (samples/s at batch {max_batch_size}: {measured})"
        for size in reversed(shapes):
            z = torch.zeros(size, m.latent_dim, device=model.device)
            labels = torch.zeros(size, dtype=torch.long, device=model.device) if m.num_classes else None
            with torch.inference_mode():
                out = model.family.generate(model.generator, z, labels, torch.ones(size, device=model.device))
            if not torch.isfinite(out).all():
                raise CheckpointError(f"snapshot {m.step} of model {m.run!r} produces NaN/inf images on zero latents; it is refused")
        return chosen

    def tensor_metadata(self, model):
        self.require(model, "ModelInfer")
        m = model.manifest
        inputs = [("seed", "UINT64", [-1]), ("latents", "FP32", [-1, m.latent_dim])]
        if m.num_classes:
            inputs.append(("class_labels", "INT64", [-1]))
        return inputs, [("images", "UINT8", [-1, m.image_size, m.image_size, m.channels])]

    def infer_job(self, model, tensors, parameters, *, max_samples, max_message_bytes, deadline):
        """Image i is what Generate gives for seed[i], sample 0 (or for latents[i]); checked from shapes before reading contents."""
        self.require(model, "ModelInfer")
        m = model.manifest
        if "images" in tensors:
            raise _invalid(f"model {m.run!r} makes images from noise; it takes {self.inputs_help}, not images")
        seeds, latents, labels = tensors.get("seed"), tensors.get("latents"), tensors.get("class_labels")
        if (seeds is None) == (latents is None):
            raise _invalid(f"give exactly one of the inputs seed and latents; this model takes {self.inputs_help}")
        n = (seeds if seeds is not None else latents).shape[0]
        if latents is not None and latents.shape[1] != m.latent_dim:
            raise _invalid(f"input 'latents' must be FP32 [N, {m.latent_dim}] for model {m.run!r} (version {m.step}), got {list(latents.shape)}")
        if labels is not None:
            if not m.num_classes:
                raise _invalid(f"model {m.run!r} (version {m.step}) is unconditional: leave out the input class_labels")
            if labels.shape[0] != n:
                raise _invalid(f"input class_labels must have shape [{n}] (one per image), got {list(labels.shape)}")
        answer = n * m.image_size * m.image_size * m.channels
        if answer > max_message_bytes:
            raise _invalid(f"the answer would be about {answer // 2**20} MiB, above the {max_message_bytes // 2**20} MiB message limit; ask for fewer images per call")
        truncation = _truncation(parameters)
        job = Job(model=model, num_samples=n, seed=0, output_kind=pb.OUTPUT_FORMAT_UINT8, truncation=truncation, deadline=deadline)
        if seeds is not None:
            job.seeds = seeds.array()
            if job.seeds.dtype.kind == "i" and (job.seeds < 0).any():
                raise _invalid(f"input seed holds a negative value ({int(job.seeds.min())}); seeds are 0 .. 2^64-1")
        else:
            job.latents = latents.array()
            if not np.isfinite(job.latents).all():
                raise _invalid("input latents holds NaN or infinity; send finite floats")
            largest = float(np.abs(job.latents).max())
            if largest > MAX_ABS_LATENT:
                raise _invalid(f"latents must lie in [-{MAX_ABS_LATENT:g}, {MAX_ABS_LATENT:g}] (draws from a standard normal), got a value of magnitude {largest:.3g}")
        if labels is not None:
            values = labels.array()
            bad = values[(values < 0) | (values >= m.num_classes)]
            if bad.size:
                raise _invalid(f"class label {int(bad[0])} is out of range: model {m.run!r} has classes 0..{m.num_classes - 1}")
            job.labels = values.astype(np.int64)
        return job


def _rows(part, given: np.ndarray | None, draw) -> list[np.ndarray]:
    """A batch part's rows of latents or labels: the caller's, else drawn per sample from its own seed (OIP), else
    drawn from the job's seed at the samples' indices (Generate)."""
    job, stop = part.job, part.start + part.count
    if given is not None:
        return [given[part.start : stop]]
    if job.seeds is not None:
        return [draw(int(seed), job.first_index, 1) for seed in job.seeds[part.start : stop]]
    return [draw(job.seed, job.first_index + part.start, part.count)]


def _truncation(parameters: dict) -> float:
    """The request parameter truncation, a number in (0, 1]; 1 (none) when absent."""
    if "truncation" not in parameters:
        return 1.0
    value = parameters["truncation"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"parameter truncation must be a number in (0, 1], got a {type(value).__name__} parameter")
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise _invalid(f"truncation must be in (0, 1] (1 = no truncation), got {value}")
    return value


IMAGE = ImageKind()
