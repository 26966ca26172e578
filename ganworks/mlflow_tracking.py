"""Optional MLflow tracking: with GANWORKS_MLFLOW_TRACKING_URI set, the trainer and the evaluator log to one MLflow run per ganworks run.

The trainer (rank 0) logs run.json as parameters, its training curves per step and each snapshot's grid as an
artifact; the evaluator adds its metrics at the snapshot's step. The MLflow run is found by its tag
`ganworks.run` (and created by whichever part comes first), in the experiment GANWORKS_MLFLOW_EXPERIMENT
(default "ganworks"). MLflow is an optional install (`pip install 'ganworks[mlflow]'`), imported only when the
variable is set. Tracking is best effort: calls run on a background thread, a failure is logged (the URI without
credentials) and dropped, and training and evaluation never wait on it or fail because of it. Credentials belong
in MLflow's own variables (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN), not in the URI.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pathlib
import queue
import re
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable

from ganworks.errors import ConfigError
from ganworks.telemetry import register_secrets

ENV_URI = "GANWORKS_MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "GANWORKS_MLFLOW_EXPERIMENT"
RUN_TAG = "ganworks.run"
_PARAMS_PER_BATCH = 100  # MLflow's limit for one log-batch call
_MAX_PARAM_LENGTH = 6000

log = logging.getLogger(__name__)


# MLflow's and ganworks' tracking settings that carry no secret: passed on to the Ray workers with the URI.
PASSED_SETTINGS = (ENV_EXPERIMENT, "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                   "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH")


def worker_config() -> dict[str, Any] | None:
    """What the trainer's workers need to log (no credentials: they read MLFLOW_TRACKING_USERNAME/... from their own
    environment); None when tracking is off."""
    uri = tracking_uri()
    if not uri:
        return None
    if public_uri(uri) != uri:
        log.warning("%s carries credentials; they are not passed to the workers — set MLFLOW_TRACKING_USERNAME/_PASSWORD there instead", ENV_URI)
    return {"uri": public_uri(uri), "env": {name: os.environ[name] for name in PASSED_SETTINGS if name in os.environ}}


def tracking_uri() -> str:
    return os.environ.get(ENV_URI, "").strip()


_MISSING = f"{ENV_URI} is set but MLflow is not installed: pip install 'ganworks[mlflow]' (the mlflow-skinny client), or unset {ENV_URI}"


def check_installed() -> None:
    """At a command's start: tracking asked for without MLflow installed is a setup error, said before anything runs.
    Looks the package up without importing it (the import takes seconds)."""
    if tracking_uri() and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(_MISSING)


def public_uri(uri: str) -> str:
    """The URI without a user or password, for logs and for configs that others can read."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def scrub(text: str) -> str:
    """Text (an error message) with the user and password taken out of every URL in it."""
    return _USERINFO.sub(r"\g<scheme>", text)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested JSON as MLflow parameters: dotted keys, text values (lists and empty maps as JSON)."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {prefix.rstrip("."): text[:_MAX_PARAM_LENGTH]}


class MlflowRun:
    """One ganworks run's MLflow run. Every method queues the call and returns at once; `close` waits (bounded)."""

    def __init__(self, uri: str, run: str, experiment: str | None = None, max_queue: int = 1000):
        self.uri, self.run = uri, run
        password = urllib.parse.urlsplit(uri).password
        register_secrets([password or ""])  # masked in every log line, should a library print the URI
        self.experiment = experiment or os.environ.get(ENV_EXPERIMENT, "").strip() or "ganworks"
        self._client = None
        self._run_id: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._work, name="mlflow-tracking", daemon=True)
        self._thread.start()

    @classmethod
    def from_uri(cls, uri: str | None, run: str) -> "MlflowRun | None":
        """None when no URI is given or MLflow is not installed (said once, naming the extra)."""
        if not uri:
            return None
        if importlib.util.find_spec("mlflow") is None:  # looked up, not imported: the sender thread imports it
            # A worker whose environment lacks what the driver checked: the run goes on, untracked.
            log.error("%s; going on without MLflow", _MISSING)
            return None
        return cls(uri, run)

    @classmethod
    def from_worker_config(cls, config: dict[str, Any] | None, run: str) -> "MlflowRun | None":
        if not config:
            return None
        for name, value in config.get("env", {}).items():
            os.environ.setdefault(name, value)
        return cls.from_uri(config["uri"], run)

    @classmethod
    def from_env(cls, run: str) -> "MlflowRun | None":
        return cls.from_uri(tracking_uri(), run)

    # ---- what callers log ------------------------------------------------------------------------------------

    def log_params(self, params: dict[str, Any]) -> None:
        self._submit(self._log_params, flatten(params))

    def log_metrics(self, values: dict[str, float], step: int, timestamp: float | None = None) -> None:
        finite = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._submit(self._log_metrics, finite, int(step), int((timestamp or time.time()) * 1000))

    def log_png(self, png: bytes, name: str, folder: str = "grids") -> None:
        self._submit(self._log_png, png, name, folder)

    def close(self, timeout: float = 30.0) -> bool:
        """Sends what is queued (for at most timeout seconds); False if some of it was not sent by then."""
        done = threading.Event()
        self._submit(done.set)
        finished = done.wait(timeout)
        try:
            self._queue.put(None, timeout=1)  # the thread ends once the queue is sent; a daemon, if it is stuck
        except queue.Full:
            pass
        return finished

    # ---- the background thread ------------------------------------------------------------------------------------

    def _submit(self, fn: Callable, *args: Any) -> None:
        try:
            self._queue.put_nowait((fn, args))
        except queue.Full:
            self._warn("the MLflow queue is full (the tracking server is slower than the run); a record was dropped")

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - tracking must never stop the run
                self._warn(f"MLflow tracking at {public_uri(self.uri)} failed: {type(exc).__name__}: {scrub(str(exc))[:300]}")

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._last_warning > 60:
            self._last_warning = time.monotonic()
            log.warning("%s", message)

    def _run_of(self) -> tuple[Any, str]:
        if self._run_id is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            experiment = client.get_experiment_by_name(self.experiment)
            experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(self.experiment)
            found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{self.run}'", max_results=1)
            run = found[0] if found else client.create_run(experiment_id, run_name=self.run, tags={RUN_TAG: self.run})
            self._client, self._run_id = client, run.info.run_id
        return self._client, self._run_id

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        client, run_id = self._run_of()
        existing = client.get_run(run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in existing]  # a resumed run logs the same run.json again
        for start in range(0, len(new), _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=new[start : start + _PARAMS_PER_BATCH])

    def _log_metrics(self, values: dict[str, float], step: int, timestamp_ms: int) -> None:
        from mlflow.entities import Metric

        client, run_id = self._run_of()
        client.log_batch(run_id, metrics=[Metric(key, value, timestamp_ms, step) for key, value in values.items()])

    def _log_png(self, png: bytes, name: str, folder: str) -> None:
        client, run_id = self._run_of()
        with tempfile.TemporaryDirectory(prefix="ganworks-mlflow-") as tmp:
            path = pathlib.Path(tmp) / name
            path.write_bytes(png)
            client.log_artifact(run_id, str(path), artifact_path=folder)
