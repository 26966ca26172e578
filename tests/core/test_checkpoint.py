"""The snapshot format and publish protocol: what a reader may see, and what it refuses."""

from __future__ import annotations

import json

import pytest
import torch

from ganworks.checkpoint import list_snapshots, load_snapshot, publish_snapshot, read_latest
from ganworks.errors import CheckpointError, CheckpointFormatError, CheckpointIntegrityError, ConfigError, SnapshotExistsError
from ganworks.layout import MANIFEST, SAMPLES, WEIGHTS, latest_key, snapshot_key, snapshot_prefix
from ganworks.models import build_generator
from tests.storefaults import WriterKilled, killed_before

PARAMS = {"image_size": 16, "channels": 1, "latent_dim": 8, "num_classes": 3, "width": 8}


def _publish(store, step: int, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    generator = build_generator("dcgan", **PARAMS)
    publish_snapshot(store, run="r1", step=step, generator_state=generator.state_dict(), architecture="dcgan", architecture_params=PARAMS, images_seen=step * 64, **kwargs)
    return generator


def test_a_generator_rebuilt_from_the_manifest_alone_reproduces_the_published_one(store):
    original = _publish(store, 100).eval()
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])

    snapshot = load_snapshot(store, "r1")

    assert snapshot.manifest.step == 100 and snapshot.manifest.images_seen == 6400
    assert torch.equal(snapshot.generator(z, labels), original(z, labels))
    assert snapshot.generator(z, labels).shape == (4, 1, 16, 16)


def test_latest_names_the_newest_step_and_an_older_publish_does_not_move_it_back(store):
    _publish(store, 200)
    _publish(store, 100)

    assert read_latest(store, "r1") == 200
    assert list_snapshots(store, "r1") == [100, 200]


def test_a_publish_interrupted_after_the_weights_leaves_latest_on_the_previous_snapshot(store):
    _publish(store, 100)

    with pytest.raises(WriterKilled):
        _publish(killed_before(store, snapshot_key("r1", 200, MANIFEST)), 200, seed=1)

    assert read_latest(store, "r1") == 100
    assert list_snapshots(store, "r1") == [100]
    assert load_snapshot(store, "r1").manifest.step == 100


def test_a_publish_interrupted_before_latest_serves_the_previous_snapshot_to_latest_readers(store):
    _publish(store, 100)

    with pytest.raises(WriterKilled):
        _publish(killed_before(store, latest_key("r1")), 200, seed=1)

    assert load_snapshot(store, "r1").manifest.step == 100


def test_weights_modified_after_publishing_are_refused_with_the_integrity_error(store):
    _publish(store, 100)
    key = snapshot_key("r1", 100, WEIGHTS)
    data = bytearray(store.get_bytes(key))
    data[-1] ^= 0xFF
    store.put_bytes(key, bytes(data))

    with pytest.raises(CheckpointIntegrityError, match="sha256 of .*generator.safetensors"):
        load_snapshot(store, "r1", 100)


def test_a_manifest_of_an_unknown_format_version_is_refused_with_what_to_do(store):
    _publish(store, 100)
    key = snapshot_key("r1", 100, MANIFEST)
    manifest = store.get_json(key)
    manifest["format_version"] = 99
    store.put_json(key, manifest)

    with pytest.raises(CheckpointFormatError, match="format_version 99.*Upgrade ganworks"):
        load_snapshot(store, "r1")


def test_a_manifest_that_is_not_json_is_a_format_error(store):
    _publish(store, 100)
    store.put_bytes(snapshot_key("r1", 100, MANIFEST), b"{not json")

    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        load_snapshot(store, "r1")


def test_a_run_without_snapshots_says_so(store):
    with pytest.raises(CheckpointError, match="no published snapshot"):
        load_snapshot(store, "nothing-here")


