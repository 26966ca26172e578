"""Feature extractors by id, and the pipeline every image goes through: uint8 pixels -> resize -> network -> features, logits."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Callable

import numpy as np
import torch

from evaluator_service.cache import BoundedCache
from evaluator_service.errors import ExtractorMissingError, InvalidRequestError
from evaluator_service.features import classifier, inception, tf_import
from evaluator_service.features.resize import RESIZE_MODES, check_resize_mode, resize
from ganworks.data import ImageDataset
from ganworks.devices import autocast_dtype, cuda_math

# How a CUDA extractor may compute: fp32 as written (the default: features equal the CPU's within 1e-4 relative, so
# FID does not depend on the card), or faster with TF32 or fp16 autocast where a user accepts the difference. The CPU
# computes fp32 whatever is asked; the report records which one ran.
FEATURE_PRECISIONS = ("fp32", "tf32", "fp16")

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Extractor:
    id: str
    net: torch.nn.Module  # forward(N×C×S×S in [0, 1]) -> (features, logits)
    input_size: int
    channels: int
    feature_dim: int
    num_logits: int
    source: dict
    device: torch.device = torch.device("cpu")
    # How 0..1 pixels are scaled for the network ("tf", "pytorch-fid", "2x-1"); recorded in every report.
    input_scaling: str = ""
    # What CUDA may compute in (FEATURE_PRECISIONS); see precision_used for what ran.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_feature_precision(self.precision)
        self.input_scaling = self.input_scaling or getattr(self.net, "input_scaling", "2x-1")
        self._image_bytes: int | None = None
        # Max relative feature difference of the asked precision from fp32, measured on the first batch run in it.
        self.precision_difference: float | None = None
        # Inception runs with batch norm folded into its convs, channels-last: faster on CPU and GPU, same numbers to ~1e-7.
        self.fast = isinstance(self.net, inception.FIDInceptionV3)
        self.runner = inception.fold_batch_norm(self.net).to(memory_format=torch.channels_last) if self.fast else self.net

    def to(self, device: torch.device) -> "Extractor":
        self.net.to(device)
        self.runner.to(device)
        self.device = device
        return self

    @property
    def precision_used(self) -> str:
        """The precision features are computed in here: the asked one on CUDA, fp32 on a CPU."""
        return self.precision if self.device.type == "cuda" else "fp32"

    def precision_record(self) -> dict:
        """What a report says about the precision: the one used and, when it is not fp32, its measured difference."""
        record: dict = {"used": self.precision_used}
        if self.precision_used != "fp32":
            record["max_relative_difference_vs_fp32"] = self.precision_difference
            record["note"] = "features are not computed in fp32: FID and other feature metrics may differ from a CPU's or another card's"
        return record

    def forward(self, x: torch.Tensor, precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on already resized input (in `precision`, default the extractor's); results on the CPU, in float32."""
        with torch.inference_mode(), self._math(precision or self.precision):
            x = x.to(self.device, non_blocking=True)
            features, logits = self.runner(x.contiguous(memory_format=torch.channels_last) if self.fast else x)
            return features.float().cpu(), logits.float().cpu()

    def _math(self, precision: str):
        """On CUDA: the backend flags for the precision, set for the call and put back after (cuDNN's default is TF32)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(cuda_math("tf32" if precision == "tf32" else "fp32"))
        if autocast_dtype(precision) is not None:
            stack.enter_context(torch.autocast("cuda", dtype=autocast_dtype(precision)))
        return stack

    def batch_size(self, requested: int) -> int:
        """Images per forward pass: `requested` on a CPU; on CUDA as many as half the free memory holds (at the peak
        bytes per image measured once on this device), at most 1024 — the result does not depend on it."""
        if self.device.type != "cuda":
            return requested
        if self._image_bytes is None:
            probe = 8
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.forward(torch.zeros(probe, self.channels, self.input_size, self.input_size))
            self._image_bytes = max(1, (torch.cuda.max_memory_allocated(self.device) - before) // probe)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(1024, free // 2 // self._image_bytes)))

    def prepare(self, images: np.ndarray, resize_mode: str) -> torch.Tensor:
        """uint8 N×H×W×C -> the network's input: resized (on the extractor's device for legacy-pytorch, so a GPU
        does the interpolation and only uint8 pixels cross the bus), grey repeated to RGB when the network wants 3 channels."""
        x = resize(images, self.input_size, resize_mode, device=self.device)
        if x.shape[1] != self.channels:
            if x.shape[1] == 1 and self.channels == 3:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise InvalidRequestError(f"{self.id} takes {self.channels}-channel images, got {x.shape[1]} channels")
        return x

    def extract(self, images: np.ndarray, resize_mode: str, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Features (N×D) and logits (N×K) of uint8 images, a batch at a time."""
        feats, logits = [], []
        batch_size = self.batch_size(batch_size)
        for start in range(0, len(images), batch_size):
            x = self.prepare(images[start : start + batch_size], resize_mode)
            f, l = self.forward(x)
            if self.precision_used != "fp32" and self.precision_difference is None:
                exact = self.forward(x, "fp32")[0]
                self.precision_difference = float((f - exact).abs().max() / exact.abs().max().clamp_min(1e-12))
            feats.append(f.float().numpy())
            logits.append(l.float().numpy())
        if not feats:
            return np.zeros((0, self.feature_dim), np.float32), np.zeros((0, self.num_logits), np.float32)
        return np.concatenate(feats), np.concatenate(logits)


