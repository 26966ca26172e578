"""Dashboards and rules against real data: a real Prometheus scrapes the real trainer, generator and evaluator.

One short run on loopback (digits, 1 Ray worker, a snapshot every few steps; the generator serving it
under a little load; the evaluator evaluating it continuously with the digits-classifier extractor).
While everything runs, every dashboard query and every recording rule goes through Prometheus's HTTP
API, and each service's /metrics is kept for the name comparison and `promtool check metrics`.
"""

from __future__ import annotations

import dataclasses
import re
import threading

import grpc
import pytest

from tests.deploy import artifacts
from tests.deploy.prometheus import PrometheusServer, free_port
from tests.deploy.services import ServiceProcess, fetch_metrics, subprocess_env, wait_for
from tests.deploy.tools import run_tool, tool

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RUN = "dash"
COMPONENTS = ("trainer", "generator", "evaluator")


@dataclasses.dataclass
class LiveResults:
    panels: dict[tuple[str, str, str], list]  # (dashboard, panel, query) -> result samples
    recording: dict[str, list]  # record name -> result samples
    variables: dict[str, list]  # dashboard variable query -> label values Prometheus knows
    targets: dict[str, str]  # job -> health
    rule_health: dict[str, tuple[str, str]]  # rule name -> (health, last error) as Prometheus evaluated it
    metrics: dict[str, str]  # component -> /metrics text
    errors: list[str]


