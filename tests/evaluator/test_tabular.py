"""A table run evaluated end to end: rows from the real generator service (GenerateRecords), SDMetrics-style
quality, ML efficacy and the DCR privacy share in the report and on the gauges; image metrics refused for it."""

from __future__ import annotations

import grpc
import pytest

from ganworks.api import evaluator_pb2 as pb
from ganworks.checkpoint import publish_snapshot
from ganworks.store import open_store
from ganworks.tabular.data import load_table
from trainer.ctgan import fit
from tests.evaluator.conftest import GeneratorProcess, RunningEvaluator
from trainer.kinds.table import table_split_json

RUN = "bc-table"
SUCCEEDED = pb.EVALUATION_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def table_store(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('table-eval') / 'store'}"
    store = open_store(url)
    train, test = load_table("breast-cancer", split="train"), load_table("breast-cancer", split="test")
    model = fit(train, epochs=2, batch_size=50, seed=0, latent_dim=8, g_width=16, d_width=16, pac=5, max_modes=3)
    store.put_json(f"runs/{RUN}/run.json", {"run": RUN, "code_version": "test", "options": {}, "dataset": table_split_json("breast-cancer", train, test, "train"),
                                           "architecture": "ctgan", "architecture_params": model.params})
    publish_snapshot(store, run=RUN, step=3, generator_state=model.generator.state_dict(), architecture="ctgan", architecture_params=model.params,
                     dataset_id=train.id, files=model.snapshot_files())
    return url


@pytest.fixture(scope="module")
def table_generator(table_store, tmp_path_factory):
    proc = GeneratorProcess(table_store, [RUN], tmp_path_factory.mktemp("table-generator") / "generator.log")
    yield proc
    proc.stop()


@pytest.fixture
def table_evaluator(table_store, table_generator):
    evaluator = RunningEvaluator(open_store(table_store), generator=table_generator.address, default_num_samples=1000)
    yield evaluator
    evaluator.stop()


def test_a_table_run_gets_quality_efficacy_and_privacy_in_its_report_and_on_the_gauges(table_evaluator, table_store):
    result = table_evaluator.evaluate(run=RUN)

    assert result.state == SUCCEEDED, result.error
    assert result.extractor == "table" and result.version == 3 and list(result.metric_names) == ["table_quality", "ml_efficacy", "dcr", "augmentation"]
    report = open_store(table_store).get_json(f"runs/{RUN}/evals/000000003/table-none-n1000-default.json")
    metrics = report["metrics"]
    assert 0 <= metrics["table_quality"] <= 1 and metrics["table_quality"] == pytest.approx((metrics["column_shapes"] + metrics["column_pair_trends"]) / 2)
    assert report["metric_sources"] == {"table_quality": "sdmetrics 0.32.0 QualityReport"}  # the test extra installs sdmetrics
    assert metrics["f1_real"] > 0.8 and 0 <= metrics["ml_efficacy"] <= 2
    assert 0 <= metrics["closer_to_train_share"] <= 1
    assert metrics["closer_to_train_excess"] == pytest.approx(metrics["closer_to_train_share"] - 455 / 569)
    assert report["dataset_id"].startswith("breast-cancer-455x31-train-") and report["held_out_dataset_id"].startswith("breast-cancer-114x31-test-")
    labels = {"run": RUN, "extractor": "table"}
    for gauge, key in (("table_quality", "table_quality"), ("ml_efficacy", "ml_efficacy"), ("closer_to_train_share", "closer_to_train_share"),
                       ("closer_to_train_excess", "closer_to_train_excess"), ("augmentation_gain_pr_auc_hgb", "augmentation_gain_pr_auc_hgb")):
        assert table_evaluator.metric(f"ganworks_evaluator_{gauge}", **labels) == pytest.approx(metrics[key])


def test_image_metrics_and_extractors_are_refused_for_a_table_run_naming_the_table_metrics(table_evaluator):
    for request, message in ((dict(metrics=["fid"]), "fid is a metric of image runs; run 'bc-table' makes table rows (table metrics: table_quality, ml_efficacy, dcr, augmentation)"),
                             (dict(extractor="inception-v3-fid"), "leave extractor and resize_mode empty")):
        with pytest.raises(grpc.RpcError) as caught:
            table_evaluator.stub.Evaluate(pb.EvaluateRequest(run=RUN, **request), timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.details()
