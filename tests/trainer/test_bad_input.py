"""`ganworks train` refuses bad input before any training starts, with a message naming what to fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ganworks.cli import main
from ganworks.models import get_family
from ganworks.store import open_store
from tests.s3server import free_port


def _train(capsys, *flags: str) -> tuple[int, str]:
    code = main(["train", "--no-progress", "--steps", "2", *flags])
    return code, capsys.readouterr().err


def test_unknown_model_family_is_refused_naming_the_flag_and_the_known_ones(capsys, tmp_path):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--model", "stylegan9")

    assert code == 2
    assert "--model 'stylegan9'" in err and "unknown model family" in err and "dcgan" in err
    assert not (tmp_path / "store" / "runs").exists()


def test_an_unknown_model_param_is_refused_naming_the_flag_and_the_allowed_keys(capsys, tmp_path):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--model-param", "depth=3")

    assert code == 2
    assert "--model-param depth" in err and "width" in err and "latent_dim" in err


@pytest.mark.parametrize("item, named", [("width=wide", "--model-param width: dcgan width must be an integer >= 1, got 'wide'"),
                                         ("g_norm=layer", "g_norm must be 'group', 'batch' or 'none'"),
                                         ("width", "--model-param 'width' is not KEY=VALUE"),
                                         ("image_size=64", "it comes from --image-size")])
def test_a_bad_model_param_value_is_refused_naming_the_flag(capsys, tmp_path, item, named):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--model-param", item)

    assert code == 2
    assert named in err


def test_model_params_are_recorded_in_run_json_with_the_family_defaults(capsys, tmp_path):
    code = main(["train", "--dry-run", "--store", str(tmp_path / "store"), "--run", "r", "--model-param", "width=16", "--model-param", "spectral_norm=false"])

    run_json = json.loads(capsys.readouterr().out)
    assert code == 0
    assert run_json["architecture"] == "dcgan"
    assert run_json["architecture_params"]["width"] == 16 and run_json["architecture_params"]["spectral_norm"] is False
    assert run_json["architecture_params"]["latent_dim"] == 64
    assert run_json["options"]["model_params"] == {"width": "16", "spectral_norm": "false"}


def test_resuming_a_run_with_other_model_params_is_refused(capsys, tmp_path):
    store = open_store(str(tmp_path / "store"))
    store.put_json("runs/r/run.json", {"architecture": "dcgan", "architecture_params": get_family("dcgan").validate({"width": 16}), "dataset": {"id": "x"}})

    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--model-param", "width=8")

    assert code == 2
    assert "run 'r' already exists" in err and "choose a new --run" in err


def test_unknown_loss_is_refused_naming_the_flag(capsys, tmp_path):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--loss", "least-squares")

    assert code == 2
    assert "--loss 'least-squares'" in err and "hinge" in err


def test_an_image_size_the_model_cannot_make_is_refused(capsys, tmp_path):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--image-size", "48")

    assert code == 2
    assert "image_size must be a power of two" in err and "48" in err


def test_more_workers_than_the_cluster_has_cpus_is_refused_before_training(capsys, tmp_path, ray_cluster):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--num-workers", "3", "--batch-size", "24")

    assert code == 2
    assert "--num-workers 3" in err and "the Ray cluster has 2 CPUs" in err
    assert not (tmp_path / "store" / "runs" / "r" / "run.json").exists()


def test_an_unreachable_store_is_refused_before_training(capsys, monkeypatch):
    monkeypatch.setenv("GANWORKS_RETRY_SECONDS", "1")
    monkeypatch.setenv("GANWORKS_S3_ACCESS_KEY", "key")
    monkeypatch.setenv("GANWORKS_S3_SECRET_KEY", "secret-value")
    dead = f"http://127.0.0.1:{free_port()}"

    code, err = _train(capsys, "--store", "s3://nobody-home/x", "--s3-endpoint", dead, "--run", "r")

    assert code == 2
    assert "did not answer" in err and "GANWORKS_S3_ENDPOINT" in err
    assert "secret-value" not in err


def test_an_unreadable_dataset_is_refused_naming_the_file(capsys, tmp_path):
    broken = tmp_path / "faces.npz"
    broken.write_bytes(b"this is not a zip archive")

    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--dataset", str(broken))

    assert code == 2
    assert str(broken) in err and "not a readable .npz" in err


def test_conditional_training_on_a_dataset_without_labels_is_refused(capsys, tmp_path):
    data = tmp_path / "unlabelled.npz"
    np.savez(data, images=np.zeros((64, 32, 32), dtype=np.uint8))

    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--dataset", str(data), "--conditional")

    assert code == 2
    assert "--conditional needs a dataset with labels" in err


@pytest.mark.parametrize("flags, named", [(["--batch-size", "7", "--num-workers", "2"], "--batch-size 7"), (["--steps", "0"], "--steps"), (["--run", "../escape"], "invalid run id"),
                                          (["--new-class-init", "mean"], "--new-class-init mean starts new classes from a source snapshot's: it needs --init-from")])
def test_malformed_options_are_refused_naming_the_flag(capsys, tmp_path, flags, named):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), *(["--run", "r"] if "--run" not in flags else []), *flags)

    assert code == 2
    assert named in err


def test_a_new_class_init_from_the_environment_that_is_no_choice_is_refused_naming_the_flag(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GANWORKS_TRAINER_NEW_CLASS_INIT", "average")

    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r")

    assert code == 2
    assert "--new-class-init must be one of mean, nearest, random, or NEW=SOURCE pairs" in err and "got 'average'" in err


@pytest.mark.parametrize("speed", ["0", "-5"])
def test_an_adaptive_augmentation_pace_below_one_image_is_refused_naming_the_flag(capsys, tmp_path, speed):
    code, err = _train(capsys, "--store", str(tmp_path / "store"), "--run", "r", "--augment", "ada", "--augment-speed-images", speed)

    assert code == 2
    assert "--augment-speed-images must be at least 1" in err and f"got {speed}" in err
    assert not (tmp_path / "store" / "runs").exists()
