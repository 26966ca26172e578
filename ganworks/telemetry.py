"""Logging, the Prometheus /metrics endpoint, and device choice, shared by every process."""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable

import torch

_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """The text with every registered secret value replaced by ***."""
    for value in _SECRETS:
        text = text.replace(value, "***")
    return text


class RedactSecrets(logging.Filter):
    """Replaces every registered secret value in a log line, its traceback and stack with ***, whatever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = record.getMessage()
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            # Formatters print exc_text when it is set, so the traceback is redacted once, here.
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        return True


def register_secrets(values: Iterable[str]) -> None:
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def setup_logging(level: str | int = "INFO", component: str = "ganworks") -> None:
    level = level.upper() if isinstance(level, str) else level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "botocore", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_worker_logging(level: int = logging.INFO, component: str = "trainer") -> None:
    """In a process whose logging someone else set up (a Ray worker): a handler if there is none, redaction on all."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def start_metrics_server(port: int, host: str = "0.0.0.0", registry=None) -> int:
    """Serves /metrics on host:port (0 picks a free port) in a daemon thread; returns the port."""
    from prometheus_client import REGISTRY, start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry or REGISTRY)
    return int(server.server_port)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        from ganworks.errors import ConfigError

        raise ConfigError(f"device {requested!r} asked for, but CUDA is not available on this machine; use --device cpu or auto")
    return device


def set_torch_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
