"""The evaluator service end to end: samples from the real generator service over gRPC, a report in the store,
gauges on /metrics, and clear failures for bad input."""

from __future__ import annotations

import grpc
import pytest

from ganworks.api import evaluator_pb2 as pb
from tests.evaluator.conftest import RUN

SUCCEEDED, FAILED = pb.EVALUATION_STATE_SUCCEEDED, pb.EVALUATION_STATE_FAILED
SMALL = {"kid.subset_size": 100, "kid.num_subsets": 10}


def test_the_default_evaluation_of_a_published_snapshot_writes_a_report_and_sets_the_gauges(evaluator, shared_store):
    result = evaluator.evaluate(run=RUN)  # every option at the server's default: the continuous set

    assert result.state == SUCCEEDED, result.error
    assert result.version == 2 and result.extractor == "digits-classifier" and result.resize_mode == "legacy-pytorch"
    report = shared_store.get_json(f"runs/{RUN}/evals/000000002/digits-classifier-legacy-pytorch-n1000-default.json")
    assert report["run"] == RUN and report["step"] == 2 and report["num_samples"] == 1000
    assert report["dataset_id"].startswith("digits-32x32x1-train-") and report["warnings"] == []
    for key in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "inception_score_mean", "diversity", "class_kl", "memorization_rate"):
        assert report["metrics"][key] == pytest.approx(result.metrics[key])
    labels = {"run": RUN, "extractor": "digits-classifier"}
    assert evaluator.metric("ganworks_evaluator_fid", **labels) == pytest.approx(report["metrics"]["fid"])
    assert evaluator.metric("ganworks_evaluator_kid", **labels) == pytest.approx(report["metrics"]["kid_mean"])
    assert evaluator.metric("ganworks_evaluator_memorization_rate", **labels) == pytest.approx(report["metrics"]["memorization_rate"])
    assert evaluator.metric("ganworks_evaluator_evaluated_step", **labels) == 2
    assert evaluator.metric("ganworks_evaluator_evaluations_total", result="succeeded") == 1


def test_requests_differing_in_seed_or_parameters_get_their_own_reports_and_leave_the_gauges_alone(start_evaluator, generator, shared_store):
    evaluator = start_evaluator(generator=generator.address, default_num_samples=200, default_metrics=["fid", "prdc"])
    default = evaluator.evaluate(run=RUN)
    seeded = evaluator.evaluate(run=RUN, seed=5)
    tuned = evaluator.evaluate(run=RUN, params={"prdc.nearest_k": 4})

    assert default.state == seeded.state == tuned.state == SUCCEEDED
    urls = {default.report_url, seeded.report_url, tuned.report_url}
    assert len(urls) == 3, urls
    assert seeded.metrics["fid"] != default.metrics["fid"]
    evals = f"runs/{RUN}/evals/000000002/"
    assert shared_store.get_json(evals + "digits-classifier-legacy-pytorch-n200-default.json")["metrics"] == dict(default.metrics)
    assert shared_store.get_json(evals + "digits-classifier-legacy-pytorch-n200-default-seed5.json")["seed"] == 5
    labels = {"run": RUN, "extractor": "digits-classifier"}
    assert evaluator.metric("ganworks_evaluator_fid", **labels) == pytest.approx(default.metrics["fid"])
    assert evaluator.metric("ganworks_evaluator_evaluations_total", result="succeeded") == 3


def test_a_pinned_version_is_evaluated_with_the_cached_reference_and_the_same_numbers_for_the_same_seed(evaluator, shared_store):
    first = evaluator.evaluate(run=RUN, version=1, num_samples=200, metrics=["fid", "prdc"], seed=7)
    second = evaluator.evaluate(run=RUN, version=1, num_samples=200, metrics=["fid", "prdc"], seed=7)

    assert first.state == second.state == SUCCEEDED
    assert first.version == 1 and dict(first.metrics) == dict(second.metrics)
    report = shared_store.get_json(f"runs/{RUN}/evals/000000001/digits-classifier-legacy-pytorch-n200-fid-prdc-seed7.json")
    assert report["reference_cached"] is True
    assert shared_store.exists(f"reference-stats/{report['dataset_id']}/digits-classifier/legacy-pytorch-{report['reference_samples']}.npz")


def test_fid_with_fewer_samples_than_feature_dimensions_succeeds_with_a_warning_in_the_report(evaluator, shared_store):
    result = evaluator.evaluate(run=RUN, num_samples=100, metrics=["fid"])

    assert result.state == SUCCEEDED
    assert any("100 generated samples for 128-d features" in w for w in result.warnings)
    report = shared_store.get_json(f"runs/{RUN}/evals/000000002/digits-classifier-legacy-pytorch-n100-fid.json")
    assert report["warnings"] == list(result.warnings)


