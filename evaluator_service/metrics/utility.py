"""Utility of labelled synthetic images: can a classifier trained on them stand in for one trained on real images?

Train-on-synthetic, test-on-real (Esteban et al. 2017), as the classification accuracy score of Ravuri &
Vinyals 2019: one fixed small CNN is trained on n generated images with the labels the generator was asked
for (`utility_tstr`: its accuracy on the real held-out split), and the same CNN with the same seed and schedule
on n real training images (`utility_trtr`); `utility_ratio` is tstr / trtr (≈1: as useful as real data; near
chance / trtr: useless). Inputs are pixels and labels, not features, so the extractor does not matter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError
from evaluator_service.metrics.spec import (GENERATED_IMAGES, GENERATED_LABELS, HELD_OUT_IMAGES, HELD_OUT_LABELS, REFERENCE_IMAGES, REFERENCE_LABELS,
                                            Metric, Param)
from ganworks.images import from_uint8

INPUT_SIZE = 32  # every image is resized to this before the classifier, whatever the run's image size
BATCH_SIZE = 64


class UtilityClassifier(nn.Module):
    """Three conv blocks and a linear head: small enough to train in seconds on a CPU, strong enough for
    digits and Fashion-MNIST to show the gap between real and synthetic training data."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        blocks: list[nn.Module] = []
        for c_in, c_out in ((channels, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(64 * (INPUT_SIZE // 8) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C -> float N×C×32×32 in [-1, 1]."""
    x = from_uint8(np.ascontiguousarray(images))
    if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


def fit_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int, learning_rate: float, seed: int) -> UtilityClassifier:
    """The classifier trained on (images, labels); the same inputs and seed give the same weights."""
    x, y = as_input(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        net = UtilityClassifier(x.shape[1], num_classes)
        order_rng = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=epochs * -(-len(x) // BATCH_SIZE))
        net.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=order_rng).split(BATCH_SIZE):
                if len(idx) < 2:  # batch norm needs two samples
                    schedule.step()
                    continue
                loss = F.cross_entropy(net(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def predict(net: UtilityClassifier, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class logits (N×K float32) of uint8 images."""
    if len(images) == 0:
        return np.zeros((0, net.head.out_features), np.float32)
    return torch.cat([net(as_input(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]).numpy()


def _accuracy(net: UtilityClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(net, images).argmax(1) == labels).mean())


def _labels(name: str, labels: np.ndarray | None, count: int) -> np.ndarray:
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if len(labels) != count:
        raise InvalidRequestError(f"utility needs a label for each of the {count} {name} images, got {len(labels)} labels")
    return labels


def utility(real_images: np.ndarray, fake_images: np.ndarray, real_labels: np.ndarray | None = None, fake_labels: np.ndarray | None = None,
            train_images: np.ndarray | None = None, train_labels: np.ndarray | None = None, num_train: int | None = None,
            epochs: int = 10, learning_rate: float = 2e-3, seed: int = 0) -> dict[str, float]:
    """real_*: the held-out split (the test set); fake_*: generated images and the labels asked for; train_*: the real training split."""
    if train_images is None:
        raise InvalidRequestError("utility needs real training images (train_images, train_labels) to train its baseline on")
    real_labels = _labels("held-out", real_labels, len(real_images))
    fake_labels = _labels("generated", fake_labels, len(fake_images))
    train_labels = _labels("training", train_labels, len(train_images))
    if len(fake_labels) and fake_labels.min() < 0:
        raise InvalidRequestError("utility needs a conditional model: the generator returned images without class labels (label -1); drop utility from the metrics")
    num_classes = int(max(real_labels.max(initial=-1), train_labels.max(initial=-1))) + 1
    if len(fake_labels) and fake_labels.max() >= num_classes:
        raise InvalidRequestError(f"the generator returned class label {int(fake_labels.max())}, but the dataset has {num_classes} classes")
    n = min(num_train or len(fake_images), len(fake_images), len(train_images))
    if n < 2 or len(real_images) < 1 or num_classes < 2:
        raise InsufficientSamplesError(f"utility needs at least 2 generated and training images, 1 held-out image and 2 classes, got {n}, {len(real_images)} and {num_classes}")
    # The real baseline gets a fixed random subset of the same size; generated images are already a random draw.
    pick = np.sort(np.random.RandomState(seed).permutation(len(train_images))[:n])
    synthetic = fit_classifier(fake_images[:n], fake_labels[:n], num_classes, epochs, learning_rate, seed)
    real = fit_classifier(train_images[pick], train_labels[pick], num_classes, epochs, learning_rate, seed)
    tstr, trtr = _accuracy(synthetic, real_images, real_labels), _accuracy(real, real_images, real_labels)
    return {"utility_tstr": tstr, "utility_trtr": trtr, "utility_ratio": tstr / trtr if trtr > 0 else 0.0, "utility_num_train": float(n)}


METRIC = Metric(
    "utility", utility, HELD_OUT_IMAGES, GENERATED_IMAGES, ("utility_tstr", "utility_trtr", "utility_ratio", "utility_num_train"),
    "accuracy on real held-out images of a classifier trained on generated images, vs trained on as many real ones (conditional models)",
    params=(
        Param("num_train", int, None, 2, 1_000_000, "images each classifier trains on (default: all generated, at most the training split)", at_most_samples=True),
        # Time grows with num_train × epochs: ~0.4 ms per image and epoch on one CPU core for each of the two classifiers
        # (5,000 Fashion-MNIST images, 10 epochs: 36 s of CPU in all).
        Param("epochs", int, 10, 1, 100, "training epochs of each classifier"),
        Param("learning_rate", float, 2e-3, 0.0, 1.0, "peak Adam learning rate (one-cycle schedule)", open_low=True),
        Param("seed", int, 0, 0, 2**32 - 1, "seed of the classifiers' initial weights, batch order and the real subset"),
    ),
    extra={"real_labels": HELD_OUT_LABELS, "fake_labels": GENERATED_LABELS, "train_images": REFERENCE_IMAGES, "train_labels": REFERENCE_LABELS},
    gauges={"utility_tstr": "utility_tstr", "utility_trtr": "utility_trtr", "utility_ratio": "utility_ratio"},
    default=False,
)
