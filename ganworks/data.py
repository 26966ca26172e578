"""Datasets: scikit-learn's digits, Fashion-MNIST, .npz files, image folders (class = subfolder), locally or from a store URL.

Every dataset becomes uint8 N×H×W×C pixels with optional integer labels and class names, and carries a stable id
(a hash of its pixels, labels and preprocessing) that keys cached reference statistics. Any spec may end in a
restriction, `NAME:class1,class2@COUNT`, or cut a class to make it rare, `NAME:shirt=1%` or `NAME:shirt=60` (see ganworks/subset.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import tempfile
import urllib.parse
import zipfile

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ganworks import fashion_mnist, subset
from ganworks.errors import DatasetError
from ganworks.images import from_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("all", "train", "test")
TEST_FRACTION = 0.2


@dataclasses.dataclass
class ImageDataset:
    images: np.ndarray  # uint8, N×H×W×C
    labels: np.ndarray | None  # int64, N
    num_classes: int
    id: str
    source: str
    class_names: tuple[str, ...] = ()  # one per class; indices as text when the data has no names

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def tensors(self, indices: np.ndarray | None = None) -> torch.Tensor:
        """Images (all, or those at `indices`) as float32 N×C×H×W in [-1, 1], the generator's output range."""
        images = self.images if indices is None else self.images[indices]
        return from_uint8(images)


def _resize(images: np.ndarray, size: int, source: str) -> np.ndarray:
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
    for i, img in enumerate(images):
        pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
        resized = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
        out[i] = resized[..., None] if resized.ndim == 2 else resized
    return out


def _set_channels(images: np.ndarray, channels: int | None, source: str) -> np.ndarray:
    if channels is None or images.shape[3] == channels:
        return images
    if channels == 3 and images.shape[3] == 1:
        return np.repeat(images, 3, axis=3)
    if channels == 1 and images.shape[3] == 3:
        grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    raise DatasetError(f"{source}: cannot convert {images.shape[3]} channels to {channels}")