def check_feature_precision(precision: str) -> str:
    if precision not in FEATURE_PRECISIONS:
        raise InvalidRequestError(f"unknown feature precision {precision!r}; use one of {', '.join(FEATURE_PRECISIONS)} (fp32 keeps FID independent of the card)")
    return precision


def default_extractor(dataset: ImageDataset) -> str:
    """A labelled dataset gets its own classifier (meaningful without external weights); others the FID Inception."""
    return classifier.extractor_id(dataset) if dataset.labels is not None and dataset.num_classes >= 2 else inception.EXTRACTOR_ID


def has_logits(extractor_id: str) -> bool:
    """The imported TF weights have no 1008-way logits layer; every other extractor has class logits."""
    return extractor_id not in tf_import.EXTRACTOR_IDS


def check_extractor_id(extractor_id: str, dataset: ImageDataset) -> str:
    if extractor_id == inception.EXTRACTOR_ID or extractor_id in tf_import.EXTRACTOR_IDS:
        return extractor_id
    own = classifier.extractor_id(dataset)
    if extractor_id.endswith(classifier.SUFFIX):
        if extractor_id != own:
            raise InvalidRequestError(f"extractor {extractor_id!r} does not fit this run's dataset {dataset.id}; its classifier is {own!r}")
        if dataset.labels is None:
            raise InvalidRequestError(f"dataset {dataset.id} has no labels, so it has no classifier extractor; use {inception.EXTRACTOR_ID!r}")
        return extractor_id
    known = ", ".join(repr(e) for e in (inception.EXTRACTOR_ID, *tf_import.EXTRACTOR_IDS))
    raise InvalidRequestError(f"unknown extractor {extractor_id!r}; known: {known}, {own!r} (this run's dataset classifier)")


class ExtractorCache:
    """Keeps the last `capacity` extractors loaded (one per dataset classifier, one Inception); fits a missing dataset
    classifier when allowed. Keyed by dataset id, so it is bounded: a dataset whose content changes has a new id."""

    def __init__(self, store, inception_weights: str = "", inception_sha256: str = inception.WEIGHTS_SHA256, auto_fit: bool = True, device: str = "cpu",
                 capacity: int = 4, precision: str = "fp32"):
        from ganworks.telemetry import pick_device

        self.store, self.inception_weights, self.inception_sha256 = store, inception_weights, inception_sha256
        # On CUDA every forward pass sets TF32 off (unless precision says otherwise) and puts the flags back after:
        # cuDNN would run convolutions in TF32 (about 1e-3 relative), and features must equal the CPU's.
        self.auto_fit, self.device, self.precision = auto_fit, pick_device(device), check_feature_precision(precision)
        self.loaded: BoundedCache[Extractor] = BoundedCache("extractors", capacity)

    def get(self, extractor_id: str, dataset: ImageDataset, spec: str, on_phase: Callable[[str], None] | None = None) -> Extractor:
        check_extractor_id(extractor_id, dataset)
        generic = extractor_id == inception.EXTRACTOR_ID or extractor_id in tf_import.EXTRACTOR_IDS
        key = (extractor_id, "" if generic else dataset.id)
        return self.loaded.get_or_create(key, lambda: self._with_precision(self._open(extractor_id, dataset, spec, on_phase)).to(self.device))

    def _with_precision(self, extractor: Extractor) -> Extractor:
        extractor.precision = self.precision
        return extractor

    def _open(self, extractor_id: str, dataset: ImageDataset, spec: str, on_phase) -> Extractor:
        if extractor_id == inception.EXTRACTOR_ID:
            net = inception.load_inception(self.inception_weights, self.inception_sha256, self.store)
            return Extractor(extractor_id, net, inception.INPUT_SIZE, 3, inception.FEATURE_DIM, inception.NUM_LOGITS, {"weights": self.inception_weights, "sha256": self.inception_sha256})
        if extractor_id in tf_import.EXTRACTOR_IDS:
            net, manifest = tf_import.load(self.store, extractor_id)
            source = {"weights": self.store.url_for(tf_import.STORE_PREFIX), "sha256": manifest["sha256"], "source_sha256": manifest.get("source_sha256")}
            return Extractor(extractor_id, net, inception.INPUT_SIZE, 3, inception.FEATURE_DIM, 0, source)
        try:
            net, manifest = classifier.load(self.store, extractor_id, dataset.id)
        except ExtractorMissingError:
            if not self.auto_fit:
                raise
            log.info("%s for %s is not in the store yet: fitting it now (about a minute on a CPU)", extractor_id, dataset.id)
            if on_phase:
                on_phase("fitting-extractor")
            net, manifest = classifier.fit(spec, dataset.image_size, dataset.channels, split=classifier.dataset_split(dataset))
            classifier.save(self.store, net, manifest)
        return Extractor(extractor_id, net, int(manifest["image_size"]), int(manifest["channels"]), classifier.FEATURE_DIM, int(manifest["num_classes"]), manifest)


__all__ = ["FEATURE_PRECISIONS", "RESIZE_MODES", "Extractor", "ExtractorCache", "check_extractor_id", "check_feature_precision", "check_resize_mode",
           "default_extractor", "has_logits"]
