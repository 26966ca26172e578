"""The inception-v3-fid extractor and ganworks' FID give pytorch-fid's numbers: the pytorch-fid package itself (its
network built from torchvision, its get_activations and calculate_frechet_distance) runs on the same PNGs with the same
weights file, random weights saved in the published pt_inception layout, and the two sides are compared.

`make tools` installs pytorch-fid and its torchvision into .venv/tools/pytorch-fid (tests/tools/install-pytorch-fid.sh);
they run in a separate process, so nothing of theirs is imported into this one."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from evaluator_service.features import ExtractorCache, inception
from evaluator_service.metrics.fid import fid

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE_PATH = pathlib.Path(os.environ.get("GANWORKS_PYTORCH_FID_PATH", ROOT / ".venv" / "tools" / "pytorch-fid"))
IMAGES_PER_SET = 12
# Measured: features differ by at most 2.4e-5 of the largest feature (float32 through ~90 layers, batch norm folded into
# the convolutions, channels-last kernels), the FIDs by 1.2e-7 relative. Average-pooling with the padding counted, the
# torchvision way instead of the TF graph's, moves the features by 14-30 % and the FID by 17 %.
FEATURE_TOLERANCE = 1e-4
FID_RTOL = 1e-5


def _fixed_images(seed: int, low: int, high: int) -> np.ndarray:
    """32×32 RGB: 8×8 blocks of random colours in [low, high), upsampled, with a little pixel noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(low, high, size=(IMAGES_PER_SET, 8, 8, 3))
    images = blocks.repeat(4, axis=1).repeat(4, axis=2) + rng.integers(-8, 9, size=(IMAGES_PER_SET, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def _write_pngs(images: np.ndarray, folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """pytorch-fid's activations and FID for two fixed image sets, and the weights file it used."""
    if not (REFERENCE_PATH / "pytorch_fid").is_dir():
        pytest.fail(f"pytorch-fid is not installed in {REFERENCE_PATH}: run `make tools` (or set GANWORKS_PYTORCH_FID_PATH)")
    tmp = tmp_path_factory.mktemp("pytorch-fid")
    folders = [_write_pngs(_fixed_images(seed, low, high), tmp / name) for name, seed, low, high in (("a", 1, 0, 256), ("b", 2, 40, 200))]
    out, torch_home = tmp / "out", tmp / "torch-home"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REFERENCE_PATH))
    script = pathlib.Path(__file__).with_name("pytorch_fid_reference.py")
    done = subprocess.run([sys.executable, str(script), "--torch-home", str(torch_home), "--out", str(out), "--seed", "0", *map(str, folders)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the pytorch-fid side failed:\n{done.stderr[-4000:]}"
    return {
        "images": [np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(f.glob("*.png"))]) for f in folders],
        "activations": [np.load(out / f"activations_{name}.npy", allow_pickle=False) for name in "ab"],
        "result": json.loads((out / "result.json").read_text()),
        "weights": torch_home / "hub" / "checkpoints" / inception.WEIGHTS_FILE,
    }


@pytest.fixture(scope="module")
def ours(reference):
    """ganworks' extractor as the evaluator opens it, on the same PNGs and the same weights file."""
    weights = reference["weights"]
    cache = ExtractorCache(None, inception_weights=str(weights), inception_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    extractor = cache.get(inception.EXTRACTOR_ID, None, "")
    return [extractor.extract(images, "legacy-pytorch")[0] for images in reference["images"]]


def test_inception_v3_fid_features_equal_pytorch_fids_on_the_same_images_and_weights(reference, ours):
    assert reference["result"]["pytorch_fid"] == "0.3.0"
    for theirs, mine in zip(reference["activations"], ours):
        assert mine.shape == theirs.shape == (IMAGES_PER_SET, inception.FEATURE_DIM)
        assert theirs.std() > 0.01  # the random network keeps a spread of features, so the comparison means something
        np.testing.assert_allclose(mine, theirs, rtol=FEATURE_TOLERANCE, atol=FEATURE_TOLERANCE * np.abs(theirs).max())


def test_fid_of_inception_v3_fid_equals_pytorch_fids_fid_on_the_same_images_and_weights(reference, ours):
    theirs = reference["result"]["fid"]
    assert theirs > 1.0  # the two sets differ, so a zero or a constant could not pass
    assert fid(*ours)["fid"] == pytest.approx(theirs, rel=FID_RTOL)
