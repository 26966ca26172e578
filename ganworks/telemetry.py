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


METRICS_PATH = "/metrics"


def serve_metrics(port: int, addr: str = "0.0.0.0", registry=None):
    """Serves the registry on http://addr:port/metrics only (every other path is 404) in a daemon thread.

    prometheus_client's own server answers every path with the metrics, so an HTTP probe or a typo pointed
    at the port would always pass; here only the documented path does. Returns (server, thread) like
    prometheus_client.start_http_server; `server.server_port` is the port bound (0 picks a free one).
    """
    import socket
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import REGISTRY, make_wsgi_app

    metrics_app = make_wsgi_app(registry or REGISTRY)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found: metrics are at {METRICS_PATH}\n".encode()]
        return metrics_app(environ, start_response)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - a scrape every few seconds is not worth a log line
            pass

    server = make_server(addr, port, app, Server, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name=f"metrics-{server.server_port}", daemon=True)
    thread.start()
    return server, thread


def start_metrics_server(port: int, host: str = "0.0.0.0", registry=None) -> int:
    """Serves /metrics on host:port (0 picks a free port) in a daemon thread; returns the port."""
    server, _thread = serve_metrics(port, host, registry)
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
