"""Grafana dashboards: generated from one source, unique uids, a datasource variable, a valid query in every panel."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.deploy import artifacts
from tests.deploy.tools import ROOT, run_tool


def test_dashboard_json_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, "deploy/monitoring/dashboards.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_three_dashboards_with_unique_uids():
    boards = artifacts.dashboards()
    assert set(boards) == {"training", "serving", "quality"}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids) and all(0 < len(uid) <= 40 for uid in uids), uids


def test_every_dashboard_picks_its_prometheus_through_a_variable():
    for name, board in artifacts.dashboards().items():
        variables = board["templating"]["list"]
        datasource = [v for v in variables if v["type"] == "datasource"]
        assert datasource and datasource[0]["query"] == "prometheus", name
        ref = "${" + datasource[0]["name"] + "}"
        for panel in artifacts.panels(board):
            assert panel["datasource"]["uid"] == ref, f"{name}/{panel['title']}"
            assert all(t["datasource"]["uid"] == ref for t in panel["targets"]), f"{name}/{panel['title']}"
        for variable in variables:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == ref, f"{name}: variable {variable['name']}"


def test_every_panel_has_a_query_and_a_unique_id():
    for name, board in artifacts.dashboards().items():
        ids = [panel["id"] for panel in artifacts.panels(board)]
        assert len(set(ids)) == len(ids), name
        for panel in artifacts.panels(board):
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), f"{name}/{panel['title']} has no query"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), f"{name}/{panel['title']}: duplicate refId"


def test_every_panel_query_is_valid_promql(tmp_path):
    """promtool parses each query (Grafana variables filled in) as a recording rule, offline."""
    queries = artifacts.panel_queries()
    rules = [{"record": f"panel:query_{i}:check", "expr": artifacts.concrete(expr)} for i, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_show_what_the_issue_asks_for():
    wanted = {
        "training": ["ganworks_trainer_images_per_second", "ganworks_trainer_loss", "ganworks_trainer_discriminator_output", "ganworks_trainer_last_snapshot_step",
                     "ganworks_trainer_snapshots_published_total"],
        "serving": ["ganworks_generator_requests_total", "ganworks_generator_request_latency_seconds_bucket", "ganworks_generator_queue_wait_seconds_bucket",
                    "ganworks_generator_batch_size", "ganworks_generator_queue_depth", "ganworks_generator_model_version"],
        "quality": [f"ganworks_evaluator_{m}" for m in ("fid", "kid", "precision", "recall", "coverage", "diversity", "memorization_rate")],
    }
    queries = artifacts.panel_queries()
    for board, metrics in wanted.items():
        text = " ".join(expr for name, _, expr in queries if name == board)
        missing = [m for m in metrics if m not in text]
        assert not missing, f"{board} dashboard lacks {missing}"
    quality = " ".join(expr for name, _, expr in queries if name == "quality")
    assert "by (run" in quality, "quality panels must split per run"


def test_every_dashboard_has_a_namespace_variable_that_every_query_honours():
    """One Prometheus scrapes dev and prod alike: a panel must not add a dev load test to prod's traffic."""
    for name, board in artifacts.dashboards().items():
        variables = [v["name"] for v in board["templating"]["list"]]
        assert variables[:2] == ["datasource", "namespace"], name
        for _, title, expr in (q for q in artifacts.panel_queries() if q[0] == name):
            for metric, matchers in re.findall(r"\b(ganworks_[a-z0-9_]*[a-z0-9])(\{[^}]*\})?", expr):
                assert 'namespace=~"$namespace"' in matchers, f"{name}/{title}: {metric} is not limited to the namespace"


def test_the_serving_dashboard_compares_the_canary_with_the_stable_step():
    serving = " ".join(expr for name, _, expr in artifacts.panel_queries() if name == "serving")
    for metric in ("ganworks_generator_routed_requests_total", "ganworks_generator_routed_request_latency_seconds_bucket", "ganworks_generator_rollout_step",
                   "ganworks_generator_rollout_policy_ok"):
        assert metric in serving, metric
    assert "by (model, track)" in serving and "by (le, model, track)" in serving
