"""Shared set-up of the fault tests: tiny published snapshots and service processes on loopback."""

from __future__ import annotations

import pathlib

import torch

from ganworks.checkpoint import publish_snapshot
from ganworks.models import build_generator
from orchestration.processes import ServiceProcess, free_port, ganworks_command, wait_for_grpc_health

TINY = {"image_size": 16, "channels": 1, "latent_dim": 8, "num_classes": 10, "width": 8}
GENERATOR_SERVICE = "ganworks.v1.Generator"


def publish_tiny(store, run: str, step: int, **kwargs):
    torch.manual_seed(step)
    generator = build_generator("dcgan", **TINY)
    return publish_snapshot(store, run=run, step=step, generator_state=generator.state_dict(), architecture="dcgan", architecture_params=TINY, images_seen=step * 64, **kwargs)


def write_run_json(store, run: str, image_size: int = 16) -> None:
    """What the trainer records at the start of a run, for services that read the run's dataset."""
    from ganworks.data import load_dataset

    data = load_dataset("digits", image_size, split="train")
    store.put_json(f"runs/{run}/run.json", {
        "run": run, "code_version": "test", "options": {}, "architecture": "dcgan", "architecture_params": TINY,
        "dataset": {"spec": "digits", "id": data.id, "image_size": image_size, "channels": 1, "num_classes": 10, "split": "train"},
    })


class Service:
    """A `ganworks … serve` command as its own process, restartable on the same ports."""

    kind = ""
    ready_service = ""

    def __init__(self, store_url: str, runs: str, logs: pathlib.Path, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()):
        self.store_url, self.runs, self.logs, self.env, self.extra = store_url, runs, logs, env or {}, extra
        self.port, self.metrics_port = free_port(), free_port()
        self.process: ServiceProcess | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait: float = 90.0) -> "Service":
        self.starts += 1
        argv = ganworks_command(self.kind, "serve", "--runs", self.runs, "--port", str(self.port), "--metrics-port", str(self.metrics_port), "--store", self.store_url, *self.extra)
        self.process = ServiceProcess(f"{self.kind}-{self.starts}", argv, self.logs / f"{self.kind}-{self.starts}.log", env=self.env).start()
        wait_for_grpc_health(self.address, wait, self.process, service=self.ready_service)
        return self

    def kill(self) -> None:
        import signal

        self.process.signal(signal.SIGKILL)
        self.process.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(10)

    def log(self, start: int | None = None) -> str:
        """The log of one start (1-based), or of all of them."""
        paths = [self.logs / f"{self.kind}-{start}.log"] if start else sorted(self.logs.glob(f"{self.kind}-*.log"))
        return "\n".join(p.read_text(errors="replace") for p in paths)


class Generator(Service):
    kind = "generator"
    ready_service = GENERATOR_SERVICE

    def __init__(self, *args, extra: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, extra=("--poll-seconds", "0.5", *extra), **kwargs)


class Evaluator(Service):
    """Continuous evaluator of `runs`, sampling from `generator`."""

    kind = "evaluator"

    def __init__(self, store_url: str, runs: str, logs: pathlib.Path, generator: str, continuous: bool = True, extra: tuple[str, ...] = (), **kwargs):
        mode = ("--continuous", "--poll-seconds", "0.5") if continuous else ()
        super().__init__(store_url, runs, logs, extra=("--generator", generator, *mode, *extra), **kwargs)


def fit_classifier(store_url: str, image_size: int = 16, env: dict[str, str] | None = None) -> None:
    """A quickly fitted digits classifier for the evaluator (one epoch: enough to produce numbers)."""
    import os
    import subprocess

    subprocess.run(ganworks_command("evaluator", "fit-extractor", "--dataset", "digits", "--image-size", str(image_size), "--epochs", "1", "--store", store_url), env={**os.environ, **(env or {})}, check=True, capture_output=True, timeout=300)