def _generate_load(address: str, stop: threading.Event) -> None:
    """A trickle of Generate calls, plus one for an unknown model, so status codes other than OK exist."""
    from ganworks.api import generator_pb2 as pb
    from ganworks.api import generator_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GeneratorStub(channel)
        seed = 0
        while not stop.is_set():
            seed += 1
            model = RUN if seed % 20 else "no-such-run"
            try:
                stub.Generate(pb.GenerateRequest(model=model, num_samples=1 + seed % 8, seed=seed, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=30)
            except grpc.RpcError:
                pass
            stop.wait(0.05)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveResults:
    work = tmp_path_factory.mktemp("live")
    store = f"file://{work / 'store'}"
    ports = {name: free_port() for name in ("trainer_metrics", "generator", "generator_metrics", "evaluator", "evaluator_metrics")}
    env = subprocess_env(GANWORKS_STORE=store)
    prometheus = PrometheusServer(
        tool("prometheus"), work / "prometheus",
        targets={"trainer": [f"127.0.0.1:{ports['trainer_metrics']}"], "generator": [f"127.0.0.1:{ports['generator_metrics']}"], "evaluator": [f"127.0.0.1:{ports['evaluator_metrics']}"]},
        rule_files=[artifacts.RULES], scrape_interval="1s",
    )
    processes: list[ServiceProcess] = []
    stop_load = threading.Event()
    load = None
    try:
        prometheus.start()
        trainer = ServiceProcess("trainer", [
            "train", "--run", RUN, "--dataset", "digits", "--image-size", "32", "--conditional", "--width", "8",
            "--num-workers", "1", "--steps", "100000", "--snapshot-every", "50", "--log-every", "2", "--batch-size", "16",
            "--ray-address", "local", "--metrics-port", str(ports["trainer_metrics"]), "--no-progress",
        ], env, work)
        processes.append(trainer)
        # The extractor is fitted while Ray starts: both are independent of the run.
        fit = ServiceProcess("fit-extractor", ["evaluator", "fit-extractor", "--dataset", "digits", "--image-size", "32", "--epochs", "2"], env, work)
        processes.append(fit)
        latest = work / "store" / "runs" / RUN / "LATEST"
        wait_for(latest.exists, 150, "the trainer's first snapshot", [trainer])

        generator = ServiceProcess("generator", [
            "generator", "serve", "--runs", RUN, "--host", "127.0.0.1", "--port", str(ports["generator"]),
            "--metrics-port", str(ports["generator_metrics"]), "--max-queue-delay-ms", "5",
        ], env, work)
        processes.append(generator)
        wait_for(lambda: fetch_metrics(ports["generator_metrics"]), 60, "the generator's /metrics", [generator])
        load = threading.Thread(target=_generate_load, args=(f"127.0.0.1:{ports['generator']}", stop_load), daemon=True)
        load.start()

        assert fit.wait(120) == 0, f"fit-extractor failed:\n{fit.log_tail()}"
        evaluator = ServiceProcess("evaluator", [
            "evaluator", "serve", "--host", "127.0.0.1", "--port", str(ports["evaluator"]), "--metrics-port", str(ports["evaluator_metrics"]),
            "--generator", f"127.0.0.1:{ports['generator']}", "--runs", RUN, "--continuous",
            "--num-samples", "1000", "--poll-seconds", "2", "--torch-threads", "1",
        ], env, work)
        processes.append(evaluator)

        # Everything has reported at least once: a snapshot, a served request, an evaluation.
        running = [trainer, generator, evaluator]
        wait_for(lambda: prometheus.query(f'ganworks_trainer_last_snapshot_step{{run="{RUN}"}} > 0'), 90, "a trainer snapshot in Prometheus", running)
        wait_for(lambda: prometheus.query('sum(rate(ganworks_generator_requests_total{code="OK"}[30s])) > 0'), 60, "served requests in Prometheus", running)
        wait_for(lambda: prometheus.query(f'ganworks_evaluator_evaluated_step{{run="{RUN}"}}'), 150, "an evaluation in Prometheus", running)

        metrics = {name: fetch_metrics(ports[f"{name}_metrics"]) or "" for name in COMPONENTS}
        panels = {(board, title, expr): prometheus.query(artifacts.concrete(expr, rate_interval="30s")) for board, title, expr in artifacts.panel_queries()}
        recording = {rule["record"]: prometheus.query(rule["expr"]) for rule in artifacts.recording_rules()}
        variables = {}
        for board in artifacts.dashboards().values():
            for variable in board["templating"]["list"]:
                if variable["type"] == "query":
                    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
                    variables[variable["definition"]] = [r["metric"].get(label) for r in prometheus.query(f"count by ({label}) ({metric})") if r["metric"].get(label)]
        targets = {t["labels"]["job"]: t["health"] for t in prometheus.active_targets()}
        rule_health = prometheus.rule_health()
        errors = [f"{p.name} exited with {p.process.returncode}:\n{p.log_tail()}" for p in running if not p.running()]
        return LiveResults(panels, recording, variables, targets, rule_health, metrics, errors)
    finally:
        stop_load.set()
        if load is not None:
            load.join(10)
        for process in reversed(processes):
            process.stop()
        prometheus.stop()


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


def test_prometheus_scraped_all_three_components_while_they_ran(live):
    assert not live.errors, "\n".join(live.errors)
    assert live.targets == {name: "up" for name in COMPONENTS}


def test_every_dashboard_panel_returns_data(live):
    empty = [f"{board} / {title}: {expr}" for (board, title, expr), result in live.panels.items() if not result]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_dashboard_variable_offers_the_running_run(live):
    assert live.variables, "no query variables found in the dashboards"
    for definition, values in live.variables.items():
        assert RUN in values, f"{definition} offers {values}"


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
    target_labels = {"job", "instance"}  # added by Prometheus at scrape time, not by the services
    missing = {name: sorted(labels - target_labels - exported.get(name, set()))
               for name, labels in artifacts.label_matchers_used().items() if labels - target_labels - exported.get(name, set())}
    assert not missing, f"labels deploy/ selects on that the services do not export: {missing}"


@pytest.mark.parametrize("component", [
    pytest.param("trainer", marks=pytest.mark.xfail(strict=True, reason=(
        "contract name ganworks_trainer_d_output: promtool reads `d` as an abbreviated unit (days); "
        "reported to the lead (rename e.g. to ganworks_trainer_discriminator_output, then drop this mark)"))),
    "generator",
    "evaluator",
])
def test_service_metrics_pass_promtool_check_metrics(live, component):
    text = live.metrics[component]
    assert "ganworks_" in text, f"{component} exported no ganworks metrics"
    result = run_tool("promtool", "check", "metrics", stdin=text)
    assert result.returncode == 0, f"promtool check metrics on the {component}'s /metrics:\n{result.stdout}{result.stderr}"
