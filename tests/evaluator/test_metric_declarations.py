"""Metrics declare their inputs and parameters; the pipeline gathers and checks exactly what they declare."""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import grpc
import numpy as np
import pytest

from evaluator_service import metrics as registry
from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics import METRICS, compute
from evaluator_service.metrics.spec import GENERATED_IMAGES, INPUTS, REFERENCE_IMAGES, Metric, Param
from ganworks.api import evaluator_pb2 as pb
from ganworks.cli import main
from tests.evaluator.conftest import RUN

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_registered_metric_declares_known_inputs_and_typed_bounded_parameters():
    for metric in METRICS.values():
        assert set(metric.inputs) <= set(INPUTS) and metric.fake in INPUTS
        for p in metric.params:
            assert p.type in (int, float) and math.isfinite(p.low) and math.isfinite(p.high) and p.low < p.high, f"{metric.name}.{p.name}"


@pytest.mark.parametrize("value", [1e12, 0, 2.5, math.nan, math.inf, -math.inf])
def test_a_parameter_outside_its_declared_range_is_refused_naming_it_and_the_range(value):
    x = np.zeros((10, 2))
    with pytest.raises(InvalidRequestError, match=r"kid\.num_subsets must be an integer in \[1, 1000\], got"):
        compute("kid", x, x, num_subsets=value)


def test_a_float_parameter_with_an_open_range_refuses_its_bounds():
    x = np.zeros((10, 2))
    for value in (0.0, 1.0):
        with pytest.raises(InvalidRequestError, match=r"memorization\.quantile must be a finite number in \(0, 1\)"):
            compute("memorization", x, x, train_features=x, quantile=value)


def test_a_declaration_with_a_default_outside_its_range_does_not_load():
    with pytest.raises(ValueError, match="default 0 is outside"):
        Param("k", int, 0, 1, 10, "neighbours")
    with pytest.raises(ValueError, match="unknown inputs"):
        Metric("x", lambda r, f: {}, "reference.audio", "generated.features", ("x",), "")


def test_the_pipeline_names_no_metric():
    """Inputs come from declarations: no `if name == "fid"` in the modules that run evaluations."""
    for module in ("evaluation.py", "plan.py", "compute.py", "reports.py", "kinds/image.py", "kinds/table.py", "fanout.py", "jobs.py", "continuous.py", "server.py"):
        source = (ROOT / "evaluator_service" / module).read_text()
        for name in METRICS:
            assert f'"{name}"' not in source and f"'{name}'" not in source, f"{module} names metric {name!r}"


def test_fanout_and_evaluation_import_each_other_in_one_direction_only():
    code = "import sys, evaluator_service.fanout; print('evaluator_service.evaluation' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


def _pixels(real: np.ndarray, fake: np.ndarray, channel: int = 0) -> dict[str, float]:
    return {"mean_pixel_gap": float(abs(real[..., channel].mean() - fake[..., channel].mean())), "fake_count": float(len(fake))}


def test_a_metric_declared_in_one_place_is_computed_from_the_raw_images_it_asks_for(monkeypatch, evaluator):
    pixels = Metric("pixels", _pixels, REFERENCE_IMAGES, GENERATED_IMAGES, ("mean_pixel_gap", "fake_count"), "mean pixel gap",
                    params=(Param("channel", int, 0, 0, 3, "colour channel"),))
    monkeypatch.setitem(registry.METRICS, "pixels", pixels)

    result = evaluator.evaluate(run=RUN, num_samples=40, metrics=["pixels", "fid"], params={"pixels.channel": 0})

    assert result.state == pb.EVALUATION_STATE_SUCCEEDED, result.error
    assert result.metrics["fake_count"] == 40 and 0 <= result.metrics["mean_pixel_gap"] <= 255 and "fid" in result.metrics


@pytest.mark.parametrize(
    "params, message",
    [
        ({"kid.num_subsets": 1e12}, r"kid.num_subsets must be an integer in [1, 1000], got 1000000000000"),
        ({"diversity.max_samples": 1e12}, r"diversity.max_samples must be an integer in [2, 5000]"),
        ({"kid.subset_size": math.nan}, r"kid.subset_size must be an integer in [2, 5000], got nan"),
        ({"prdc.nearest_k": math.inf}, r"prdc.nearest_k must be an integer in [1, 100], got inf"),
        ({"memorization.quantile": -math.inf}, r"memorization.quantile must be a finite number in (0, 1), got -inf"),
        ({"fid.eps": math.nan}, r"fid.eps must be a finite number in (0, 1]"),
        ({"is.splits": 2.5}, r"is.splits must be an integer in [1, 100], got 2.5"),
        ({"prdc.nearest_k": 80}, r"prdc.nearest_k is 80 but only 50 samples are asked for"),
    ],
)
def test_out_of_range_or_non_finite_parameters_are_invalid_argument_naming_the_parameter_and_its_range(evaluator, params, message):
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.Evaluate(pb.EvaluateRequest(run=RUN, num_samples=50, metrics=[k.partition(".")[0] for k in params], params=params), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    assert list(evaluator.stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=10).evaluations) == []


@pytest.mark.parametrize("value, shown", [("1e12", "kid.num_subsets must be an integer in [1, 1000]"), ("nan", "got nan"), ("inf", "got inf")])
def test_the_cli_refuses_an_out_of_range_param_naming_the_flag_and_the_range(evaluator, capsys, value, shown):
    code = main(["evaluate", "--address", evaluator.address, "--run", RUN, "-n", "50", "--param", f"kid.num_subsets={value}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--param 'kid.num_subsets={value}'" in err and shown in err
