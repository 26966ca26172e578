"""`ganworks generate -n N` beyond the server's per-call limit: asked for in parts, rows and images alike."""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow.ipc
import pytest

from ganworks.cli import main
from tests.generator.conftest import CONDITIONAL, publish
from tests.generator.test_records import SMALL, _table, publish_table


@pytest.fixture(scope="module")
def model():
    from trainer.ctgan import fit

    return fit(_table(), epochs=2, batch_size=40, seed=0, **SMALL)


def test_generate_10000_rows_with_default_server_limits_asks_in_parts_and_the_same_seed_gives_the_same_rows(local_store, serve, model, tmp_path, capsys):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])  # default limits: at most 1,024 rows a call
    with server.client() as client:
        assert client.max_per_call("t") == 1024
        first_call = client.generate_records("t", 1024, seed=4, format="csv").table
    out, again, arrow = tmp_path / "rows.csv", tmp_path / "again.csv", tmp_path / "rows.arrow"
    base = ["generate", "--address", server.address, "--run", "t", "-n", "10000", "--seed", "4"]

    assert main([*base, "--out", str(out)]) == 0
    assert "wrote 10000 rows" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 10000
    # The first part is what one call with the seed gives; later parts are new rows, not repeats of it.
    assert [float(r["balance"]) for r in rows[:1024]] == pytest.approx(first_call.column("balance").to_pylist())
    balances = [float(r["balance"]) for r in rows]
    # (Values clipped at the range's ends repeat in any sample; a repeated part would share nearly all of them.)
    assert len(set(balances[:1024]) & set(balances[1024:2048])) < 100 and len(set(balances[-1000:]) & set(balances[:1024])) < 100
    assert main([*base, "--out", str(again)]) == 0 and again.read_bytes() == out.read_bytes()
    assert main([*base, "--condition", "default=Yes", "--out", str(arrow)]) == 0
    table = pyarrow.ipc.open_stream(arrow.read_bytes()).read_all()
    assert table.num_rows == 10000 and set(table.column("default").to_pylist()) == {"Yes"}


def test_generate_more_images_than_one_call_takes_writes_them_all_with_their_labels(local_store, serve, tmp_path, capsys):
    publish(local_store, "c", 1, params=CONDITIONAL)
    server = serve(local_store, ["c"], max_samples_per_request=256, max_queue_size=512)
    out = tmp_path / "many.npz"
    assert main(["generate", "--address", server.address, "--run", "c", "-n", "600", "--seed", "9", "--labels", "3", "--out", str(out)]) == 0
    assert "wrote 600 images" in capsys.readouterr().out
    with np.load(out) as saved:
        images, labels = saved["images"], saved["labels"]
    with server.client() as client:
        one_call = client.generate("c", 256, seed=9, labels=[3])
    assert images.shape == (600, 16, 16, 1) and set(labels.tolist()) == {3}
    assert np.array_equal(images[:256], one_call.images)
    assert not np.array_equal(images[256:512], images[:256])