def test_manifest_records_what_the_services_need(store):
    _publish(store, 100, dataset_id="digits-16x16x1-train-abc", samples_png=b"\x89PNG", metrics={"fid": 1.5})

    manifest = store.get_json(snapshot_key("r1", 100, MANIFEST))

    assert {k: manifest[k] for k in ("image_size", "channels", "num_classes", "latent_dim", "step", "dataset_id", "format_version")} == {
        "image_size": 16, "channels": 1, "num_classes": 3, "latent_dim": 8, "step": 100, "dataset_id": "digits-16x16x1-train-abc", "format_version": 1,
    }
    assert len(manifest["sha256"]) == 64 and manifest["metrics"] == {"fid": 1.5}
    assert store.exists(snapshot_key("r1", 100, SAMPLES))


def test_a_manifest_records_the_kind_of_run_and_one_written_before_it_was_recorded_reads_as_its_familys(store):
    _publish(store, 100)
    key = snapshot_key("r1", 100, MANIFEST)
    assert store.get_json(key)["kind"] == "image"
    older = {k: v for k, v in store.get_json(key).items() if k != "kind"}
    store.put_json(key, older)

    assert load_snapshot(store, "r1").manifest.kind == "image"


@pytest.mark.parametrize("run", ["", "../x", "a/b", "-lead", "x" * 200])
def test_invalid_run_ids_are_refused(store, run):
    with pytest.raises(ConfigError, match="invalid run id"):
        read_latest(store, run)


def test_snapshot_files_contain_no_pickle(local_store):
    _publish(local_store, 100)
    prefix = local_store.root / snapshot_prefix("r1", 100)

    weights = (prefix / "generator.safetensors").read_bytes()
    header_len = int.from_bytes(weights[:8], "little")

    json.loads(weights[8 : 8 + header_len])  # a safetensors header is JSON, the rest raw tensor bytes
    json.loads((prefix / "manifest.json").read_text())


def test_a_published_snapshot_is_never_overwritten_with_other_weights(store):
    _publish(store, 100, seed=0)
    before = store.get_json(snapshot_key("r1", 100, MANIFEST))

    with pytest.raises(SnapshotExistsError, match="immutable"):
        _publish(store, 100, seed=1)

    assert store.get_json(snapshot_key("r1", 100, MANIFEST)) == before
    assert load_snapshot(store, "r1", 100).manifest.sha256 == before["sha256"]


def test_publishing_the_same_weights_again_completes_an_interrupted_publish(store):
    with pytest.raises(WriterKilled):
        _publish(killed_before(store, latest_key("r1")), 100, seed=0)

    _publish(store, 100, seed=0)

    assert read_latest(store, "r1") == 100


def test_files_published_beside_the_weights_come_back_verified_and_a_modified_one_is_refused(store):
    from ganworks.layout import TRANSFORMER

    _publish(store, 100, files={TRANSFORMER: b'{"format": "x"}'})
    snapshot = load_snapshot(store, "r1")
    assert snapshot.files == {TRANSFORMER: b'{"format": "x"}'}
    assert set(snapshot.manifest.files) == {TRANSFORMER}

    store.put_bytes(snapshot_key("r1", 100, TRANSFORMER), b'{"format": "y"}')
    with pytest.raises(CheckpointIntegrityError, match="transformer.json differs from the manifest"):
        load_snapshot(store, "r1")


def test_a_snapshot_file_name_must_be_a_plain_name_that_is_not_reserved(store):
    for name in ("../escape.json", WEIGHTS, ""):
        with pytest.raises(ConfigError, match="reserved or not a plain file name"):
            _publish(store, 100, files={name: b"x"})


def test_each_family_declares_one_kind_of_run_and_an_unknown_kind_is_refused_at_registration():
    from ganworks.errors import ModelConfigError
    from ganworks.models import FAMILIES, ModelFamily
    from ganworks.models.registry import register

    assert {name: family.kind for name, family in FAMILIES.items()} == {"dcgan": "image", "stylegan2": "image", "ctgan": "table", "cyclegan": "translation"}

    class Audio(ModelFamily):
        name, kind = "wavegan", "audio"

    with pytest.raises(ModelConfigError, match="family wavegan declares kind 'audio'; known kinds: image, table, translation"):
        register(Audio())
    assert "wavegan" not in FAMILIES
