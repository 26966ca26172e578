"""`ganworks augment`: real rows plus generated rows of a rare class from a live generator on loopback, a sidecar that
says what was written and rebuilds the same bytes; the filters drop planted copies and wrong-class examples."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from ganworks.cli import main
from orchestration.augment import Drawer, TableData, plan_counts
from tests.generator.test_records import SMALL, _table, publish_table


@pytest.fixture(scope="module")
def model():
    from trainer.ctgan import fit

    return fit(_table(), epochs=2, batch_size=40, seed=0, **SMALL)


def _write_real(tmp_path) -> tuple[str, dict]:
    """The tiny credit table as a CSV with its schema sidecar (target: default), as a user would have it."""
    table = _table()
    path = tmp_path / "credit.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.schema.names)
        for i in range(len(table)):
            writer.writerow([table.columns[n][i] for n in table.schema.names])
    (tmp_path / "credit.schema.json").write_text(json.dumps({"columns": {"default": "categorical", "student": "boolean", "balance": "continuous",
                                                                         "cards": "integer"}, "target": "default"}))
    return str(path), table.columns


def test_augment_writes_real_rows_plus_the_generated_rare_class_rows_its_sidecar_lists_and_rebuilds_the_same_file(local_store, serve, model, tmp_path, capsys):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"], max_samples_per_request=128, max_queue_size=256)  # 300 rows take 3 calls
    data, real = _write_real(tmp_path)
    out = tmp_path / "aug.csv"
    real_yes = int((real["default"] == "Yes").sum())

    assert main(["augment", "--address", server.address, "--run", "t", "--data", data, "--split", "all", "--classes", "Yes", "--add", "300",
                 "--seed", "3", "--out", str(out), "-o", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    sidecar = json.loads((tmp_path / "aug.csv.augment.json").read_text())
    rows = list(csv.DictReader(io.StringIO(out.read_text())))

    assert summary["rows"] == len(rows) == 160 + 300 == sidecar["rows"]
    assert sidecar["added"] == {"Yes": 300} and sidecar["real_counts"] == {"No": 160 - real_yes, "Yes": real_yes}
    assert sidecar["run"] == "t" and sidecar["version"] == 1 and sidecar["per_call"] == 128 and sidecar["seed"] == 3
    assert sum(d["count"] for d in sidecar["draws"]) == 300 and all(d["class"] == "Yes" for d in sidecar["draws"])
    assert [float(r["balance"]) for r in rows[:160]] == pytest.approx(list(real["balance"]))
    assert {r["default"] for r in rows[160:]} == {"Yes"} and sum(r["default"] == "Yes" for r in rows) == real_yes + 300
    assert len({r["balance"] for r in rows[160:]}) > 250  # 3 calls of new rows (one call repeated would give at most 128)

    again = tmp_path / "again.csv"
    assert main(["augment", "--address", server.address, "--from-sidecar", str(tmp_path / "aug.csv.augment.json"), "--out", str(again)]) == 0
    assert "rebuilt identical" in capsys.readouterr().out
    assert again.read_bytes() == out.read_bytes()

    assert main(["augment", "--address", server.address, "--run", "t", "--data", data, "--split", "all", "--classes", "Maybe", "--add", "5",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "--classes: Maybe not found in the target column default; classes: No, Yes" in capsys.readouterr().err


def test_a_share_brings_each_rare_class_up_to_that_share_of_the_whole_set():
    plan = plan_counts({"a": 900, "b": 80, "c": 20}, None, None, 0.2)
    total = 1000 + sum(plan.values())
    assert set(plan) == {"b", "c"}
    assert (80 + plan["b"]) / total == pytest.approx(0.2, abs=2e-3) and (20 + plan["c"]) / total == pytest.approx(0.2, abs=2e-3)


def test_the_filters_drop_planted_copies_of_training_rows_and_rows_the_classifier_puts_in_another_class(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    table = _table(n=400)
    data = TableData(table, "default", table.schema)
    with server.client() as client:
        drawer = Drawer(client, "t", 1, data, check_class=True, guard_quantile=0.05, seed=0, progress=lambda label, count: None)
        generated = client.generate_records("t", 200, seed=5, condition="default=Yes").table
    from orchestration.augment import _arrow_columns

    fresh = _arrow_columns(generated, table.schema)
    yes, no = np.flatnonzero(table.columns["default"] == "Yes")[:20], np.flatnonzero(table.columns["default"] == "No")[:20]
    copies = table.rows(yes)                                         # exact copies of training defaulters
    disguised = {**table.rows(no), "default": np.full(20, "Yes", dtype=object)}  # non-defaulters labelled Yes
    # Beyond every training balance (far from every row), clearly a defaulter: must pass both filters.
    clear = {"default": np.full(20, "Yes", dtype=object), "student": np.zeros(20, bool), "balance": np.linspace(2500, 2600, 20) + 0.37, "cards": np.full(20, 3.0)}
    planted = {k: np.concatenate([copies[k], disguised[k], clear[k]]) for k in table.schema.names}

    keep, by_class, by_guard = drawer.filter(planted, "Yes")

    assert not keep[:20].any(), "a copy of a training row passed the privacy guard"
    assert not keep[20:40].any(), "a non-defaulter's row labelled Yes passed the class check"
    assert keep[40:].all()
    assert by_class >= 20 and by_class + by_guard == 40
    keep_fresh, _, _ = drawer.filter(fresh, "Yes")
    assert keep_fresh.sum() > 0


def test_augment_images_adds_generated_images_of_a_class_to_an_npz_or_a_folder_and_rebuilds_them(local_store, serve, tmp_path, capsys):
    from tests.generator.conftest import CONDITIONAL, publish

    publish(local_store, "c", 1, params=CONDITIONAL)
    server = serve(local_store, ["c"], max_samples_per_request=32, max_queue_size=64)
    rng = np.random.default_rng(0)
    real = tmp_path / "real.npz"
    np.savez(real, images=rng.integers(0, 256, (100, 16, 16, 1), dtype=np.uint8), labels=np.arange(100) % 10)
    out = tmp_path / "aug.npz"

    assert main(["augment", "--address", server.address, "--run", "c", "--data", str(real), "--split", "all", "--classes", "3", "--add", "70",
                 "--out", str(out)]) == 0
    assert "wrote 170 examples" in capsys.readouterr().out
    with np.load(out) as saved:
        images, labels, synthetic = saved["images"], saved["labels"], saved["synthetic"]
    sidecar = json.loads((tmp_path / "aug.npz.augment.json").read_text())
    assert images.shape == (170, 16, 16, 1) and synthetic.sum() == 70 and set(labels[synthetic].tolist()) == {3}
    assert sidecar["added"] == {"3": 70} and sidecar["kind"] == "image" and sidecar["per_call"] == 32
    assert main(["augment", "--address", server.address, "--from-sidecar", str(tmp_path / "aug.npz.augment.json"), "--out", str(tmp_path / "again.npz")]) == 0
    assert (tmp_path / "again.npz").read_bytes() == out.read_bytes()
    folder = tmp_path / "aug-folder"
    assert main(["augment", "--address", server.address, "--run", "c", "--data", str(real), "--split", "all", "--classes", "3", "--add", "70",
                 "--out", str(folder)]) == 0
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert len(files) == 170 and sum(f.startswith("3/generated-") for f in files) == 70 and sum("/real-" in f for f in files) == 100
    capsys.readouterr()
    assert main(["augment", "--address", server.address, "--from-sidecar", str(tmp_path / "aug-folder.augment.json"), "--out", str(tmp_path / "again-folder")]) == 0
    assert "rebuilt identical" in capsys.readouterr().out


def _is_flip_shift_of(copy: np.ndarray, originals: np.ndarray) -> bool:
    """Whether an image is one of `originals`, maybe flipped left-right, rolled by up to 2 pixels each way."""
    for image in originals:
        for flipped in (image, image[:, ::-1]):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    if np.array_equal(np.roll(np.roll(flipped, dy, axis=0), dx, axis=1), copy):
                        return True
    return False


def test_copies_replace_a_share_of_the_generated_images_with_flipped_shifted_copies_of_the_class_and_rebuild(local_store, serve, tmp_path, capsys):
    from tests.generator.conftest import CONDITIONAL, publish

    publish(local_store, "c", 1, params=CONDITIONAL)
    server = serve(local_store, ["c"], max_samples_per_request=32, max_queue_size=64)
    rng = np.random.default_rng(1)
    real = tmp_path / "real.npz"
    real_images, real_labels = rng.integers(0, 256, (100, 16, 16, 1), dtype=np.uint8), np.arange(100) % 10
    np.savez(real, images=real_images, labels=real_labels)
    out = tmp_path / "aug.npz"

    assert main(["augment", "--address", server.address, "--run", "c", "--data", str(real), "--split", "all", "--classes", "3", "--add", "70",
                 "--copies", "0.5", "--out", str(out)]) == 0
    assert "100 real, 35 of 3 generated by c step 1, and 35 flipped/shifted copies of 3" in capsys.readouterr().out
    with np.load(out) as saved:
        images, labels, synthetic, copied = saved["images"], saved["labels"], saved["synthetic"], saved["copied"]
    assert len(images) == 170 and synthetic.sum() == 35 and copied.sum() == 35 and not (synthetic & copied).any()
    assert set(labels[copied].tolist()) == {3} and np.array_equal(images[:100], real_images)
    threes = real_images[real_labels == 3]
    assert all(_is_flip_shift_of(image, threes) for image in images[copied])
    assert len({image.tobytes() for image in images[copied]}) > 10  # drawn from all ten real 3s, not one repeated
    sidecar = json.loads((tmp_path / "aug.npz.augment.json").read_text())
    assert sidecar["added"] == {"3": 35} and sidecar["copies"] == {"share": 0.5, "added": {"3": 35}}

    assert main(["augment", "--address", server.address, "--from-sidecar", str(tmp_path / "aug.npz.augment.json"), "--out", str(tmp_path / "again.npz")]) == 0
    assert "rebuilt identical" in capsys.readouterr().out

    for bad, message in (("1", "--copies must be a share in [0, 1), got 1.0"), ("-0.1", "--copies must be a share in [0, 1), got -0.1")):
        assert main(["augment", "--address", server.address, "--run", "c", "--data", str(real), "--split", "all", "--classes", "3", "--add", "70",
                     "--copies", bad, "--out", str(tmp_path / "x.npz")]) == 2
        assert message in capsys.readouterr().err
    no_threes = tmp_path / "no-threes.npz"
    np.savez(no_threes, images=real_images[real_labels != 3], labels=real_labels[real_labels != 3])
    assert main(["augment", "--address", server.address, "--run", "c", "--data", str(no_threes), "--split", "all", "--classes", "3", "--add", "70",
                 "--copies", "0.5", "--out", str(tmp_path / "y.npz")]) == 2
    assert "--copies: class 3 has no real images to copy" in capsys.readouterr().err


def test_copies_are_refused_for_a_table_run(local_store, serve, model, tmp_path, capsys):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    data, _ = _write_real(tmp_path)
    assert main(["augment", "--address", server.address, "--run", "t", "--data", data, "--split", "all", "--classes", "Yes", "--add", "10",
                 "--copies", "0.5", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--copies is for images" in capsys.readouterr().err
