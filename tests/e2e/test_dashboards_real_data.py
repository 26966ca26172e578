"""Dashboards and rules against real data: every query and rule in deploy/ put to a real Prometheus that
scraped the real trainer, generator and evaluator (the `live` run of tests/e2e/conftest.py)."""

from __future__ import annotations

import re

import pytest

from evaluator_service.metrics import METRICS
from tests.deploy import artifacts
from tests.deploy.tools import run_tool
from tests.e2e.conftest import COMPONENTS, NAMESPACE, RUN

pytestmark = pytest.mark.slow


def _exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _exported_labels(text: str) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels.setdefault(name.split(" ")[0], set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', rest.rpartition("}")[0]))
    return labels


# The live run trains images; the gauges of table runs (ctgan) and translation runs (cyclegan) are exported only for
# those, so their panels and label matchers cannot have data here. tests/evaluator/test_tabular.py and
# test_translation.py prove each is exported with its run and extractor labels by a real evaluator that evaluated
# such a run.
OTHER_RUN_GAUGES = {f"ganworks_evaluator_{gauge}" for metric in METRICS.values() if metric.kind != "image" for gauge in metric.gauges.values()}


def _only_other_run_gauges(expr: str) -> bool:
    names = set(re.findall(r"ganworks_[a-z0-9_]+", expr))
    return bool(names) and names <= OTHER_RUN_GAUGES


def test_prometheus_scraped_all_three_components_while_they_ran(live):
    assert not live.errors, "\n".join(live.errors)
    assert live.targets == {name: "up" for name in COMPONENTS}


def test_every_dashboard_panel_returns_data(live):
    empty = [f"{board} / {title}: {expr}" for (board, title, expr), result in live.panels.items() if not result and not _only_other_run_gauges(expr)]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_dashboard_variable_offers_the_running_run(live):
    assert live.variables, "no query variables found in the dashboards"
    for definition, values in live.variables.items():
        wanted = NAMESPACE if definition.endswith(", namespace)") else RUN
        assert wanted in values, f"{definition} offers {values}"


def test_every_recording_rule_returns_data(live):
    empty = [name for name, result in live.recording.items() if not result]
    assert not empty, f"recording rules without data: {empty}"


def test_prometheus_evaluates_every_rule_without_error_on_real_series(live):
    names = {rule.get("record") or rule["alert"] for rule in artifacts.rules()}
    assert names <= set(live.rule_health), f"rules Prometheus did not load: {names - set(live.rule_health)}"
    failing = {name: error for name, (health, error) in live.rule_health.items() if health == "err"}
    assert not failing, f"rules that fail on real series: {failing}"


def test_every_metric_name_used_in_deploy_is_exported_by_the_services(live):
    exported = set().union(*(_exported_names(text) for text in live.metrics.values()))
    missing = {name: sorted(files) for name, files in artifacts.metric_names_used().items() if name not in exported}
    assert not missing, f"metric names in deploy/ that no service exports: {missing}"


def test_every_label_deploy_matches_on_is_exported_with_its_metric(live):
    exported: dict[str, set[str]] = {}
    for text in live.metrics.values():
        for name, labels in _exported_labels(text).items():
            exported.setdefault(name, set()).update(labels)
    # Added by Prometheus at scrape time, not by the services: job and instance, and namespace from Kubernetes' service
    # discovery (here, the test's scrape config).
    target_labels = {"job", "instance", "namespace"}
    missing = {name: sorted(labels - target_labels - exported.get(name, set()))
               for name, labels in artifacts.label_matchers_used().items() if name not in OTHER_RUN_GAUGES and labels - target_labels - exported.get(name, set())}
    assert not missing, f"labels deploy/ selects on that the services do not export: {missing}"


@pytest.mark.parametrize("component", ["trainer", "generator", "evaluator"])
def test_service_metrics_pass_promtool_check_metrics(live, component):
    text = live.metrics[component]
    assert "ganworks_" in text, f"{component} exported no ganworks metrics"
    result = run_tool("promtool", "check", "metrics", stdin=text)
    assert result.returncode == 0, f"promtool check metrics on the {component}'s /metrics:\n{result.stdout}{result.stderr}"
