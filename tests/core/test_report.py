"""`ganworks report RUN`: a page that a real browser renders, with a curve per metric and a grid per snapshot."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from ganworks.checkpoint import publish_snapshot
from ganworks.cli import main
from ganworks.images import grid_png
from ganworks.layout import eval_report_key, stats_key
from ganworks.models import build_generator
from ganworks.store import open_store
from tests.deploy.tools import tool

PARAMS = {"image_size": 16, "channels": 1, "latent_dim": 8, "width": 8}
STEPS = (100, 200, 300, 400)
METRICS = {"fid", "kid_mean", "precision", "recall"}
MATPLOTLIB_BLUE = np.array([31, 119, 180])  # the first line colour of every curve


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("store")))
    state = build_generator("dcgan", **PARAMS).state_dict()
    rng = np.random.default_rng(0)
    for i, step in enumerate(STEPS):
        samples = grid_png(rng.integers(0, 256, (16, 16, 16, 1), dtype=np.uint8), scale=2)
        publish_snapshot(store, run="r", step=step, generator_state=state, architecture="dcgan", architecture_params=PARAMS, samples_png=samples)
        metrics = {"fid": 80.0 / (i + 1), "kid_mean": 0.08 / (i + 1), "precision": 0.2 * i, "recall": 0.1 * i}
        store.put_json(eval_report_key("r", step, "digits-classifier-legacy-pytorch-n2000-default"), {"extractor": "digits-classifier", "num_samples": 2000, "metrics": metrics})
    stats = [{"step": s, "time": 1.0 * s, "images_seen": 64 * s, "loss_g": 1.0 + 0.001 * s, "loss_d": 1.0 - 0.001 * s, "d_real": 0.5, "d_fake": -0.5,
              "grad_norm_g": 2.0, "grad_norm_d": 3.0, "images_per_second": 120.0, "augment_p": 0.001 * s} for s in range(10, 410, 10)]
    store.put_bytes(stats_key("r"), "".join(json.dumps(line) + "\n" for line in stats).encode())
    return store


def chromium(*args: str, cwd) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", f"--user-data-dir={cwd / 'profile'}"]
    return subprocess.run([tool("chromium"), *flags, *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_the_report_renders_in_headless_chromium_with_a_curve_per_metric_and_a_grid_per_snapshot(store, tmp_path, capsys):
    assert main(["report", "r", "--store", store.url, "--out", str(tmp_path / "report")]) == 0
    page = tmp_path / "report" / "index.html"
    assert str(page) in capsys.readouterr().out

    shot = tmp_path / "screenshot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri(), cwd=tmp_path)
    dom = chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout

    assert set(re.findall(r'class="metric" data-metric="([^"]+)"', dom)) == METRICS
    assert len(re.findall(r'class="metric"', dom)) == len(METRICS)
    assert [int(s) for s in re.findall(r'class="grid" data-step="(\d+)"', dom)] == list(STEPS)
    panels = re.findall(r'class="training" data-panel="([^"]+)"', dom)
    assert panels[:4] == ["losses", "discriminator outputs (mean logit)", "gradient norms", "images per second"] and "augmentation probability p" in panels
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1400, 1280) and pixels.std() > 10  # not a blank page
    # The curves were decoded and drawn: their line colour is on the screen.
    assert (np.abs(pixels - MATPLOTLIB_BLUE).sum(axis=2) < 30).sum() > 200


def test_a_run_without_evaluations_or_stats_still_gets_a_page_that_says_so(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_snapshot(store, run="bare", step=5, generator_state=build_generator("dcgan", **PARAMS).state_dict(), architecture="dcgan", architecture_params=PARAMS)

    assert main(["report", "bare", "--store", store.url, "--out", str(tmp_path / "out")]) == 0

    text = (tmp_path / "out" / "index.html").read_text()
    assert "No evaluation reports yet" in text and "No stats.jsonl" in text


HOSTILE = ["../../escaped", "fid/../../x", 'say "hi"', "<script>alert(1)</script>", "cost $\\frac{a$", "a" * 300, "../"]


def test_metric_and_statistic_names_a_store_can_hold_stay_names_on_the_page_and_in_the_folder(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_snapshot(store, run="odd", step=5, generator_state=build_generator("dcgan", **PARAMS).state_dict(), architecture="dcgan", architecture_params=PARAMS)
    store.put_json(eval_report_key("odd", 5, "set"), {"extractor": "x", "num_samples": 10, "metrics": {name: 1.0 for name in HOSTILE}})
    store.put_bytes(stats_key("odd"), "".join(json.dumps({"step": s, **{name: 0.5 * s for name in HOSTILE}}) + "\n" for s in (1, 2)).encode())
    out = tmp_path / "deep" / "out"

    assert main(["report", "odd", "--store", store.url, "--out", str(out)]) == 0

    from html.parser import HTMLParser

    class Figures(HTMLParser):
        def __init__(self):
            super().__init__()
            self.metrics, self.panels, self.tags = [], [], set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            attrs = dict(attrs)
            if attrs.get("class") == "metric":
                self.metrics.append(attrs["data-metric"])
            if attrs.get("class") == "training":
                self.panels.append(attrs["data-panel"])

    page = Figures()
    page.feed((out / "index.html").read_text())
    assert sorted(page.metrics) == sorted(HOSTILE) and sorted(page.panels) == sorted(HOSTILE)
    assert "script" not in page.tags
    written = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*.png")}
    assert written == {("deep", "out")}, "every PNG stays in --out"


def test_each_metric_says_which_split_its_numbers_were_computed_with(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_snapshot(store, run="p", step=5, generator_state=build_generator("dcgan", **PARAMS).state_dict(), architecture="dcgan", architecture_params=PARAMS)
    store.put_json(eval_report_key("p", 5, "set"), {"extractor": "x", "num_samples": 10, "metrics": {"fid": 3.0, "inception_score_mean": 2.0},
                                                    "splits": {"fid": "held_out", "inception_score_mean": "generated"}})

    assert main(["report", "p", "--store", store.url, "--out", str(tmp_path / "out")]) == 0

    text = (tmp_path / "out" / "index.html").read_text()
    assert 'data-metric="fid" data-split="held_out"' in text and "computed with split: held_out" in text
    assert 'data-metric="inception_score_mean" data-split="generated"' in text
