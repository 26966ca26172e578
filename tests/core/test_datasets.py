"""Datasets: digits, .npz files, image folders and store URLs, with stable ids and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ganworks.data import load_dataset
from ganworks.errors import DatasetError


def test_digits_are_resized_to_the_asked_power_of_two_with_ten_labelled_classes():
    data = load_dataset("digits", image_size=32)

    assert data.images.shape == (1797, 32, 32, 1) and data.images.dtype == np.uint8
    assert data.num_classes == 10 and sorted(set(data.labels.tolist())) == list(range(10))
    assert data.images.max() > 200  # full 0..255 range, not digits' 0..16


def test_train_and_test_splits_are_disjoint_and_cover_the_dataset():
    train, test, whole = (load_dataset("digits", 16, split=s) for s in ("train", "test", "all"))

    assert len(train) + len(test) == len(whole)
    rows = {img.tobytes() + bytes([lbl]) for img, lbl in zip(whole.images, whole.labels)}
    assert {img.tobytes() + bytes([lbl]) for img, lbl in zip(test.images, test.labels)} <= rows
    assert train.id != test.id


def test_dataset_id_is_stable_and_changes_with_preprocessing():
    assert load_dataset("digits", 16).id == load_dataset("digits", 16).id
    assert load_dataset("digits", 16).id != load_dataset("digits", 32).id


def test_npz_with_labels_loads_and_converts_channels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, images=rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), labels=np.array([0, 1, 2, 0, 1, 2]))

    data = load_dataset(str(path), channels=1)

    assert data.images.shape == (6, 16, 16, 1) and data.num_classes == 3


def test_image_folder_takes_classes_from_subfolders(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((20, 20, 3), i * 100, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")

    data = load_dataset(str(tmp_path), image_size=16)

    assert data.images.shape == (4, 16, 16, 3) and list(data.labels) == [0, 0, 1, 1]


def test_dataset_is_read_from_a_store_url(s3, tmp_path):
    from ganworks.store import open_store

    url = s3.new_bucket_url("data")
    store = open_store(url, settings=s3.store_settings())
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((3, 16, 16), dtype=np.uint8))
    store.put_file("sets/d.npz", path)
    bucket = url.split("/")[2]

    import os
    from unittest import mock

    with mock.patch.dict(os.environ, s3.env()):
        data = load_dataset(f"s3://{bucket}/data/sets/d.npz")

    assert data.images.shape == (3, 16, 16, 1)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 16, 16, 2), dtype=np.uint8), "C in \\(1, 3\\)"),
        (np.zeros((4, 16), dtype=np.uint8), "N×H×W"),
        (np.zeros((4, 16, 16), dtype=np.float32), "must be uint8"),
        (np.zeros((4, 16, 8), dtype=np.uint8), "must be square"),
        (np.zeros((0, 16, 16), dtype=np.uint8), "empty"),
    ],
)
def test_npz_of_the_wrong_shape_or_type_is_refused_naming_the_file(tmp_path, images, message):
    path = tmp_path / "bad.npz"
    np.savez(path, images=images)

    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(str(path))
    assert "bad.npz" in str(info.value)


def test_npz_labels_of_the_wrong_length_are_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((4, 16, 16), dtype=np.uint8), labels=np.array([1, 2]))

    with pytest.raises(DatasetError, match="labels must be N integers"):
        load_dataset(str(path))


def test_a_non_image_file_in_a_folder_is_named(tmp_path):
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")

    with pytest.raises(DatasetError, match="notes.txt is not an image"):
        load_dataset(str(tmp_path))


def test_a_corrupt_image_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")

    with pytest.raises(DatasetError, match="broken.png cannot be read"):
        load_dataset(str(tmp_path))


def test_a_missing_dataset_says_what_is_accepted():
    with pytest.raises(DatasetError, match="not found: give 'digits', 'fashion-mnist', a .npz file"):
        load_dataset("/no/such/place.npz")


def test_training_tensors_span_minus_one_to_one_and_save_back_to_the_same_pixels_even_from_read_only_arrays():
    from ganworks.images import from_uint8, to_uint8

    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    pixels.flags.writeable = False  # as arrays from Ray's object store arrive
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns that it cannot protect a read-only array it would share
        tensors = from_uint8(pixels)
    assert tensors.shape == (1, 3, 16, 16) and tensors.dtype == torch.float32
    assert tensors.min().item() == -1.0 and tensors.max().item() == 1.0
    assert np.array_equal(to_uint8(tensors), pixels)
