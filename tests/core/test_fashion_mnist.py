"""Fashion-MNIST from Debian's IDX files, and the IDX reader's checks on truncated or corrupt files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from ganworks import fashion_mnist
from ganworks.data import load_dataset
from ganworks.errors import DatasetError
from ganworks.idx import IDXFormatError, read_idx


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def _fake_fashion(folder, train=60_000, test=10_000, compress=True):
    """The four files of a Fashion-MNIST-shaped dataset (constant images, labels cycling 0..9)."""
    folder.mkdir(exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", np.full((n, 28, 28), 7, np.uint8)), ("labels-idx1", np.arange(n) % 10)):
            data = _idx(np.asarray(array))
            name = f"{prefix}-{kind}-ubyte"
            (folder / (name + ".gz" if compress else name)).write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return folder


def test_idx_reads_gzip_and_plain_files_alike(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx(array)))

    assert np.array_equal(read_idx(tmp_path / "a", 3), array) and np.array_equal(read_idx(tmp_path / "a.gz", 3), array)


@pytest.mark.parametrize(
    "content, message",
    [
        (_idx(np.zeros((4, 5, 5)))[:-3], "header says 4×5×5 = 100 values, the file holds 97"),
        (_idx(np.zeros((4, 5, 5))) + b"x", "holds 101"),
        (b"\x00\x00\x08\x03\x00\x00", "header is cut short"),
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x12\x34\x08\x03" + bytes(12), "not an IDX file (magic 12340803"),
        (struct.pack(">HBB", 0, 0x0D, 3) + bytes(12), "IDX type 0x0d is not supported"),
        (_idx(np.zeros((4, 5))), "has 2 dimensions, expected 3"),
        (gzip.compress(_idx(np.zeros((40, 5, 5))), mtime=0)[:-20], "gzip stream is truncated or corrupt"),  # mtime=0: the same test id in every process
    ],
)
def test_a_truncated_or_corrupt_idx_file_is_a_typed_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)

    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.gz") as raised:
        read_idx(path, 3)
    assert message in str(raised.value)


def test_a_missing_fashion_mnist_file_names_the_debian_package_and_the_four_files(tmp_path, monkeypatch):
    monkeypatch.setenv(fashion_mnist.ENV_DIR, str(tmp_path))

    with pytest.raises(DatasetError) as raised:
        load_dataset("fashion-mnist")
    message = str(raised.value)
    assert "dataset-fashion-mnist" in message and fashion_mnist.ENV_DIR in message
    assert all(name in message for name in fashion_mnist.FILES)


def test_fashion_mnist_files_of_the_wrong_length_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(fashion_mnist.ENV_DIR, str(_fake_fashion(tmp_path / "fm", train=600)))

    with pytest.raises(IDXFormatError, match=r"train-images-idx3-ubyte.gz: holds images of shape \(600, 28, 28\)"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_location_comes_from_the_environment_and_plain_files_work(tmp_path, monkeypatch):
    monkeypatch.setenv(fashion_mnist.ENV_DIR, str(_fake_fashion(tmp_path / "fm", compress=False)))

    test = load_dataset("fashion-mnist", split="test")

    assert test.images.shape == (10_000, 28, 28, 1) and int(test.images.max()) == 7


def test_fashion_mnist_has_its_own_60k_10k_split_ten_named_classes_and_is_resized_like_digits():
    train = load_dataset("fashion-mnist", split="train")
    test = load_dataset("fashion-mnist", image_size=32, split="test")

    assert train.images.shape == (60_000, 28, 28, 1) and test.images.shape == (10_000, 32, 32, 1)
    assert train.num_classes == 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.class_names[8] == "bag" and train.class_names[9] == "ankle-boot"
    assert test.id.startswith("fashion-mnist-32x32x1-test-") and test.id == load_dataset("fashion-mnist", image_size=32, split="test").id
    assert train.id != load_dataset("fashion-mnist", split="all").id