@pytest.mark.parametrize(
    "request_fields, code, message",
    [
        ({"run": "no-such-run"}, grpc.StatusCode.NOT_FOUND, "unknown run 'no-such-run'"),
        ({"run": RUN, "version": 999}, grpc.StatusCode.NOT_FOUND, "no snapshot at step 999"),
        ({"run": RUN, "metrics": ["fid", "fidd"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown metric 'fidd'"),
        ({"run": RUN, "extractor": "resnet"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown extractor 'resnet'"),
        ({"run": RUN, "extractor": "cifar-classifier"}, grpc.StatusCode.INVALID_ARGUMENT, "its classifier is 'digits-classifier'"),
        ({"run": RUN, "resize_mode": "nearest"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown resize mode 'nearest'"),
        ({"run": RUN, "num_samples": 500, "metrics": ["kid"]}, grpc.StatusCode.INVALID_ARGUMENT, "kid.subset_size is 1000 but only 500"),
        ({"run": RUN, "num_samples": 1}, grpc.StatusCode.INVALID_ARGUMENT, "num_samples must be from 2"),
        ({"run": RUN, "params": {"kid.subset": 5.0}, "metrics": ["kid"]}, grpc.StatusCode.INVALID_ARGUMENT, "kid.subset_size"),
        ({"run": "../etc"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid run id"),
    ],
)
def test_bad_requests_are_refused_with_a_status_and_a_message_naming_the_problem(evaluator, request_fields, code, message):
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.Evaluate(pb.EvaluateRequest(**request_fields), timeout=60)
    assert info.value.code() == code
    assert message in info.value.details()


def test_refusals_name_store_keys_but_never_the_servers_store_location(evaluator, store_url):
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.Evaluate(pb.EvaluateRequest(run="no-such-run"), timeout=60)

    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "runs/no-such-run/run.json does not exist" in info.value.details()
    assert store_url not in info.value.details() and store_url.removeprefix("file://") not in info.value.details()


def test_missing_inception_weights_fail_the_job_with_where_to_get_them(evaluator, shared_store):
    result = evaluator.evaluate(run=RUN, num_samples=50, metrics=["fid"], extractor="inception-v3-fid")

    assert result.state == FAILED
    assert "GANWORKS_EVALUATOR_INCEPTION_WEIGHTS" in result.error and "pt_inception-2015-12-05-6726825d.pth" in result.error
    assert evaluator.metric("ganworks_evaluator_failures_total", reason="weights_missing") == 1
    assert not shared_store.exists(f"runs/{RUN}/evals/000000002/inception-v3-fid-legacy-pytorch-n50-fid.json")


def test_inception_weights_with_the_wrong_sha256_fail_the_job(start_evaluator, generator, tmp_path):
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not the weights")
    evaluator = start_evaluator(generator=generator.address, inception_weights=str(weights))

    result = evaluator.evaluate(run=RUN, num_samples=50, metrics=["fid"], extractor="inception-v3-fid")

    assert result.state == FAILED and "sha256" in result.error and "expected 6726825d" in result.error
    assert evaluator.metric("ganworks_evaluator_failures_total", reason="weights_integrity") == 1


def test_an_unreachable_generator_fails_the_job_naming_the_address_and_the_setting(start_evaluator, shared_store):
    evaluator = start_evaluator(generator="127.0.0.1:9", generator_retry_seconds=1.0)

    result = evaluator.evaluate(run=RUN, num_samples=50, metrics=["fid"])

    assert result.state == FAILED and "127.0.0.1:9" in result.error and "GANWORKS_EVALUATOR_GENERATOR" in result.error
    assert evaluator.metric("ganworks_evaluator_failures_total", reason="generator_unavailable") == 1
    assert evaluator.metric("ganworks_evaluator_evaluations_total", result="failed") == 1


def test_a_full_queue_answers_resource_exhausted(start_evaluator):
    evaluator = start_evaluator(generator="127.0.0.1:9", generator_retry_seconds=3.0, max_queue_size=1)
    codes = []
    for _ in range(3):
        try:
            evaluator.stub.Evaluate(pb.EvaluateRequest(run=RUN, num_samples=50, metrics=["fid"]), timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            assert "max_queue_size 1" in exc.details()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and codes[0] == grpc.StatusCode.OK


def test_unknown_evaluation_id_is_not_found(evaluator):
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.GetEvaluation(pb.GetEvaluationRequest(id="nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_finished_jobs_beyond_the_kept_count_are_dropped_oldest_first_and_shown_in_the_gauge(start_evaluator, generator):
    evaluator = start_evaluator(generator=generator.address, keep_jobs=2)
    ids = [evaluator.evaluate(run=RUN, num_samples=20, metrics=["fid"], seed=i).id for i in range(3)]

    listed = [e.id for e in evaluator.stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=10).evaluations]
    assert listed == [ids[2], ids[1]]
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.GetEvaluation(pb.GetEvaluationRequest(id=ids[0]), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert evaluator.stub.GetEvaluation(pb.GetEvaluationRequest(id=ids[2]), timeout=10).state == SUCCEEDED
    assert evaluator.metric("ganworks_evaluator_cache_entries", cache="jobs") == 2


def test_finished_jobs_older_than_the_kept_age_are_dropped(start_evaluator, generator):
    evaluator = start_evaluator(generator=generator.address, keep_jobs_seconds=0.5)
    first = evaluator.evaluate(run=RUN, num_samples=20, metrics=["fid"])
    assert first.state == SUCCEEDED, first.error

    evaluator.wait_for(lambda: not evaluator.stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=10).evaluations, timeout=30, what="the job to expire")
    with pytest.raises(grpc.RpcError) as info:
        evaluator.stub.GetEvaluation(pb.GetEvaluationRequest(id=first.id), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_with_mlflow_tracking_the_metrics_join_the_runs_mlflow_run_at_the_snapshots_step(evaluator, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    from evaluator_service.evaluation import close_mlflow_runs
    from ganworks.mlflow_tracking import RUN_TAG

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("GANWORKS_MLFLOW_TRACKING_URI", uri)

    result = evaluator.evaluate(run=RUN, version=1, num_samples=200, metrics=["fid"], seed=11)
    assert close_mlflow_runs(timeout=60)  # what the evaluator does when it stops

    client = MlflowClient(tracking_uri=uri)
    [tracked] = client.search_runs([client.get_experiment_by_name("ganworks").experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{RUN}'")
    [fid_key] = [key for key in tracked.data.metrics if key.endswith("/fid")]
    assert [(m.step, m.value) for m in client.get_metric_history(tracked.info.run_id, fid_key)] == [(1, pytest.approx(result.metrics["fid"]))]
