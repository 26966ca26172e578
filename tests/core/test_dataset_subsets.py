"""Dataset restriction specs (`NAME:class1,class2@COUNT`): kept classes, a count cap, stable ids, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ganworks.data import load_dataset
from ganworks.errors import DatasetError
from ganworks.subset import parse


def test_a_spec_is_split_into_base_classes_and_count_without_touching_store_urls():
    assert parse("fashion-mnist:bag,ankle-boot@1000") == ("fashion-mnist", parse("x:bag,ankle-boot@1000")[1])
    assert parse("digits:3,5")[1].classes == ("3", "5") and parse("digits:3,5")[1].count is None
    assert parse("digits@500")[1].count == 500 and not parse("digits@500")[1].classes
    assert parse("s3://bucket/faces.npz") == ("s3://bucket/faces.npz", parse("digits")[1])
    assert parse("s3://bucket/faces.npz:0,2")[0] == "s3://bucket/faces.npz"
    assert parse("s3://bucket/faces@2x.npz") == ("s3://bucket/faces@2x.npz", parse("digits")[1])


def test_classes_by_index_keep_only_those_classes_renumbered_in_their_original_order():
    data = load_dataset("digits:5,3", image_size=8)

    assert data.num_classes == 2 and data.class_names == ("3", "5")
    assert sorted(set(data.labels.tolist())) == [0, 1]
    whole = load_dataset("digits", image_size=8)
    assert len(data) == int(np.isin(whole.labels, [3, 5]).sum())


def test_classes_by_name_and_a_count_take_the_same_number_from_each_class_every_time(tmp_path):
    from PIL import Image

    for cls in ("cats", "dogs", "owls"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((8, 8, 3), i * 40 + len(cls), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")

    first = load_dataset(f"{tmp_path}:owls,cats@6")
    again = load_dataset(f"{tmp_path}:cats,owls@6")

    assert first.class_names == ("cats", "owls") and np.bincount(first.labels).tolist() == [3, 3]
    assert first.id == again.id and np.array_equal(first.images, again.images)


def test_the_restriction_is_part_of_the_dataset_id():
    ids = {load_dataset(spec, image_size=8).id for spec in ("digits", "digits:3,5", "digits:3,5@100", "digits@100")}

    assert len(ids) == 4
    assert load_dataset("digits:3,5@100", image_size=8).id.startswith("digits.c3-5.n100-8x8x1-all-")


def test_a_count_applies_to_each_split_and_works_without_labels(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, images=np.arange(50 * 4 * 4, dtype=np.uint8).reshape(50, 4, 4))

    assert len(load_dataset(f"{path}@7", split="train")) == 7 and len(load_dataset(f"{path}@7", split="test")) == 7


def test_an_unknown_class_name_lists_the_allowed_ones():
    with pytest.raises(DatasetError) as raised:
        load_dataset("digits:3,seven")

    assert "unknown class 'seven'" in str(raised.value) and "0=0, 1=1" in str(raised.value) and "9=9" in str(raised.value)


@pytest.mark.parametrize("spec, message", [("digits:", "class list after ':' is empty"), ("digits:3,,5", "empty entry"), ("digits@0", "positive integer"), ("digits@many", "positive integer")])
def test_a_malformed_restriction_says_what_is_wrong(spec, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(spec)


def test_classes_of_an_unlabelled_dataset_are_refused(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, images=np.zeros((4, 4, 4), np.uint8))

    with pytest.raises(DatasetError, match="has no class labels"):
        load_dataset(f"{path}:0")
