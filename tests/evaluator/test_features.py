"""Feature extractors and resize modes: the FID Inception loads pytorch-fid's state-dict layout, weights are pinned,
resizing follows pytorch-fid and clean-fid, the digits classifier round-trips through the store."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evaluator_service.errors import ExtractorMissingError, InvalidRequestError, WeightsIntegrityError, WeightsMissingError
from evaluator_service.features import ExtractorCache, inception
from evaluator_service.features import classifier as digits_classifier
from evaluator_service.features.resize import resize
from evaluator_service.reference import load_or_compute
from ganworks.layout import reference_stats_key
from ganworks.data import load_dataset


def _pytorch_fid_like_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of pt_inception-2015-12-05-6726825d.pth (torchvision Inception3, 1008 classes, no aux head)."""
    torch.manual_seed(0)
    state = {}
    for key, value in inception.FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        else:
            state[key] = torch.randn_like(value) * 0.05
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / inception.WEIGHTS_FILE
    torch.save(_pytorch_fid_like_state_dict(), path)
    return path


def test_inception_loads_a_pytorch_fid_state_dict_and_gives_2048_features_and_1008_logits(weights_file):
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    net = inception.load_inception(str(weights_file), sha256=digest)
    state = torch.load(weights_file, weights_only=True)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    with torch.inference_mode():
        features, logits = net(torch.rand(1, 3, 299, 299))
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert torch.isfinite(features).all() and (features >= 0).all()  # pool3 follows a ReLU


def test_inception_weights_with_another_sha256_are_refused(weights_file):
    with pytest.raises(WeightsIntegrityError, match="sha256 of .* is [0-9a-f]{64}, expected 6726825d"):
        inception.load_inception(str(weights_file))


def test_inception_state_dict_of_another_layout_is_refused(tmp_path):
    state = _pytorch_fid_like_state_dict()
    state.pop("fc.bias")
    state["AuxLogits.fc.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(WeightsIntegrityError, match=r"missing \['fc.bias'\], unexpected \['AuxLogits.fc.weight'\]"):
        inception.load_inception(str(path), sha256="")


def test_missing_inception_weights_say_where_to_get_them_and_which_setting_to_set(tmp_path):
    for location in ("", str(tmp_path / "nowhere.pth")):
        with pytest.raises(WeightsMissingError, match="GANWORKS_EVALUATOR_INCEPTION_WEIGHTS") as info:
            inception.load_inception(location)
        assert inception.WEIGHTS_URL in str(info.value)


def test_inception_weights_are_read_from_a_store_url(weights_file, local_store):
    local_store.put_file("models/" + inception.WEIGHTS_FILE, weights_file)
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    net = inception.load_inception(local_store.url_for("models/" + inception.WEIGHTS_FILE), sha256=digest, store=local_store)
    assert net.fc.out_features == 1008


def test_legacy_resize_is_pytorch_bilinear_on_uint8_pixels_scaled_to_unit_range():
    images = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    expected = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(resize(images, 299, "legacy-pytorch"), expected, atol=1e-6)


def test_clean_resize_is_pil_bicubic_per_channel_on_float_without_requantizing():
    images = np.random.RandomState(1).randint(0, 256, (1, 32, 32, 1), dtype=np.uint8)
    out = resize(images, 299, "clean")
    plane = Image.fromarray(images[0, :, :, 0].astype(np.float32), mode="F").resize((299, 299), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(out[0, 0].numpy(), np.asarray(plane) / 255.0, rtol=1e-6)
    assert not np.allclose(out.numpy() * 255, np.round(out.numpy() * 255))  # floats between pixel levels survive


def test_resize_takes_uint8_pixels_only():
    with pytest.raises(InvalidRequestError, match="uint8"):
        resize(np.zeros((1, 32, 32, 1), np.float32), 299, "clean")


@pytest.fixture
def fitted(fitted_classifier):
    return fitted_classifier


def test_digits_classifier_round_trips_through_the_store_and_gives_features_and_class_logits(fitted, local_store):
    net, manifest = fitted
    digits_classifier.save(local_store, net, manifest)
    loaded, stored = digits_classifier.load(local_store, "digits-classifier", manifest["dataset_id"])
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x)[0], net(x)[0])
    assert loaded(x)[0].shape == (3, 128) and loaded(x)[1].shape == (3, 10)
    assert stored["sha256"] == local_store.sha256(f"extractors/digits-classifier/{manifest['dataset_id']}/classifier.safetensors")


def test_a_modified_classifier_file_is_refused(fitted, local_store):
    net, manifest = fitted
    digits_classifier.save(local_store, net, manifest)
    key = f"extractors/digits-classifier/{manifest['dataset_id']}/classifier.safetensors"
    local_store.put_bytes(key, local_store.get_bytes(key)[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsIntegrityError, match="fit the extractor again"):
        digits_classifier.load(local_store, "digits-classifier", manifest["dataset_id"])


def test_a_missing_classifier_names_the_command_that_fits_it_when_auto_fit_is_off(local_store):
    dataset = load_dataset("digits", image_size=32, channels=1, split="train")
    with pytest.raises(ExtractorMissingError, match="ganworks evaluator fit-extractor --dataset"):
        ExtractorCache(local_store, auto_fit=False).get("digits-classifier", dataset, "digits")


def test_reference_statistics_are_cached_and_a_damaged_cache_file_is_recomputed(fitted, store):
    net, manifest = fitted
    digits_classifier.save(store, net, manifest)
    dataset = load_dataset("digits", image_size=32, channels=1, split="test")
    extractor = ExtractorCache(store, auto_fit=False).get("digits-classifier", load_dataset("digits", image_size=32, channels=1, split="train"), "digits")
    first, cached_first = load_or_compute(store, dataset, extractor, "clean")
    second, cached_second = load_or_compute(store, dataset, extractor, "clean")
    key = reference_stats_key(dataset.id, "digits-classifier", "clean", len(dataset))
    store.put_bytes(key, b"truncated")
    third, cached_third = load_or_compute(store, dataset, extractor, "clean")
    assert (cached_first, cached_second, cached_third) == (False, True, False)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_allclose(third.stats.cov, first.stats.cov)
    assert len(first.labels) == len(dataset) and first.features.shape == (len(dataset), 128)
