"""Augmentation gain for conditional image runs: the `utility` metric's small CNN trained (a) on the real training
images and (b) on them plus the snapshot's images of the rarest training class (with the labels they were asked
for), both scored on the real held-out images: the rare class's recall, F1 and average precision (PR-AUC, from the
CNN's softmax probability of the class), and balanced accuracy (mean per-class recall); the gain is (b) − (a).
Seeded: the same inputs give the same numbers. The table-run version is `augmentation`.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError
from evaluator_service.metrics.spec import (GENERATED_IMAGES, GENERATED_LABELS, HELD_OUT_IMAGES, HELD_OUT_LABELS, REFERENCE_IMAGES, REFERENCE_LABELS,
                                            Metric, Param)

SCORES = ("recall", "f1", "pr_auc", "balanced_accuracy")


def _scores(logits: np.ndarray, labels: np.ndarray, minority: int) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score

    predicted = logits.argmax(1)
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probability = shifted[:, minority] / shifted.sum(1)
    truth = labels == minority
    recalls = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    return {"recall": float((predicted[truth] == minority).mean()), "f1": float(f1_score(truth, predicted == minority, zero_division=0)),
            "pr_auc": float(average_precision_score(truth, probability)), "balanced_accuracy": float(np.mean(recalls))}


def augmentation_images(real_images: np.ndarray, fake_images: np.ndarray, real_labels: np.ndarray | None = None, fake_labels: np.ndarray | None = None,
                        train_images: np.ndarray | None = None, train_labels: np.ndarray | None = None, epochs: int = 5, learning_rate: float = 2e-3,
                        seed: int = 0) -> dict[str, float]:
    """real_*: the held-out split; fake_*: generated images and the labels asked for; train_*: the real training split."""
    from evaluator_service.metrics.utility import fit_classifier, predict

    if train_images is None or train_labels is None or real_labels is None or fake_labels is None:
        raise InvalidRequestError("augmentation_images needs labelled training, held-out and generated images (a conditional run)")
    train_labels, real_labels, fake_labels = (np.asarray(x, dtype=np.int64) for x in (train_labels, real_labels, fake_labels))
    if len(fake_labels) and fake_labels.min() < 0:
        raise InvalidRequestError("augmentation_images needs a conditional model: the generator returned images without class labels (label -1)")
    counts = np.bincount(train_labels)
    num_classes = max(len(counts), int(real_labels.max(initial=0)) + 1)
    present = np.flatnonzero(counts)
    if len(present) < 2 or not np.any(real_labels == present[counts[present].argmin()]):
        raise InsufficientSamplesError("augmentation_images needs two classes in the training images and the rarest one among the held-out images")
    minority = int(present[counts[present].argmin()])
    added = fake_labels == minority
    before = _scores(predict(fit_classifier(train_images, train_labels, num_classes, epochs, learning_rate, seed), real_images), real_labels, minority)
    if added.any():
        net = fit_classifier(np.concatenate([train_images, fake_images[added]]), np.concatenate([train_labels, fake_labels[added]]), num_classes, epochs,
                             learning_rate, seed)
        after = _scores(predict(net, real_images), real_labels, minority)
    else:  # no image of the rare class among the samples: nothing added, no gain
        after = before
    out = {"augmentation_images_added": float(added.sum()), "augmentation_images_class": float(minority)}
    for score in SCORES:
        out[f"augmentation_{score}_real_cnn"] = before[score]
        out[f"augmentation_{score}_augmented_cnn"] = after[score]
        out[f"augmentation_gain_{score}_cnn"] = after[score] - before[score]
    return out


METRIC = Metric(
    "augmentation_images", augmentation_images, HELD_OUT_IMAGES, GENERATED_IMAGES,
    ("augmentation_images_added", "augmentation_images_class", *(f"augmentation_{s}_{side}_cnn" for s in SCORES for side in ("real", "augmented")),
     *(f"augmentation_gain_{s}_cnn" for s in SCORES)),
    "the utility CNN trained on real images vs real + generated images of the rarest class, scored on held-out images (conditional runs)",
    params=(
        Param("epochs", int, 5, 1, 100, "training epochs of each CNN"),
        Param("learning_rate", float, 2e-3, 0.0, 1.0, "peak Adam learning rate (one-cycle schedule)", open_low=True),
        Param("seed", int, 0, 0, 2**32 - 1, "seed of the CNNs' initial weights and batch order"),
    ),
    extra={"real_labels": HELD_OUT_LABELS, "fake_labels": GENERATED_LABELS, "train_images": REFERENCE_IMAGES, "train_labels": REFERENCE_LABELS},
    gauges={f"augmentation_gain_{s}_cnn": f"augmentation_gain_{s}_cnn" for s in SCORES},
    default=False,
)
