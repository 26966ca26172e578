"""The `augmentation` metric: real minority rows added back to a training set that lost most of them make the
downstream models better on the held-out rows (a positive gain); random rows labelled minority do not."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator_service.metrics import METRICS, compute
from ganworks.tabular.data import TabularDataset, load_table


@pytest.fixture(scope="module")
def cut():
    """breast-cancer's training split with the malignant class cut to 10 % of it, the cut rows, and the test split."""
    train, test = load_table("breast-cancer", split="train"), load_table("breast-cancer", split="test")
    target = train.schema.target
    labels = np.asarray(train.columns[target]).astype(str)
    levels, counts = np.unique(labels, return_counts=True)
    minority = levels[counts.argmin()]
    rare, common = np.flatnonzero(labels == minority), np.flatnonzero(labels != minority)
    keep = int(round(len(common) / 9))  # minority / (minority + common) = 10 %
    kept, removed = rare[:keep], rare[keep:]
    real = TabularDataset(columns=train.rows(np.sort(np.concatenate([common, kept]))), schema=train.schema, id="cut", source="test")
    return real, train.rows(removed), test, target, minority


def _fake(columns: dict, schema) -> TabularDataset:
    return TabularDataset(columns=columns, schema=schema, id="fake", source="test")


def test_real_minority_rows_added_back_give_a_positive_gain_and_random_rows_about_none(cut):
    real, removed, test, target, minority = cut
    back = compute("augmentation", real, _fake(removed, real.schema), held_out=test)

    rng = np.random.default_rng(0)
    n = len(removed[target])
    noise = {c.name: (rng.uniform(np.min(real.columns[c.name]), np.max(real.columns[c.name]), n) if c.kind in ("continuous", "integer")
                      else np.full(n, minority, dtype=object)) for c in real.schema.columns}
    random_rows = compute("augmentation", real, _fake(noise, real.schema), held_out=test)

    assert back["augmentation_added"] == random_rows["augmentation_added"] == n
    for model in ("logreg", "hgb"):
        assert back[f"augmentation_gain_recall_{model}"] > 0.05, model
        assert back[f"augmentation_gain_balanced_accuracy_{model}"] > 0.02, model
        assert back[f"augmentation_recall_augmented_{model}"] == pytest.approx(back[f"augmentation_recall_real_{model}"] + back[f"augmentation_gain_recall_{model}"])
        assert abs(random_rows[f"augmentation_gain_pr_auc_{model}"]) < 0.03, model
        assert random_rows[f"augmentation_gain_balanced_accuracy_{model}"] < back[f"augmentation_gain_balanced_accuracy_{model}"], model
    # Seeded: the same inputs give the same numbers.
    assert compute("augmentation", real, _fake(removed, real.schema), held_out=test) == back


def test_the_gains_are_exported_as_gauges_and_a_snapshot_without_minority_rows_gains_nothing(cut):
    real, removed, test, target, minority = cut
    assert METRICS["augmentation"].gauges["augmentation_gain_pr_auc_hgb"] == "augmentation_gain_pr_auc_hgb"
    none = compute("augmentation", real, _fake({k: v[:0] for k, v in removed.items()}, real.schema), held_out=test)
    assert none["augmentation_added"] == 0
    assert all(none[f"augmentation_gain_{s}_{m}"] == 0 for s in ("recall", "f1", "pr_auc", "balanced_accuracy") for m in ("logreg", "hgb"))


def test_images_real_rare_class_images_added_back_raise_its_recall_and_the_numbers_are_seeded():
    from ganworks.data import load_dataset

    # Three digit classes, 3 cut to 5 training images (renumbered: 1 → 0, 3 → 1, 7 → 2); a small set keeps the CNNs quick.
    # (Noise labelled 3 is no control here: with 5 real threes, anything that shifts the prior towards 3 raises its
    # recall almost as much; the table test above shows noise doing nothing where the prior is not the whole story.)
    train, test = load_dataset("digits:1,7,3=5", split="train"), load_dataset("digits:1,3,7", split="test")
    full = load_dataset("digits:1,3,7", split="train")
    threes = full.images[full.labels == 1]
    kwargs = dict(real_labels=test.labels, fake_labels=np.ones(len(threes), dtype=np.int64), train_images=train.images, train_labels=train.labels, epochs=3)

    back = compute("augmentation_images", test.images, threes, **kwargs)

    assert back["augmentation_images_class"] == 1 and back["augmentation_images_added"] == len(threes)
    assert back["augmentation_recall_real_cnn"] < 0.2 and back["augmentation_gain_recall_cnn"] > 0.5
    assert back["augmentation_gain_balanced_accuracy_cnn"] > 0.1 and back["augmentation_gain_pr_auc_cnn"] > 0
    assert compute("augmentation_images", test.images, threes, **kwargs) == back
    assert METRICS["augmentation_images"].gauges["augmentation_gain_recall_cnn"] == "augmentation_gain_recall_cnn"
