"""`<dataset>-classifier` (e.g. `digits-classifier`): a small CNN that ganworks fits on a labelled dataset itself.

It gives domain features (the 128-d penultimate layer) for FID/KID/PRDC and class logits for IS and mode
coverage, so datasets far from ImageNet get meaningful numbers without external weights. Stored as
`extractors/<extractor-id>/<dataset-id>/classifier.safetensors` plus `manifest.json` (written last, with the
weights' sha256), fitted on split "train", its accuracy on split "test" recorded.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluator_service.errors import ExtractorMissingError, InvalidRequestError, WeightsIntegrityError
from ganworks.data import ImageDataset, load_dataset
from ganworks.errors import ObjectNotFoundError
from ganworks.layout import EXTRACTOR_WEIGHTS, MANIFEST, extractor_key

log = logging.getLogger(__name__)

SUFFIX = "-classifier"
FEATURE_DIM = 128
FORMAT_VERSION = 1


def extractor_id(dataset: ImageDataset) -> str:
    """`digits-classifier` for the digits dataset; `<name>-classifier` for others."""
    return dataset_name(dataset) + SUFFIX


def dataset_split(dataset: ImageDataset) -> str:
    """The split a dataset id names ("train" or "test"): a private run's classifier is fitted on its held-out split."""
    return dataset.id.rsplit("-", 3)[-2]


def dataset_name(dataset: ImageDataset) -> str:
    # Dataset ids are "<name>-<H>x<W>x<C>-<split>-<hash>"; the name itself may contain dashes.
    return dataset.id.rsplit("-", 3)[0]


class DomainClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int, image_size: int):
        super().__init__()
        self.channels, self.num_classes, self.image_size = channels, num_classes, image_size
        self.body = nn.Sequential(
            # A strided first layer keeps fitting to tens of seconds on a busy CPU.
            nn.Conv2d(channels, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(48, 64, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4),
        )
        self.penultimate = nn.Linear(64 * 16, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N×C×S×S in [0, 1] -> (N×128 features, N×classes logits)."""
        features = F.relu(self.penultimate(self.body(2 * x - 1).flatten(1)))
        return features, self.head(features)


def _as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


def _shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to max_shift pixels: cheap augmentation that makes the features less brittle."""
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=generator)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def accuracy(net: DomainClassifier, dataset: ImageDataset) -> float:
    with torch.no_grad():
        _, logits = net(_as_input(dataset.images))
    return float((logits.argmax(1).numpy() == dataset.labels).mean())


def fit(spec: str, image_size: int, channels: int | None = None, epochs: int = 6, batch_size: int = 64, seed: int = 0, split: str = "train") -> tuple[DomainClassifier, dict]:
    """Fits the classifier on split `split` ("train"; "test" for private runs) of a labelled dataset; returns it with its manifest."""
    train = load_dataset(spec, image_size=image_size, channels=channels, split=split)
    if train.labels is None or train.num_classes < 2:
        raise InvalidRequestError(f"dataset {spec!r} has no class labels (or a single class); a classifier extractor needs a labelled dataset — use inception-v3-fid instead")
    test = load_dataset(spec, image_size=image_size, channels=channels, split="test")
    started = time.monotonic()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DomainClassifier(train.channels, train.num_classes, train.image_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    x_all, y_all = _as_input(train.images), torch.from_numpy(train.labels)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            _, logits = net(_shift(x_all[idx], gen))
            loss = F.cross_entropy(logits, y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    net.eval().requires_grad_(False)
    held_out = accuracy(net, test) if len(test) else float("nan")
    manifest = {
        "format_version": FORMAT_VERSION,
        "extractor": extractor_id(train),
        "dataset_id": train.id,
        "dataset_spec": spec,
        "image_size": train.image_size,
        "channels": train.channels,
        "num_classes": train.num_classes,
        "feature_dim": FEATURE_DIM,
        "train_samples": len(train),
        "epochs": epochs,
        "seed": seed,
        "test_accuracy": held_out,
        "fit_seconds": round(time.monotonic() - started, 2),
        "created_at": time.time(),
    }
    log.info("fitted %s on %s (%d images, %d epochs) in %.1fs; held-out accuracy %.3f", manifest["extractor"], train.id, len(train), epochs, manifest["fit_seconds"], held_out)
    return net, manifest


def save(store, net: DomainClassifier, manifest: dict) -> str:
    """Weights first, manifest (with their sha256) last: a reader never sees a manifest without its weights."""
    extractor, dataset_id = manifest["extractor"], manifest["dataset_id"]
    weights = save_safetensors({k: v.contiguous() for k, v in net.state_dict().items()}, metadata={"format": "pt"})
    store.put_bytes(extractor_key(extractor, dataset_id, EXTRACTOR_WEIGHTS), weights)
    store.put_json(extractor_key(extractor, dataset_id, MANIFEST), {**manifest, "sha256": hashlib.sha256(weights).hexdigest()})
    return store.url_for(extractor_key(extractor, dataset_id))


def load(store, extractor: str, dataset_id: str) -> tuple[DomainClassifier, dict]:
    weights_url = store.url_for(extractor_key(extractor, dataset_id, EXTRACTOR_WEIGHTS))
    try:
        manifest = store.get_json(extractor_key(extractor, dataset_id, MANIFEST))
    except ObjectNotFoundError:
        raise ExtractorMissingError(f"no {extractor} fitted for dataset {dataset_id} in {store.url}; run `ganworks evaluator fit-extractor --dataset <spec> --image-size <px> --store {store.url}`") from None
    try:
        weights = store.get_bytes(extractor_key(extractor, dataset_id, EXTRACTOR_WEIGHTS))
    except ObjectNotFoundError:
        raise ExtractorMissingError(f"{weights_url} is missing although its manifest exists; fit the extractor again") from None
    digest = hashlib.sha256(weights).hexdigest()
    if digest != manifest.get("sha256"):
        raise WeightsIntegrityError(f"sha256 of {weights_url} is {digest}, its manifest says {manifest.get('sha256')}; fit the extractor again")
    net = DomainClassifier(int(manifest["channels"]), int(manifest["num_classes"]), int(manifest["image_size"]))
    try:
        net.load_state_dict(load_safetensors(weights))
    except Exception as exc:  # safetensors/torch raise several types for a mismatched file
        raise WeightsIntegrityError(f"{weights_url} does not fit its manifest: {exc}") from None
    return net.eval().requires_grad_(False), manifest
