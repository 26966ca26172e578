"""`ganworks generate`: a grid PNG or an .npz from a running service, and flag errors that name the flag."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from ganworks.cli import main
from ganworks.images import decode_png
from tests.generator.conftest import CONDITIONAL, publish


def test_generate_writes_a_grid_png_and_an_npz_of_the_same_images(local_store, serve, tmp_path, capsys):
    publish(local_store, "c", 4, CONDITIONAL)
    server = serve(local_store, ["c"])
    grid_file, arrays_file = tmp_path / "grid.png", tmp_path / "x.npz"
    assert main(["generate", "--address", server.address, "--run", "c", "-n", "16", "--seed", "1", "--out", str(grid_file)]) == 0
    assert main(["generate", "--address", server.address, "--run", "c", "-n", "16", "--seed", "1", "--labels", "7", "--out", str(arrays_file)]) == 0
    grid = decode_png(grid_file.read_bytes())
    assert grid.shape == (4 * 18 + 2, 4 * 18 + 2, 1)  # 4×4 images of 16 px with 2 px padding
    arrays = np.load(arrays_file)
    assert arrays["images"].shape == (16, 16, 16, 1) and (arrays["labels"] == 7).all()
    assert int(arrays["seed"]) == 1 and int(arrays["version"]) == 4
    assert "wrote 16 images of model c version 4" in capsys.readouterr().out


def test_generate_reports_server_refusals_and_bad_flags_by_name(local_store, serve, tmp_path, capsys):
    publish(local_store, "c", 4, CONDITIONAL)
    server = serve(local_store, ["c"])
    assert main(["generate", "--address", server.address, "--run", "c", "--labels", "12", "--out", str(tmp_path / "g.png")]) == 2
    assert "INVALID_ARGUMENT: class label 12 is out of range" in capsys.readouterr().err
    assert main(["generate", "--address", server.address, "--run", "c", "--out", str(tmp_path / "g.jpg")]) == 2
    assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_generate_json_and_csv_give_what_was_written_for_a_script(local_store, serve, tmp_path, capsys):
    publish(local_store, "c", 4, CONDITIONAL)
    server = serve(local_store, ["c"])
    out = tmp_path / "x.npz"
    assert main(["generate", "--address", server.address, "--run", "c", "-n", "3", "--seed", "5", "--labels", "2", "--out", str(out), "--output", "json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert main(["generate", "--address", server.address, "--run", "c", "-n", "3", "--seed", "5", "--out", str(out), "--output", "csv"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    assert written == {"out": str(out), "model": "c", "version": 4, "seed": 5, "count": 3, "format": "npz", "labels": [2, 2, 2]}
    assert row == {"out": str(out), "model": "c", "version": "4", "seed": "5", "count": "3", "format": "npz"}