def _split(n: int, split: str, test_start: int | None = None) -> np.ndarray:
    """A fixed, seed-independent partition: the same images are held out in every run (a dataset's own split when it has one)."""
    if test_start is not None:
        return {"all": np.arange(n), "train": np.arange(test_start), "test": np.arange(test_start, n)}[split]
    order = np.random.RandomState(0).permutation(n)
    cut = n - int(round(n * TEST_FRACTION))
    return {"all": np.arange(n), "train": np.sort(order[:cut]), "test": np.sort(order[cut:])}[split]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def _npz(path: pathlib.Path, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in ("images", "x", "arr_0") if k in data.files), None)
            if key is None:
                raise DatasetError(f"{source}: no 'images' array (found {data.files or 'nothing'}); save with np.savez(path, images=..., labels=...)")
            images = data[key]
            labels = data["labels"] if "labels" in data.files else (data["y"] if "y" in data.files else None)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{source}: not a readable .npz file ({exc})") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DatasetError(f"{source}: images must be N×H×W or N×H×W×C with C in (1, 3), got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise DatasetError(f"{source}: images must be uint8 (0–255), got {images.dtype}; convert with (x * 255).round().astype('uint8')")
    if images.shape[1] != images.shape[2]:
        raise DatasetError(f"{source}: images must be square, got {images.shape[1]}×{images.shape[2]}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"{source}: labels must be N integers for N={len(images)} images, got {labels.dtype} of shape {labels.shape}")
        if len(labels) and labels.min() < 0:
            raise DatasetError(f"{source}: labels must be >= 0, found {int(labels.min())}")
        labels = labels.astype(np.int64)
    return images, labels


def _folder(root: pathlib.Path, size: int | None, channels: int | None, source: str) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{source}: the folder has no files")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files} - {"."})
    if classes and any(p.parent == root for p in files):
        loose = next(p for p in files if p.parent == root)
        raise DatasetError(f"{source}: {loose.name} lies beside class subfolders; put every image in a class folder, or none")
    mode = {1: "L", 3: "RGB"}.get(channels or 3)
    pixels, labels = [], []
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{source}: {path.relative_to(root)} is not an image (expected one of {sorted(IMAGE_SUFFIXES)})")
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                array = np.asarray(img)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{source}: {path.relative_to(root)} cannot be read as an image ({exc})") from None
        if pixels and array.shape != pixels[0].shape:
            raise DatasetError(f"{source}: {path.relative_to(root)} is {array.shape[1]}×{array.shape[0]}, others {pixels[0].shape[1]}×{pixels[0].shape[0]}; pass an image size to resize all")
        pixels.append(array)
        if classes:
            labels.append(classes.index(path.parent.relative_to(root).as_posix()))
    images = np.stack(pixels)
    if images.ndim == 3:
        images = images[..., None]
    return images, (np.array(labels, dtype=np.int64) if classes else None), tuple(classes)


def _fetch(url: str, workdir: pathlib.Path) -> pathlib.Path:
    """Downloads a dataset object (or every object under a prefix) from a store URL to workdir."""
    from ganworks.store import open_store

    parsed = urllib.parse.urlsplit(url)
    store = open_store(f"{parsed.scheme}://{parsed.netloc}")
    key = parsed.path.strip("/")
    if key.endswith(".npz"):
        dst = workdir / pathlib.PurePosixPath(key).name
        store.get_file(key, dst)
        return dst
    objects = list(store.list(key + "/" if key else ""))
    if not objects:
        raise DatasetError(f"{url}: no such object or folder in the store")
    for info in objects:
        dst = workdir / info.key[len(key) :].lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(info.key, dst)
    return workdir


def dataset_id(name: str, images: np.ndarray, labels: np.ndarray | None, split: str) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    digest.update(f"{images.shape}|{split}".encode())
    _, h, w, c = images.shape
    return f"{name}-{h}x{w}x{c}-{split}-{digest.hexdigest()[:12]}"


def _read(spec: str, image_size: int | None, channels: int | None, workdir: pathlib.Path) -> tuple[str, np.ndarray, np.ndarray | None, tuple[str, ...], int | None]:
    """(name, images, labels, class names, start of the dataset's own test part or None) of an unrestricted spec."""
    if spec == "digits":
        images, labels = _digits()
        return "digits", images, labels, tuple(map(str, range(10))), None
    if spec == fashion_mnist.NAME:
        images, labels, test_start = fashion_mnist.load()
        return fashion_mnist.NAME, images, labels, fashion_mnist.CLASS_NAMES, test_start
    if spec.startswith("s3://"):
        path = _fetch(spec, workdir)
    elif spec.startswith("file://"):
        path = pathlib.Path(urllib.parse.unquote(urllib.parse.urlsplit(spec).path))
    else:
        path = pathlib.Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset {spec!r} not found: give 'digits', 'fashion-mnist', a .npz file, an image folder, or a store URL")
    name = pathlib.PurePosixPath(spec.rstrip("/")).stem or "dataset"
    if path.is_dir():
        images, labels, names = _folder(path, image_size, channels, spec)
    elif path.suffix == ".npz":
        images, labels = _npz(path, spec)
        names = tuple(map(str, range(int(labels.max()) + 1))) if labels is not None and len(labels) else ()
    else:
        raise DatasetError(f"dataset {spec!r} is neither a .npz file nor a folder of images")
    return name, images, labels, names, None


def load_dataset(spec: str, image_size: int | None = None, channels: int | None = None, split: str = "all") -> ImageDataset:
    """Loads `digits`, `fashion-mnist`, a .npz file, an image folder, or either from a store URL (file://, s3://), optionally restricted."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {SPLITS}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DatasetError(f"image size must be a positive integer, got {image_size!r}")
    source = spec
    # A path that exists as written is never taken apart, even if it looks like `name:classes@count`.
    base, restriction = (spec, subset.Restriction()) if pathlib.Path(spec).expanduser().exists() else subset.parse(spec)
    with tempfile.TemporaryDirectory(prefix="ganworks-data-") as tmp:
        name, images, labels, class_names, test_start = _read(base, image_size, channels, pathlib.Path(tmp))
    if len(images) == 0:
        raise DatasetError(f"{source}: the dataset is empty")
    index = _split(len(images), split, test_start)
    kept = subset.class_indices(restriction, class_names, source)
    if restriction.cuts:
        if labels is None:
            raise DatasetError(f"{source}: has no class labels, so no class can be cut")
        index = subset.apply_cuts(index, labels, subset.cut_indices(restriction, class_names, source))
    if restriction:
        index = index[subset.select(labels[index] if labels is not None else None, len(index), kept, restriction.count)]
    images = _set_channels(images[index], channels, source)
    if image_size is not None:
        images = _resize(images, image_size, source)
    images = np.ascontiguousarray(images)
    labels = labels[index] if labels is not None else None
    name += subset.id_suffix(restriction, kept, len(class_names))
    if labels is not None and restriction.classes:
        # The kept classes become 0..k-1, so a conditional model trained on them has no empty classes.
        labels = np.searchsorted(np.array(kept), labels).astype(np.int64)
        class_names = tuple(class_names[i] for i in kept)
    num_classes = (len(class_names) or int(labels.max()) + 1) if labels is not None and len(labels) else 0
    return ImageDataset(images=images, labels=labels, num_classes=num_classes, id=dataset_id(name, images, labels, split), source=source,
                        class_names=tuple(class_names) if labels is not None else ())


@dataclasses.dataclass
class DomainPair:
    """Two unpaired image sets of one size and channel count, domain A and domain B, for a translation model."""

    a: ImageDataset
    b: ImageDataset
    id: str  # stable: a hash of both domains' ids

    @property
    def image_size(self) -> int:
        return self.a.image_size

    @property
    def channels(self) -> int:
        return self.a.channels

    def __len__(self) -> int:
        return min(len(self.a), len(self.b))


def load_domains(spec_a: str, spec_b: str, image_size: int, channels: int | None = None, split: str = "all") -> DomainPair:
    """Domains A and B (any two dataset specs, e.g. two class subsets of one), each with its own split, at one size and channel count.

    Without `channels`, both get A's channel count (grey B images are repeated to RGB, RGB ones made grey).
    """
    a = load_dataset(spec_a, image_size=image_size, channels=channels, split=split)
    b = load_dataset(spec_b, image_size=image_size, channels=channels or a.channels, split=split)
    pair_id = hashlib.sha256(f"{a.id}|{b.id}".encode()).hexdigest()[:12]
    return DomainPair(a, b, f"pair-{a.id.rsplit('-', 1)[0]}--{b.id.rsplit('-', 1)[0]}-{pair_id}")
