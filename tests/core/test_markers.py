"""The markers select what they say: `s3` every test that uses the S3 server, `gpu` what needs CUDA (skipped without it)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_not_s3_leaves_out_every_test_using_s3_and_gpu_tests_are_skipped_with_the_reason_without_cuda():
    store_tests = "tests/core/test_store.py::test_"
    chosen = [f"{store_tests}s3_bucket_is_created_when_missing",  # asks for the `s3` fixture
              f"{store_tests}delete_removes_an_object_and_missing_objects_raise_not_found",  # `store`: [local] and [s3]
              f"{store_tests}a_plain_folder_path_opens_the_local_backend", "tests/core/test_gpu.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", "not s3", *chosen],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr

    if torch.cuda.is_available():
        assert "3 passed, 2 deselected" in out, out[-2000:]
    else:
        assert "2 passed, 1 skipped, 2 deselected" in out, out[-2000:]
        assert "needs a CUDA device (torch.cuda.is_available() is False)" in out, out[-2000:]
