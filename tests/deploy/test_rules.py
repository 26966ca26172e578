"""Prometheus rules: promtool accepts and unit-tests them, every alert is tested both ways and has a runbook."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.deploy import artifacts
from tests.deploy.tools import DEPLOY, ROOT, run_tool

README = DEPLOY / "README.md"


def _github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_accepts_the_rules():
    result = run_tool("promtool", "check", "rules", str(artifacts.RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(artifacts.rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    assert artifacts.RULE_TESTS, "no promtool tests in deploy/monitoring/tests"
    result = run_tool("promtool", "test", "rules", *map(str, artifacts.RULE_TESTS), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent():
    firing, silent = set(), set()
    for path in artifacts.RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in artifacts.alerts()}
    assert names - firing == set(), f"alerts never shown firing on a bad series: {sorted(names - firing)}"
    assert names - silent == set(), f"alerts never shown silent on a good series: {sorted(names - silent)}"


def test_the_issue_alerts_exist():
    watched = " ".join(alert["expr"] for alert in artifacts.alerts())
    for metric in ("ganworks_evaluator_fid", "ganworks_evaluator_evaluations_total", "ganworks:generator_errors:ratio_rate5m",
                   "ganworks:generator_request_latency_seconds:p99_5m", "ganworks:generator_queue:utilization",
                   "ganworks:generator_resource_exhausted:ratio_rate5m", "ganworks_trainer_last_snapshot_timestamp_seconds",
                   "ganworks_trainer_steps_total", "ganworks_generator_model_loads_total"):
        assert metric in watched, f"no alert watches {metric}"


def test_every_alert_explains_itself_and_links_a_runbook_section():
    headings = {_github_anchor(line.lstrip("#")) for line in README.read_text().splitlines() if line.startswith("#")}
    for alert in artifacts.alerts():
        annotations = alert.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), alert["alert"]
        assert alert.get("labels", {}).get("severity") in ("warning", "critical"), alert["alert"]
        anchor = annotations.get("runbook_url", "").rpartition("#")[2]
        assert anchor == alert["alert"].lower(), f"{alert['alert']}: runbook_url should end in #{alert['alert'].lower()}"
        assert anchor in headings, f"deploy/README.md has no runbook section for {alert['alert']}"


def test_kubernetes_prometheusrule_is_rendered_from_the_rules_file():
    result = subprocess.run([sys.executable, "deploy/monitoring/prometheusrule.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
