"""Dataset specs that make a class rare: `NAME:class=COUNT` or `NAME:class=PERCENT%` keeps every class whole but cuts
one to that many images (per split), in a fixed order, so a user can reproduce an imbalanced training set."""

from __future__ import annotations

import numpy as np
import pytest

from ganworks.data import load_dataset
from ganworks.errors import DatasetError


def _counts(ds) -> list[int]:
    return np.bincount(ds.labels, minlength=ds.num_classes).tolist()


def test_a_cut_to_a_count_keeps_that_many_of_the_class_and_every_other_class_whole():
    whole, cut = load_dataset("digits", split="train"), load_dataset("digits:3=10", split="train")
    expected = _counts(whole)
    expected[3] = 10
    assert _counts(cut) == expected and cut.num_classes == 10 and cut.class_names == whole.class_names
    assert cut.id != whole.id and ".cut-3-10" in cut.id
    # The kept images are images of the class from the split, the same ones every time.
    assert np.array_equal(load_dataset("digits:3=10", split="train").images, cut.images)


def test_a_cut_to_a_share_keeps_that_percentage_of_the_class_in_each_split():
    for split in ("train", "test"):
        whole, cut = load_dataset("digits", split=split), load_dataset("digits:3=10%", split=split)
        assert _counts(cut)[3] == round(_counts(whole)[3] * 0.10)
        assert [n for i, n in enumerate(_counts(cut)) if i != 3] == [n for i, n in enumerate(_counts(whole)) if i != 3]


def test_a_cut_beside_named_classes_keeps_only_those_classes_renumbered():
    ds = load_dataset("digits:4,3=5", split="all")
    assert ds.num_classes == 2 and ds.class_names == ("3", "4")
    assert _counts(ds) == [5, int((load_dataset("digits").labels == 4).sum())]


@pytest.mark.parametrize("spec, message", [
    ("digits:3=0", "'3=0' is not a cut; write CLASS=COUNT"),
    ("digits:3=150%", "'3=150%' is not a cut"),
    ("digits:3=1.5", "'3=1.5' is not a cut"),
    ("digits:twelve=5", "unknown class 'twelve'"),
])
def test_a_bad_cut_is_refused_saying_how_to_write_one(spec, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(spec)


def test_fashion_mnist_shirt_cut_to_one_percent_is_60_training_images():
    pytest.importorskip("ganworks.fashion_mnist")
    try:
        ds = load_dataset("fashion-mnist:shirt=1%", split="train")
    except DatasetError as exc:
        pytest.skip(f"Fashion-MNIST is not installed here ({exc}); `make tools` installs it")
    counts = _counts(ds)
    assert counts[ds.class_names.index("shirt")] == 60 and sum(counts) == 54_000 + 60
