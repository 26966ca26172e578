"""`ganworks evaluate` prints a table of the numbers and exits non-zero when the evaluation fails."""

from __future__ import annotations

import json

import pytest

from ganworks.cli import main
from tests.evaluator.conftest import RUN
from tests.tbreader import read_tensorboard


def test_evaluate_prints_a_table_of_the_metrics(evaluator, capsys):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "-n", "150", "--metrics", "fid,prdc", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{RUN} step 2" in out and "digits-classifier" in out
    for name in ("fid", "precision", "recall", "density", "coverage"):
        assert name in out


def test_evaluate_exits_non_zero_with_the_reason_when_the_job_fails(evaluator, capsys):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "-n", "50", "--metrics", "fid", "--extractor", "inception-v3-fid"])
    assert code == 1
    assert "GANWORKS_EVALUATOR_INCEPTION_WEIGHTS" in capsys.readouterr().err


def test_evaluate_exits_non_zero_when_the_run_is_unknown(evaluator, capsys):
    code = main(["evaluate", "--address", evaluator.address, "--run", "nobody", "-n", "50"])
    assert code == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_a_malformed_param_flag_is_named(evaluator, capsys):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "--param", "subset_size=5"])
    assert code == 2
    assert "--param 'subset_size=5'" in capsys.readouterr().err


def test_an_unreadable_tls_ca_or_an_empty_token_file_is_named(tmp_path, capsys):
    empty = tmp_path / "token"
    empty.write_text("\n")
    assert main(["evaluate", "--address", "127.0.0.1:9", "--run", RUN, "--tls-ca", str(tmp_path / "missing.pem")]) == 2
    assert f"--tls-ca {tmp_path / 'missing.pem'}: cannot read it" in capsys.readouterr().err
    assert main(["evaluate", "--address", "127.0.0.1:9", "--run", RUN, "--auth-token-file", str(empty)]) == 2
    assert f"--auth-token-file {empty} is empty" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_extractor_stores_a_digits_classifier_that_beats_chance_on_held_out_digits(tmp_path, capsys):
    store_url = f"file://{tmp_path / 'store'}"
    code = main(["evaluator", "fit-extractor", "--dataset", "digits", "--image-size", "32", "--epochs", "2", "--store", store_url])
    assert code == 0 and "fitted digits-classifier" in capsys.readouterr().out

    from evaluator_service.features import classifier
    from ganworks.data import load_dataset
    from ganworks.store import open_store

    train, test = (load_dataset("digits", image_size=32, channels=1, split=s) for s in ("train", "test"))
    net, manifest = classifier.load(open_store(store_url), "digits-classifier", train.id)
    assert classifier.accuracy(net, test) == manifest["test_accuracy"] > 0.5

    # Its features tell held-out digits from noise: the FID of real vs real is far below that of real vs noise.
    import numpy as np

    from evaluator_service.features import Extractor
    from evaluator_service.metrics import compute

    extractor = Extractor("digits-classifier", net, 32, 1, classifier.FEATURE_DIM, 10, manifest)
    noise = np.random.RandomState(0).randint(0, 256, test.images.shape, dtype=np.uint8)
    real, _ = extractor.extract(train.images, "legacy-pytorch")
    held_out, _ = extractor.extract(test.images, "legacy-pytorch")
    fake, _ = extractor.extract(noise, "legacy-pytorch")
    assert 10 * compute("fid", real, held_out)["fid"] < compute("fid", real, fake)["fid"]


def test_fit_extractor_names_the_flag_of_a_bad_value(capsys):
    code = main(["evaluator", "fit-extractor", "--dataset", "digits", "--image-size", "4", "--store", "/tmp/unused-store"])
    assert code == 2 and "--image-size" in capsys.readouterr().err


def test_serve_refuses_a_default_sample_count_below_the_kid_subset_naming_the_flag(tmp_path, capsys):
    code = main(["evaluator", "serve", "--num-samples", "500", "--port", "0", "--metrics-port", "-1", "--store", str(tmp_path / "store")])
    assert code == 2 and "--num-samples 500" in capsys.readouterr().err


def test_evaluate_json_output_parses_and_holds_the_evaluation_and_its_exact_numbers(evaluator, shared_store, capsys, tmp_path):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "-n", "150", "--metrics", "fid", "--seed", "3", "--output", "json"])
    out = capsys.readouterr().out

    assert code == 0
    result = json.loads(out)
    assert (result["run"], result["step"], result["state"], result["extractor"], result["num_samples"]) == (RUN, 2, "succeeded", "digits-classifier", 150)
    assert result["metrics"]["fid"] > 0 and result["error"] == ""
    assert result["report_url"].endswith(".json")
    # The evaluator put the same numbers in the run's TensorBoard folder, at the snapshot's step.
    metrics_set = result["report_url"].rsplit("/", 1)[-1].removesuffix(".json")
    events = read_tensorboard(shared_store, RUN, tmp_path / "tb")
    [fid] = events.Scalars(f"{metrics_set}/fid")
    assert fid.step == 2 and fid.value == pytest.approx(result["metrics"]["fid"], rel=1e-6)


def test_a_failed_evaluation_in_json_still_prints_its_state_and_error_and_exits_1(evaluator, capsys):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "-n", "50", "--metrics", "fid", "--extractor", "inception-v3-fid", "-o", "json"])

    assert code == 1
    result = json.loads(capsys.readouterr().out)
    assert result["state"] == "failed" and "GANWORKS_EVALUATOR_INCEPTION_WEIGHTS" in result["error"]
