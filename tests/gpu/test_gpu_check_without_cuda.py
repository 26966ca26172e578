"""`make gpu-check` on a machine without CUDA: it says so, writes {"device": "cpu", "skipped": true, ...} and exits 0 at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_without_a_cuda_device_exits_0_at_once_with_a_message_and_a_skipped_json(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides every card, so this is the no-CUDA path on a GPU machine too.
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--out", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout and "make gpu-check" in done.stdout
    [written] = list(tmp_path.glob("gpu-check-*.json"))
    result = json.loads(written.read_text())
    assert result["device"] == "cpu" and result["skipped"] is True and "no CUDA device" in result["reason"]
    assert {"date", "torch", "load_average"} <= set(result)
    assert not {"trainer", "generator", "evaluator", "modconv", "tests"} & set(result)  # it stopped before measuring anything


def test_gpu_check_refuses_an_unknown_section_to_skip(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--out", str(tmp_path), "--skip", "trainer,nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr
