"""Feature precision on CUDA: fp32 with TF32 off by default, tf32/fp16 when asked, the choice in every report.
These parts run on a CPU; tests/gpu compares CUDA's features with the CPU's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluator_service.errors import InvalidRequestError
from ganworks.api import evaluator_pb2 as pb
from evaluator_service.features import Extractor, inception
from evaluator_service.settings import ENV_PREFIX, EvaluatorSettings
from ganworks.settings import load_settings
from tests.evaluator.conftest import RUN


def _extractor(precision: str = "fp32", device: str = "cpu") -> Extractor:
    torch.manual_seed(0)
    net = inception.FIDInceptionV3().eval().requires_grad_(False)
    extractor = Extractor(inception.EXTRACTOR_ID, net, inception.INPUT_SIZE, 3, inception.FEATURE_DIM, inception.NUM_LOGITS, {}, precision=precision)
    extractor.device = torch.device(device)  # not moved: only what the extractor decides from its device is under test
    return extractor


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_on_cuda_each_forward_pass_runs_with_tf32_off_unless_asked_and_the_flags_are_put_back():
    torch.backends.cudnn.allow_tf32 = True  # cuDNN's own default
    before = _tf32()
    with _extractor("fp32", "cuda")._math("fp32"):
        assert _tf32() == (False, False)
    with _extractor("tf32", "cuda")._math("tf32"):
        assert _tf32() == (True, True)
    assert _tf32() == before
    with _extractor("fp32", "cpu")._math("fp32"):
        assert _tf32() == before  # a CPU has no TF32: nothing is touched


def test_the_report_record_says_which_precision_ran_and_a_cpu_always_computes_fp32():
    assert _extractor("tf32", "cpu").precision_record() == {"used": "fp32"}
    on_cuda = _extractor("fp16", "cuda")
    on_cuda.precision_difference = 3e-3
    record = on_cuda.precision_record()
    assert record["used"] == "fp16" and record["max_relative_difference_vs_fp32"] == 3e-3 and "may differ" in record["note"]
    assert _extractor("fp32", "cuda").precision_record() == {"used": "fp32"}


def test_an_unknown_feature_precision_is_refused_naming_the_choices_and_the_setting_reads_from_the_environment():
    with pytest.raises(InvalidRequestError, match="fp32, tf32, fp16"):
        EvaluatorSettings(feature_precision="fp64")
    assert load_settings(EvaluatorSettings, {}, env={f"{ENV_PREFIX}FEATURE_PRECISION": "tf32"}, prefix=ENV_PREFIX).feature_precision == "tf32"
    assert EvaluatorSettings().feature_precision == "fp32"


def test_extraction_on_a_cpu_gives_the_same_features_at_any_batch_size():
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    extractor = _extractor()
    assert extractor.batch_size(3) == 3  # batches sized to memory are for CUDA; a CPU keeps the configured size
    np.testing.assert_allclose(extractor.extract(images, "legacy-pytorch", batch_size=2)[0], extractor.extract(images, "legacy-pytorch", batch_size=5)[0], rtol=1e-5, atol=1e-6)


def test_an_evaluation_report_records_the_feature_precision_used(start_evaluator, generator, shared_store):
    evaluator = start_evaluator(generator=generator.address, feature_precision="tf32")
    result = evaluator.evaluate(run=RUN, num_samples=200, metrics=["fid"])
    assert result.state == pb.EVALUATION_STATE_SUCCEEDED, result.error
    # This evaluation's own report (the package's store holds other tests' reports of the same run).
    [key] = [o.key for o in shared_store.list(f"runs/{RUN}/evals/") if result.report_url.endswith(o.key)]
    assert shared_store.get_json(key)["feature_precision"] == {"used": "fp32"}  # asked tf32; this CPU computed fp32 and says so
