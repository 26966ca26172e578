"""Fixtures for the evaluator tests: a store with published digits snapshots, a real generator service in a
subprocess (started from its own CLI), and evaluator servers on loopback with their own metrics registries."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
import torch

from evaluator_service.features import classifier
from evaluator_service.server import EvaluatorServer
from evaluator_service.settings import EvaluatorSettings
from ganworks.api import evaluator_pb2 as pb
from ganworks.api import evaluator_pb2_grpc
from ganworks.data import load_dataset
from ganworks.store import open_store
from ganworks.testing.digits_run import GENERATOR_PARAMS, publish, write_run_json  # noqa: F401 (the evaluator tests import them from here)
from orchestration.processes import terminate

RUN = "digits-eval"
WATCHED = "digits-watched"


@pytest.fixture(scope="session")
def fitted_classifier():
    """A digits classifier with its initial weights: most tests need one in the store, not an accurate one
    (fitting is tested once, in test_cli.py)."""
    train = load_dataset("digits", image_size=32, channels=1, split="train")
    torch.manual_seed(0)
    net = classifier.DomainClassifier(1, 10, 32).eval().requires_grad_(False)
    manifest = {"format_version": classifier.FORMAT_VERSION, "extractor": "digits-classifier", "dataset_id": train.id, "dataset_spec": "digits",
                "image_size": 32, "channels": 1, "num_classes": 10, "feature_dim": classifier.FEATURE_DIM, "epochs": 0, "test_accuracy": 0.1}
    return net, manifest


@pytest.fixture(scope="session")
def store_url(tmp_path_factory, fitted_classifier):
    """A store with RUN (snapshots 1 and 2), WATCHED (run.json only) and a fitted digits classifier."""
    url = f"file://{tmp_path_factory.mktemp('evaluator') / 'store'}"
    store = open_store(url)
    for run in (RUN, WATCHED):
        write_run_json(store, run)
    publish(store, RUN, 1)
    publish(store, RUN, 2)
    classifier.save(store, *fitted_classifier)
    return url


@pytest.fixture
def shared_store(store_url):
    return open_store(store_url)


class GeneratorProcess:
    """`ganworks generator serve` in a subprocess, as a deployment runs it; its log goes to a file (a pipe nobody reads could fill up)."""

    def __init__(self, store_url: str, runs: list[str], log_path, env: dict[str, str] | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        cmd = [sys.executable, "-m", "ganworks.cli", "--log-level", "WARNING", "generator", "serve", "--runs", ",".join(runs), "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "-1", "--store", store_url, "--poll-seconds", "0.5", "--torch-threads", "1", "--grace-seconds", "1"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        line = self.process.stdout.readline()
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the generator did not start: {line!r} {open(log_path).read()[-2000:]}")
        self.address = f"127.0.0.1:{match.group(1)}"

    def stop(self) -> None:
        terminate(self.process, 15)
        self._log.close()


@pytest.fixture(scope="session")
def generator(store_url, tmp_path_factory):
    proc = GeneratorProcess(store_url, [RUN, WATCHED], tmp_path_factory.mktemp("generator") / "generator.log")
    yield proc
    proc.stop()


class RunningEvaluator:
    """An EvaluatorServer on its own event loop in a thread, so tests can use blocking gRPC stubs."""

    def __init__(self, store, **settings):
        values = {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "default_num_samples": 1000, "generator_retry_seconds": 5.0, "torch_threads": 0, **settings}
        self.settings = EvaluatorSettings(**values)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = EvaluatorServer(self.settings, store)
        self.call(self.server.start())
        self.address = f"127.0.0.1:{self.server.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = evaluator_pb2_grpc.EvaluatorStub(self.channel)
        self._stopped = False

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def evaluate(self, timeout: float = 180, **request) -> pb.Evaluation:
        """Evaluate, then follow WatchEvaluation to the end; returns the final state."""
        started = self.stub.Evaluate(pb.EvaluateRequest(**request), timeout=60)
        final = started
        for final in self.stub.WatchEvaluation(pb.GetEvaluationRequest(id=started.id), timeout=timeout):
            pass
        return final

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str, **labels) -> float | None:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics_text().splitlines():
            key, _, value = line.rpartition(" ")
            if key == (f"{name}{{{wanted}}}" if labels else name):
                return float(value)
        return None

    def wait_for(self, predicate, timeout: float = 120, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.channel.close()
        self.call(self.server.stop(grace=1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def start_evaluator(shared_store):
    started: list[RunningEvaluator] = []

    def start(**settings) -> RunningEvaluator:
        evaluator = RunningEvaluator(shared_store, **settings)
        started.append(evaluator)
        return evaluator

    yield start
    for evaluator in started:
        evaluator.stop()


@pytest.fixture
def evaluator(start_evaluator, generator):
    return start_evaluator(generator=generator.address)
