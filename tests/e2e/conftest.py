"""One run of the whole system for every end-to-end test: what `ganworks up` starts, on a real S3 server, scraped by a real Prometheus.

The trainer (Ray, 2 DDP workers) trains on digits and publishes; the generator serves under a trickle
of backend calls (a few for an unknown model, so error codes exist); the evaluator scores every
snapshot continuously. While all three run, every dashboard query and recording rule is put to
Prometheus; then the trainer is stopped and the fixture waits until every published snapshot has a
report, and hands the still-running generator and evaluator to the tests.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import grpc
import pytest

from ganworks.checkpoint import list_snapshots, read_latest
from orchestration.local import LocalSystem, SystemOptions
from orchestration.processes import ServiceProcess, ganworks_command
from tests.deploy import artifacts
from tests.deploy.prometheus import PrometheusServer
from tests.deploy.tools import tool

RUN = "live"
# Prometheus labels the targets with it, as Kubernetes service discovery labels them with theirs.
NAMESPACE = "e2e"
COMPONENTS = ("trainer", "generator", "evaluator")


@dataclasses.dataclass
class Live:
    system: LocalSystem
    panels: dict[tuple[str, str, str], list]  # (dashboard, panel, query) -> result samples
    recording: dict[str, list]  # record name -> result samples
    variables: dict[str, list]  # dashboard variable query -> label values Prometheus knows
    targets: dict[str, str]  # job -> health
    rule_health: dict[str, tuple[str, str]]  # rule name -> (health, last error)
    metrics: dict[str, str]  # component -> /metrics text while all three ran
    errors: list[str]
    published: list[int]  # complete snapshots behind LATEST once the trainer stopped


def _backend_load(address: str, stop: threading.Event) -> None:
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


def _wait(check, timeout: float, what: str, system: LocalSystem):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        system.check_alive()
        if "trainer" in system.processes and not system.trainer_running and system.processes["trainer"].exit_code() not in (0, None):
            raise AssertionError(f"the trainer failed:\n{system.processes['trainer'].log_tail(40)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {system.logs}")
        time.sleep(0.5)
    return value


def _dashboard_variables(prometheus: PrometheusServer) -> dict[str, list]:
    variables = {}
    for board in artifacts.dashboards().values():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                metric, label = re.fullmatch(r"label_values\((\w+(?:\{[^}]*\})?),\s*(\w+)\)", variable["definition"]).groups()
                found = prometheus.query(f"count by ({label}) ({artifacts.concrete(metric)})")
                variables[variable["definition"]] = [r["metric"].get(label) for r in found if r["metric"].get(label)]
    return variables


@pytest.fixture(scope="package")
def live(s3, tmp_path_factory) -> Live:
    work = tmp_path_factory.mktemp("live")
    url = s3.new_bucket_url("live")
    env = {**s3.env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GANWORKS_TRAINER_MODEL_PARAMS": "width=8", "GANWORKS_TRAINER_LOG_EVERY": "2"}
    options = SystemOptions(
        store=url, run=RUN, image_size=16, num_workers=2, steps=1_000_000, snapshot_every=300, batch_size=32, eval_samples=1000, workdir=str(work),
    )
    system = LocalSystem(options, env=env)
    prometheus = PrometheusServer(
        tool("prometheus"), work / "prometheus",
        targets={name: [f"127.0.0.1:{system.ports[name + '_metrics_port']}"] for name in COMPONENTS},
        rule_files=[artifacts.RULES], scrape_interval="1s", labels={"namespace": NAMESPACE},
    )
    # The evaluator's classifier is fitted (briefly) while Ray starts: both are independent of the run.
    fit = ServiceProcess("fit-extractor", ganworks_command("evaluator", "fit-extractor", "--dataset", "digits", "--image-size", "16", "--epochs", "2", "--store", url), work / "logs" / "fit-extractor.log", env=env)
    stop_load = threading.Event()
    load = threading.Thread(target=_backend_load, args=(system.generator_address, stop_load), daemon=True)
    try:
        prometheus.start()
        system.logs.mkdir(parents=True, exist_ok=True)
        system.start_trainer()
        fit.start()
        _wait(lambda: system.latest_snapshot() is not None, 240, "the first snapshot", system)
        system.start_generator()
        load.start()
        assert fit.process.wait(240) == 0, f"fit-extractor failed:\n{fit.log_tail()}"
        system.start_evaluator()

        _wait(lambda: prometheus.query(f'ganworks_trainer_last_snapshot_step{{run="{RUN}"}} > 0'), 90, "a snapshot in Prometheus", system)
        _wait(lambda: prometheus.query('sum(rate(ganworks_generator_requests_total{code="OK"}[30s])) > 0'), 60, "served requests in Prometheus", system)
        _wait(lambda: prometheus.query(f'ganworks_evaluator_evaluated_step{{run="{RUN}"}}'), 240, "an evaluation in Prometheus", system)
        metrics = {name: scrape_text(system.metrics_url(name)) for name in COMPONENTS}
        panels = {(board, title, expr): prometheus.query(artifacts.concrete(expr, rate_interval="30s")) for board, title, expr in artifacts.panel_queries()}
        recording = {rule["record"]: prometheus.query(rule["expr"]) for rule in artifacts.recording_rules()}
        variables = _dashboard_variables(prometheus)
        targets = {t["labels"]["job"]: t["health"] for t in prometheus.active_targets()}
        rule_health = prometheus.rule_health()
        errors = [f"{name} exited with {p.exit_code()}:\n{p.log_tail()}" for name, p in system.processes.items() if not p.running]

        system.processes["trainer"].stop(60)
        store = system.store()
        latest = read_latest(store, RUN)
        published = [step for step in list_snapshots(store, RUN) if step <= latest]
        for step in published:
            system.wait_for_evaluation(step, 300)
        yield Live(system, panels, recording, variables, targets, rule_health, metrics, errors, published)
    finally:
        stop_load.set()
        if load.is_alive():
            load.join(10)
        system.stop()
        fit.stop()
        prometheus.stop()


def scrape_text(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""

