"""`ganworks train --use-gpu`: NCCL, bf16 autocast, and a clear refusal, before Ray starts, when the GPUs are not there."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ganworks.cli import main
from ganworks.errors import ConfigError
from trainer import device


@pytest.mark.parametrize("gpus, workers", [(0, 1), (1, 2), (3, 4)])
def test_use_gpu_with_fewer_gpus_than_workers_is_refused_naming_both_counts_and_the_way_out(capsys, tmp_path, monkeypatch, gpus, workers):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    code = main(["train", "--no-progress", "--steps", "2", "--store", str(tmp_path / "store"), "--run", "r", "--use-gpu", "--num-workers", str(workers),
                 "--batch-size", "12"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--use-gpu with --num-workers {workers} needs {workers} GPUs" in err and f"this machine (torch.cuda.device_count()) has {gpus}" in err
    assert ("lower --num-workers to" in err) if gpus else ("without --use-gpu" in err)
    assert not (tmp_path / "store" / "runs" / "r" / "run.json").exists()  # refused before anything ran


def test_as_many_gpus_as_workers_pass_the_check_and_a_ray_cluster_with_fewer_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    device.check_gpus(True, 2)
    device.check_gpus(False, 8)  # CPU workers need no GPU
    with pytest.raises(ConfigError, match="the Ray cluster has 1"):
        device.check_gpus(True, 2, cluster_gpus=1.0)


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # building a CUDA autocast on a CPU-only machine warns; it is not entered here
def test_gpu_workers_use_nccl_and_bf16_autocast_and_cpu_workers_gloo_and_fp32():
    assert device.backend(True) == "nccl" and device.backend(False) == "gloo"
    assert isinstance(device.autocast(torch.device("cpu"), True), contextlib.nullcontext)  # mixed precision is for GPUs only
    assert isinstance(device.autocast(torch.device("cuda"), False), contextlib.nullcontext)
    on_gpu = device.autocast(torch.device("cuda"), True)
    assert isinstance(on_gpu, torch.autocast) and on_gpu.fast_dtype == torch.bfloat16 and on_gpu.device == "cuda"
