"""The reference side of the FID agreement test, run in its own process with the pytorch-fid package on PYTHONPATH.

    python pytorch_fid_reference.py --torch-home DIR --out DIR --seed N IMAGES_A IMAGES_B

Makes random weights for pytorch-fid's network (torchvision's Inception-v3 with 1008 classes and no aux head, batch-norm
statistics measured on the images so activations keep their scale through the depth) and saves them where
pytorch-fid looks for its published file: TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth. Then
pytorch-fid builds its own InceptionV3 from that file, computes the activations of both folders' PNGs with its
get_activations and their FID with its calculate_frechet_distance. Writes OUT/activations_a.npy, OUT/activations_b.npy
and OUT/result.json. Nothing here touches the network: the weights file is found in the cache.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib

import numpy as np
import torch
from PIL import Image

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
_declared = []  # keeps the torchvision op declarations below alive for the life of the process


def import_torchvision():
    """PyPI's Linux torchvision wheels are CUDA builds: next to a CPU torch their compiled ops (_C.so links
    libc10_cuda.so and libtorch_cuda.so) do not load. torchvision's extension.py expects that and goes on without them,
    but its _meta_registrations registers fake kernels for torchvision::nms and torchvision::qnms unconditionally,
    which fails with "operator torchvision::nms does not exist". Declaring those two schemas (never called here) lets
    the pure-Python models import; where the compiled ops do load, nothing is declared."""
    package = pathlib.Path(importlib.util.find_spec("torchvision").origin).parent
    try:
        torch.ops.load_library(str(package / "_C.so"))
    except OSError:
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _declared.append(lib)
    import torchvision

    return torchvision


def random_weights(torchvision, seed: int, pictures: torch.Tensor) -> dict[str, torch.Tensor]:
    """pytorch-fid's layout with seeded random convolutions; batch norm running stats from one pass over `pictures`
    (N×3×299×299 in [-1, 1]), so features stay near unit scale: pytorch-fid's formula checks its result's imaginary
    part against an absolute 1e-3, which large features would exceed on few images."""
    torch.manual_seed(seed)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # the running stats become this pass's batch stats
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    net.train()
    with torch.no_grad():
        net(pictures)
    return net.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-home", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("images", nargs=2)
    args = parser.parse_args()
    os.environ["TORCH_HOME"] = args.torch_home
    torchvision = import_torchvision()
    from pytorch_fid import fid_score
    from pytorch_fid.inception import InceptionV3

    files = [sorted(str(p) for p in pathlib.Path(folder).glob("*.png")) for folder in args.images]
    pictures = torch.stack([torchvision.transforms.functional.to_tensor(Image.open(f).convert("RGB")) for f in files[0][:4] + files[1][:4]])
    pictures = torch.nn.functional.interpolate(pictures, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    checkpoints = pathlib.Path(args.torch_home, "hub", "checkpoints")
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(random_weights(torchvision, args.seed, pictures), checkpoints / WEIGHTS_FILE)

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()  # loads the file above, strictly
    out = pathlib.Path(args.out)
    stats = []
    for name, names in zip("ab", files):
        activations = fid_score.get_activations(names, model, batch_size=len(names), dims=2048, device="cpu", num_workers=0)
        np.save(out / f"activations_{name}.npy", activations, allow_pickle=False)
        # calculate_activation_statistics' own two lines, on the activations already computed
        stats.append((np.mean(activations, axis=0), np.cov(activations, rowvar=False)))
    fid = fid_score.calculate_frechet_distance(*stats[0], *stats[1])
    import pytorch_fid

    result = {"fid": float(fid), "pytorch_fid": pytorch_fid.__version__, "torchvision": torchvision.__version__}
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
