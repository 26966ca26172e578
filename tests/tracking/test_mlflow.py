"""MLflow tracking (GANWORKS_MLFLOW_TRACKING_URI): the trainer's params, curves and grids and the evaluator's metrics
land in one MLflow run per ganworks run, read back with MLflow's own client from a local file store."""

from __future__ import annotations

import logging
import socket
import sys
import threading

import pytest
from mlflow.tracking import MlflowClient

from ganworks.cli import main
from ganworks.mlflow_tracking import RUN_TAG, MlflowRun, public_uri
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from tests.trainer.helpers import train


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("GANWORKS_MLFLOW_TRACKING_URI", uri)
    return uri


def _mlflow_run(uri: str, run: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ganworks")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run}'")
    assert len(runs) == 1, f"one MLflow run per ganworks run, found {len(runs)}"
    return client, runs[0]


def test_params_metrics_and_grids_land_in_one_mlflow_run_that_a_second_writer_finds_again(tracking):
    first = MlflowRun.from_env("r1")
    first.log_params({"options": {"dataset": "digits", "steps": 10}, "architecture": "dcgan"})
    first.log_metrics({"loss_g": 1.5, "loss_d": 0.5}, step=10)
    first.log_png(b"\x89PNG not really", "step_000000010.png")
    assert first.close(timeout=60)
    second = MlflowRun.from_env("r1")  # the evaluator, or a resumed trainer: the same MLflow run
    second.log_metrics({"fid": 12.5}, step=10)
    second.log_params({"options": {"dataset": "digits", "steps": 10}})  # the same run.json again is not an error
    assert second.close(timeout=60)

    client, run = _mlflow_run(tracking, "r1")
    assert run.data.params == {"options.dataset": "digits", "options.steps": "10", "architecture": "dcgan"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss_g")] == [(10, 1.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "fid")] == [(10, 12.5)]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "grids")] == ["grids/step_000000010.png"]


def test_logging_returns_while_the_tracking_server_sits_on_a_request_and_its_failure_warning_carries_no_credentials(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")  # longer than the test: only the background thread ever waits on it
    with socket.create_server(("127.0.0.1", 0)) as server:  # a tracking server that takes requests and answers none
        uri = f"http://alice:s3cret-pass@127.0.0.1:{server.getsockname()[1]}"
        tracking = MlflowRun.from_uri(uri, "r2")
        caller = threading.Thread(target=lambda: [tracking.log_metrics({"loss_g": 1.0}, step=step) for step in range(50)])
        with caplog.at_level(logging.WARNING, logger="ganworks.mlflow_tracking"):
            caller.start()
            server.settimeout(60)
            connection, _ = server.accept()
            with connection:
                request = connection.recv(65536)
                caller.join(30)
                assert not caller.is_alive(), "logging waits on the tracking server"
            server.close()  # the unanswered request fails now, and everything after it at once
            assert tracking.close(timeout=60)

    assert request.startswith(b"GET /api/"), request[:80]
    assert "MLflow tracking at http://127.0.0.1" in caplog.text
    assert "s3cret-pass" not in caplog.text and "alice" not in caplog.text
    assert public_uri(uri) == uri.replace("alice:s3cret-pass@", "")


@pytest.mark.parametrize("command", [["train", "--no-progress", "--steps", "2", "--run", "r"], ["evaluator", "serve"]])
def test_tracking_asked_for_without_mlflow_installed_is_refused_at_start_naming_the_extra(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANWORKS_MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a package that is not installed

    code = main([*command, "--store", str(tmp_path / "store")])

    assert code == 2
    assert "GANWORKS_MLFLOW_TRACKING_URI is set but MLflow is not installed: pip install 'ganworks[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "store" / "runs").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_a_training_run_logs_run_json_its_curves_and_each_snapshots_grid_to_mlflow(ray_cluster, tracking, tmp_path):
    train(StoreSettings(store=str(tmp_path / "store")), "tracked", steps=4, snapshot_every=2, num_workers=1)

    client, run = _mlflow_run(tracking, "tracked")
    run_json = open_store(str(tmp_path / "store")).get_json("runs/tracked/run.json")
    assert run.data.params["options.dataset"] == "digits" and run.data.params["architecture"] == run_json["architecture"]
    assert run.data.params["dataset.id"] == run_json["dataset"]["id"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_g")] == [1, 2, 3, 4]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "grids")) == ["grids/step_000000002.png", "grids/step_000000004.png"]
