"""A real Prometheus server for tests: writes its config, starts it on a free loopback port, queries it, stops it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from orchestration.processes import free_port, terminate


class PrometheusError(RuntimeError):
    """Prometheus did not start, or answered a query with an error."""


class PrometheusServer:
    """`prometheus` scraping `targets` ({job: ["127.0.0.1:port", ...]}) every `scrape_interval`."""

    def __init__(self, binary: str, workdir: pathlib.Path, targets: dict[str, list[str]], rule_files: list[pathlib.Path] = (), scrape_interval: str = "1s",
                 labels: dict[str, str] | None = None):
        self.binary, self.workdir = binary, pathlib.Path(workdir)
        self.targets, self.rule_files, self.scrape_interval = targets, [str(p) for p in rule_files], scrape_interval
        self.labels = dict(labels or {})  # put on every target, as Kubernetes service discovery puts `namespace`
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        return {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(addresses), "labels": self.labels}]} for job, addresses in self.targets.items()],
        }

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        self.port = free_port()
        self._log = open(self.workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).close()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready on port {self.port} within {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, 10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _get(self, path: str, params: dict[str, str]) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query now; the result samples ([] when the expression has no data)."""
        data = self._get("/api/v1/query", {"query": expr})
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def rule_health(self) -> dict[str, tuple[str, str]]:
        """Each loaded rule's name -> (health, last error) as Prometheus evaluated it."""
        groups = self._get("/api/v1/rules", {})["groups"]
        return {rule["name"]: (rule["health"], rule.get("lastError", "")) for group in groups for rule in group["rules"]}

    def active_targets(self) -> list[dict]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_until(self, expr: str, timeout: float = 60.0) -> list[dict]:
        """Polls `expr` until it returns data; raises with the targets' state if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                health = {t["scrapeUrl"]: (t["health"], t.get("lastError", "")) for t in self.active_targets()}
                raise PrometheusError(f"{expr!r} returned no data within {timeout}s; targets: {health}")
            time.sleep(0.5)
