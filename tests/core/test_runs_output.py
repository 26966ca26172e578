"""`ganworks runs` for people at 80 columns and for scripts as JSON and CSV: the same numbers in every form."""

from __future__ import annotations

import csv
import io
import json
import pytest

from ganworks.checkpoint import publish_snapshot
from ganworks.cli import main
from ganworks.layout import eval_report_key
from ganworks.models import build_generator
from ganworks.output import metric_text
from ganworks.store import open_store

PARAMS = {"image_size": 16, "channels": 1, "latent_dim": 8, "width": 8}
METRICS_SET = "digits-classifier-legacy-pytorch-n5000-default"


def evaluator_report(run: str, step: int, fid: float) -> dict:
    """What the evaluator writes for one snapshot (the fields `ganworks runs` reads)."""
    metrics = {"fid": fid, "kid_mean": fid / 977.0, "kid_std": 1e-5, "precision": 0.712345, "recall": 0.4321, "density": 0.98765, "coverage": 0.6543}
    return {"run": run, "step": step, "extractor": "digits-classifier", "metrics_set": METRICS_SET, "num_samples": 5000, "metrics": metrics}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    store = open_store(str(root))
    state = build_generator("dcgan", **PARAMS).state_dict()
    for run in ("digits-hinge-ema-long-name", "digits-wgan"):
        for step, fid in ((1000, 123.456789), (2000, 45.678912), (3000, 9.87654)):
            publish_snapshot(store, run=run, step=step, generator_state=state, architecture="dcgan", architecture_params=PARAMS, images_seen=step * 64)
            store.put_json(eval_report_key(run, step, METRICS_SET), evaluator_report(run, step, fid))
    return str(root)


@pytest.fixture
def runs(monkeypatch, capsys):
    """`ganworks runs ARGS` in a terminal of `columns` columns (rich reads COLUMNS); its stdout."""

    def call(*args: str, columns: int = 80) -> str:
        monkeypatch.setenv("COLUMNS", str(columns))
        code = main(["runs", *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    return call


def test_an_80_column_table_cuts_no_cell_and_shows_the_metrics_rounded(store_url, runs):
    out = runs("--store", store_url)

    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    # A run name too long for its column folds onto the next line, whole: the first column, read down, holds it.
    first_column = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))
    assert "digits-hinge-ema-long-name" in first_column and "digits-wgan" in first_column
    for text in ("9.88", "45.7", "0.71", "0.43", "192.0k", "3000*"):
        assert text in out


def test_json_parses_and_holds_every_number_the_table_shows(store_url, runs):
    table = runs("--store", store_url)
    snapshots = json.loads(runs("--store", store_url, "--output", "json"))["snapshots"]

    assert len(snapshots) == 6
    for row in snapshots:
        assert row["metrics"]["fid"] in (123.456789, 45.678912, 9.87654)
        for name in ("fid", "kid_mean", "precision", "recall"):
            assert metric_text(name, row["metrics"][name]) in table
    assert [row["latest"] for row in snapshots] == [False, False, True] * 2


def test_csv_has_one_row_per_snapshot_with_every_metric_as_a_column(store_url, runs):
    rows = list(csv.DictReader(io.StringIO(runs("--store", store_url, "--output", "csv", "--run", "digits-wgan"))))

    assert [(r["run"], r["step"], r["latest"]) for r in rows] == [("digits-wgan", "1000", "false"), ("digits-wgan", "2000", "false"), ("digits-wgan", "3000", "true")]
    assert float(rows[2]["fid"]) == 9.87654 and float(rows[2]["coverage"]) == 0.6543


def test_wide_adds_the_metrics_the_default_table_leaves_out(store_url, runs):
    narrow, wide = runs("--store", store_url), runs("--store", store_url, "--wide", columns=200)

    assert "coverage" not in narrow and "density" not in narrow
    assert "coverage" in wide and "0.65" in wide and "digits-classifier" in wide


def test_one_run_in_detail_lists_every_snapshot_with_its_grid_and_reports(store_url, runs):
    detail = json.loads(runs("digits-wgan", "--store", store_url, "-o", "json"))
    table = runs("digits-wgan", "--store", store_url)

    assert detail["run"] == "digits-wgan" and detail["latest_step"] == 3000
    assert [s["step"] for s in detail["snapshots"]] == [1000, 2000, 3000]
    for snapshot in detail["snapshots"]:
        assert snapshot["grid"].endswith(f"runs/digits-wgan/checkpoints/{snapshot['step']:09d}/samples.png")
        assert snapshot["grid"] in table
        [report] = snapshot["reports"]
        assert report["metrics_set"] == METRICS_SET and report["url"] in table
    assert "…" not in table


def test_an_unknown_run_is_an_error_that_names_the_runs_there(store_url, capsys):
    code = main(["runs", "nobody", "--store", store_url])

    assert code == 2
    err = capsys.readouterr().err
    assert "RUN 'nobody': no snapshots" in err and "digits-wgan" in err


def test_non_finite_numbers_are_null_in_json(tmp_path, runs):
    store = open_store(str(tmp_path / "store"))
    publish_snapshot(store, run="diverged", step=10, generator_state=build_generator("dcgan", **PARAMS).state_dict(), architecture="dcgan", architecture_params=PARAMS)
    report = evaluator_report("diverged", 10, float("nan"))
    report["metrics"].update(kid_mean=float("inf"), kid_std=float("-inf"))
    store.put_bytes(eval_report_key("diverged", 10, METRICS_SET), json.dumps(report).encode())  # NaN, Infinity as Python writes them

    def strict(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    for args in (("--store", str(tmp_path / "store")), ("diverged", "--store", str(tmp_path / "store"))):
        out = json.loads(runs(*args, "-o", "json"), parse_constant=strict)
        metrics = out["snapshots"][0]["metrics"]
        assert (metrics["fid"], metrics["kid_mean"], metrics["kid_std"]) == (None, None, None), metrics
        assert metrics["precision"] == 0.712345
