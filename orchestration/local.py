"""The whole system as separate processes on loopback: Ray trainer, generator service, evaluator service, one store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import time
from typing import Any

from ganworks.commandline import CommandError
from orchestration.processes import ServiceProcess, free_port, ganworks_command, wait_for_grpc_health, wait_for_http
from orchestration.status import RateMeter, scrape, total

log = logging.getLogger(__name__)
# A local trial is for the person at this machine: every service listens on loopback only.
LOOPBACK = "127.0.0.1"


@dataclasses.dataclass
class SystemOptions:
    store: str = "./ganworks-store"
    run: str = "digits-demo"
    dataset: str = "digits"
    model: str = "dcgan"  # the model family; "ctgan" trains on a table (dataset credit-default, ...)
    image_size: int = 32
    conditional: bool = True
    num_workers: int = 2
    steps: int = 100_000
    snapshot_every: int = 200
    batch_size: int = 64
    eval_samples: int = 2000
    workdir: str = "./ganworks-demo"


@dataclasses.dataclass
class Status:
    step: float | None = None
    images_per_second: float | None = None
    latest_snapshot: int | None = None
    latest_fid: float | None = None
    evaluated_step: float | None = None
    generator_qps: float = 0.0
    trainer_running: bool = False


class LocalSystem:
    """Starts, watches and stops the processes; the same code serves `up`, `demo` and the end-to-end tests.

    Each service is configured the way a deployment configures it, by its GANWORKS_* environment variables
    (docs/*.md list them); `env` adds to every child's environment (store credentials, more settings).
    """

    def __init__(self, options: SystemOptions, env: dict[str, str] | None = None):
        self.options = options
        self.env = dict(env or {})
        self.workdir = pathlib.Path(options.workdir).resolve()
        self.logs = self.workdir / "logs"
        self.ports = {name: free_port() for name in ("generator_port", "evaluator_port", "trainer_metrics_port", "generator_metrics_port", "evaluator_metrics_port")}
        self.processes: dict[str, ServiceProcess] = {}
        self._qps = RateMeter()

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def generator_address(self) -> str:
        return f"127.0.0.1:{self.ports['generator_port']}"

    @property
    def evaluator_address(self) -> str:
        return f"127.0.0.1:{self.ports['evaluator_port']}"

    def metrics_url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.ports[component + '_metrics_port']}/metrics"

    def addresses(self) -> dict[str, str]:
        return {
            "store": self.options.store,
            "generator gRPC": self.generator_address,
            "evaluator gRPC": self.evaluator_address,
            "trainer /metrics": self.metrics_url("trainer"),
            "generator /metrics": self.metrics_url("generator"),
            "evaluator /metrics": self.metrics_url("evaluator"),
            "logs": str(self.logs),
        }

    # -- life cycle ---------------------------------------------------------------------------------------

    def _spawn(self, name: str, command: tuple[str, ...], settings: dict[str, object]) -> ServiceProcess:
        """Starts `ganworks <command>` configured only by its documented GANWORKS_* environment variables."""
        env = {"GANWORKS_STORE": self.options.store, **self.env, **{key: _env_value(value) for key, value in settings.items()}}
        process = ServiceProcess(name, ganworks_command(*command), self.logs / f"{name}.log", env=env)
        self.processes[name] = process.start()
        return process

    def start_trainer(self) -> ServiceProcess:
        o = self.options
        return self._spawn("trainer", ("train",), {
            "GANWORKS_TRAINER_RUN": o.run, "GANWORKS_TRAINER_DATASET": o.dataset, "GANWORKS_TRAINER_MODEL": o.model, "GANWORKS_TRAINER_IMAGE_SIZE": o.image_size,
            "GANWORKS_TRAINER_CONDITIONAL": o.conditional, "GANWORKS_TRAINER_NUM_WORKERS": o.num_workers, "GANWORKS_TRAINER_STEPS": o.steps,
            "GANWORKS_TRAINER_SNAPSHOT_EVERY": o.snapshot_every, "GANWORKS_TRAINER_BATCH_SIZE": o.batch_size,
            "GANWORKS_TRAINER_METRICS_PORT": self.ports["trainer_metrics_port"], "GANWORKS_TRAINER_METRICS_HOST": LOOPBACK, "GANWORKS_TRAINER_RAY_ADDRESS": "local",
        })

    def start_generator(self) -> ServiceProcess:
        process = self._spawn("generator", ("generator", "serve"), {
            "GANWORKS_GENERATOR_RUNS": self.options.run, "GANWORKS_GENERATOR_HOST": LOOPBACK, "GANWORKS_GENERATOR_PORT": self.ports["generator_port"],
            "GANWORKS_GENERATOR_METRICS_PORT": self.ports["generator_metrics_port"],
        })
        wait_for_http(self.metrics_url("generator"), 60, process)
        return process

    def start_evaluator(self) -> ServiceProcess:
        process = self._spawn("evaluator", ("evaluator", "serve"), {
            "GANWORKS_EVALUATOR_HOST": LOOPBACK, "GANWORKS_EVALUATOR_PORT": self.ports["evaluator_port"], "GANWORKS_EVALUATOR_METRICS_PORT": self.ports["evaluator_metrics_port"],
            "GANWORKS_EVALUATOR_GENERATOR": self.generator_address, "GANWORKS_EVALUATOR_RUNS": self.options.run, "GANWORKS_EVALUATOR_CONTINUOUS": True,
            "GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES": self.options.eval_samples, "GANWORKS_EVALUATOR_POLL_SECONDS": 2,
        })
        wait_for_grpc_health(self.evaluator_address, 60, process)
        return process

    def start(self) -> None:
        """Trainer first (Ray takes longest to come up); the evaluator fits its digits classifier on first use."""
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.start_trainer()
            self.start_generator()
            self.start_evaluator()
        except BaseException:
            self.stop()
            refused = self.refused_settings()
            if refused:
                raise CommandError(refused) from None
            raise

    def refused_settings(self) -> str:
        """A service that exited with status 2 refused its settings: its message, with the variables this system set
        from the user's flags named by those flags (e.g. --eval-samples, not GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES)."""
        for name, process in self.processes.items():
            if process.running or process.exit_code() != 2:
                continue
            errors = [line for line in process.log_tail(40).splitlines() if line.startswith("error:")]
            if not errors:
                continue
            message = errors[-1].removeprefix("error:").strip()
            for variable, flag in USER_FLAGS.items():
                # The service names its own flag and the variable: "--num-samples 200 (GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES)".
                message = re.sub(rf"--[\w-]+ (\S+) \({variable}\)", rf"{flag} \1", message)
                message = message.replace(variable, flag)
            # A service flag these commands do not have: the user sets its variable, which the services inherit.
            message = re.sub(r"--[\w-]+ \((GANWORKS_\w+)\)", r"\1", message)
            return f"the {name} refused its settings: {message}"
        return ""

    def stop(self, grace: float = 20.0) -> None:
        """Trainer first (it checkpoints), then the evaluator, then the generator it reads from."""
        for name in ("trainer", "evaluator", "generator"):
            if name in self.processes:
                self.processes[name].stop(grace)

    def check_alive(self) -> None:
        for name in ("generator", "evaluator"):
            process = self.processes.get(name)
            if process is not None and not process.running:
                raise RuntimeError(f"the {name} exited with {process.exit_code()}; its log ({process.log_path}) ends:\n{process.log_tail()}")

    @property
    def trainer_running(self) -> bool:
        return "trainer" in self.processes and self.processes["trainer"].running

    # -- observing ----------------------------------------------------------------------------------------

    def status(self) -> Status:
        trainer = scrape(self.metrics_url("trainer"))
        evaluator = scrape(self.metrics_url("evaluator"))
        generator = scrape(self.metrics_url("generator"))
        return Status(
            step=total(trainer, "ganworks_trainer_steps_total"),
            images_per_second=total(trainer, "ganworks_trainer_images_per_second"),
            latest_snapshot=self.latest_snapshot(),
            latest_fid=total(evaluator, "ganworks_evaluator_fid"),
            evaluated_step=total(evaluator, "ganworks_evaluator_evaluated_step"),
            generator_qps=self._qps.update(total(generator, "ganworks_generator_requests_total")),
            trainer_running=self.trainer_running,
        )

    def store(self):
        from ganworks.settings import StoreSettings, load_settings
        from ganworks.store import open_store

        return open_store(self.options.store, settings=load_settings(StoreSettings, env={**os.environ, **self.env}))

    def latest_snapshot(self) -> int | None:
        from ganworks.checkpoint import read_latest

        try:
            return read_latest(self.store(), self.options.run)
        except Exception:  # noqa: BLE001 - a status line must not die on a store hiccup
            return None

    def reports(self) -> dict[int, dict[str, Any]]:
        """Evaluation reports in the store, by step (merging the metric sets of one step)."""
        from orchestration.runs import evaluation_reports
        from ganworks.checkpoint import list_snapshots

        store = self.store()
        found = {}
        for step in list_snapshots(store, self.options.run):
            merged: dict[str, Any] = {}
            for report in evaluation_reports(store, self.options.run, step).values():
                metrics = {**merged.get("metrics", {}), **report.get("metrics", {})}
                merged = {**merged, **report, "metrics": metrics}
            if merged:
                found[step] = merged
        return found

    def wait_for_evaluation(self, step: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            report = self.reports().get(step)
            if report:
                return report
            time.sleep(1.0)
        raise TimeoutError(f"the evaluator did not report step {step} within {timeout:.0f}s; see {self.logs / 'evaluator.log'}")

    def write_json(self, name: str, value: Any) -> pathlib.Path:
        path = self.workdir / name
        path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
        return path


# The services' variables this system sets from `ganworks up`/`demo` flags: a service's complaint about one names the flag.
USER_FLAGS = {
    "GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES": "--eval-samples", "GANWORKS_TRAINER_NUM_WORKERS": "--num-workers", "GANWORKS_TRAINER_BATCH_SIZE": "--batch-size",
    "GANWORKS_TRAINER_SNAPSHOT_EVERY": "--snapshot-every", "GANWORKS_TRAINER_IMAGE_SIZE": "--image-size", "GANWORKS_TRAINER_DATASET": "--dataset",
    "GANWORKS_TRAINER_RUN": "--run", "GANWORKS_GENERATOR_RUNS": "--run", "GANWORKS_EVALUATOR_RUNS": "--run",
}


def _env_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def store_env_from_args(args: Any) -> dict[str, str]:
    """Store flags given to `up`/`demo`, as the environment their children read."""
    env = {}
    if getattr(args, "s3_endpoint", None):
        env["GANWORKS_S3_ENDPOINT"] = args.s3_endpoint
    if getattr(args, "s3_region", None):
        env["GANWORKS_S3_REGION"] = args.s3_region
    return env
