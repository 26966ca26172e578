"""The shared CUDA helpers, on any machine: fp32 math without TF32 (set, then put back) and the host copy."""

from __future__ import annotations

import pytest
import torch

from ganworks.devices import PRECISIONS, cuda_math, tf32_allowed, to_host


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_fp32_math_turns_tf32_off_for_matmuls_and_convolutions_and_puts_the_flags_back_even_after_an_error():
    before = _flags()
    with cuda_math("fp32"):
        assert _flags() == (False, False) and not tf32_allowed()
    assert _flags() == before
    with pytest.raises(RuntimeError, match="boom"):
        with cuda_math("tf32"):
            assert _flags() == (True, True) and tf32_allowed()
            raise RuntimeError("boom")
    assert _flags() == before


def test_reduced_precisions_keep_fp32_math_for_what_autocast_leaves_in_fp32_and_unknown_ones_are_refused():
    for precision in ("fp16", "bf16"):
        with cuda_math(precision):
            assert not tf32_allowed()
    assert set(PRECISIONS) == {"fp32", "tf32", "fp16", "bf16"}
    with pytest.raises(ValueError, match="fp64"):
        with cuda_math("fp64"):
            pass


def test_a_cpu_tensor_is_handed_back_as_it_is():
    t = torch.arange(6.0).reshape(2, 3)
    assert to_host(t) is t
