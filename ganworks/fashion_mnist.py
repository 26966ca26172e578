"""Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test 28×28 grey product images in 10 classes.

Read from the four IDX files that Debian's `dataset-fashion-mnist` package installs; nothing is downloaded.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from ganworks.errors import DatasetError
from ganworks.idx import IDXFormatError, read_idx

NAME = "fashion-mnist"
ENV_DIR = "GANWORKS_FASHION_MNIST_DIR"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# The dataset's own class names, spelled to be typed in a dataset spec (`fashion-mnist:bag,ankle-boot`).
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
TRAIN_COUNT, TEST_COUNT = 60_000, 10_000


def data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def _locate(folder: pathlib.Path, name: str) -> pathlib.Path:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"Fashion-MNIST file {folder / name} is missing. Install Debian's {DEBIAN_PACKAGE} package "
        f"(`apt-get install {DEBIAN_PACKAGE}` puts it in {DEFAULT_DIR}), or set {ENV_DIR} to a folder holding "
        f"{', '.join(FILES)} (gzip-compressed or not)"
    )


def _part(folder: pathlib.Path, prefix: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _locate(folder, f"{prefix}-images-idx3-ubyte.gz"), _locate(folder, f"{prefix}-labels-idx1-ubyte.gz")
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape != (count, 28, 28):
        raise IDXFormatError(f"{images_path}: holds images of shape {images.shape}, Fashion-MNIST has {(count, 28, 28)}")
    if labels.shape != (count,):
        raise IDXFormatError(f"{labels_path}: holds {len(labels)} labels, Fashion-MNIST has {count}")
    if labels.max() >= len(CLASS_NAMES):
        raise IDXFormatError(f"{labels_path}: label {int(labels.max())} is out of range 0..{len(CLASS_NAMES) - 1}")
    return images, labels.astype(np.int64)


def load() -> tuple[np.ndarray, np.ndarray, int]:
    """Train then test images (uint8 N×28×28×1) and labels, and where the test part starts."""
    folder = data_dir()
    train_x, train_y = _part(folder, "train", TRAIN_COUNT)
    test_x, test_y = _part(folder, "t10k", TEST_COUNT)
    return np.concatenate([train_x, test_x])[..., None], np.concatenate([train_y, test_y]), TRAIN_COUNT
