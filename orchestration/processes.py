"""Supervises the system's processes on one machine: start, wait until healthy, stop in order, leave nothing behind."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import IO, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


# Ports handed to services are drawn from 20000-32767: below Linux's ephemeral range (32768-60999), from which
# every outgoing connection (gRPC/S3 clients, Ray's own sockets) takes a port, and above Ray's worker ports
# (10002-19999). A port asked of the kernel with bind(0) comes from the ephemeral range, and between choosing it
# and a service binding it (tens of seconds when the evaluator starts after training) an outgoing connection of
# any process could take it: the evaluator then failed to start with "address already in use".
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port nothing listens on now, not handed out before by this process."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(2000):
        port = rng.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE[0]}-{_PORT_RANGE[1]}")


def ganworks_command(*args: str) -> list[str]:
    """The `ganworks` command run by this same interpreter, so a venv need not be on PATH."""
    return [sys.executable, "-m", "ganworks.cli", *args]


def terminate(process: subprocess.Popen, grace: float) -> int:
    """SIGTERM, then SIGKILL if the process is still there after grace seconds; returns its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@dataclasses.dataclass
class ServiceProcess:
    """One child process in its own process group (so a stop reaches everything it started)."""

    name: str
    argv: Sequence[str]
    log_path: pathlib.Path
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    _log: IO | None = None

    def start(self) -> "ServiceProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(list(self.argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM to the group, then SIGKILL after grace; returns the exit code.

        Descendants that left the group (Ray starts its daemons in groups of their own) are found through
        /proc before the leader exits, and killed if they outlive it.
        """
        if self.process is None:
            return None
        family = descendants(self.process.pid)
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        self.signal(signal.SIGKILL)
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode


def descendants(pid: int) -> list[int]:
    """Every process below pid in the process tree, read from /proc (Linux; empty elsewhere)."""
    parents: dict[int, int] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        found += sorted(children)
        frontier = children
    return found


def ray_train_workers(session_id: int) -> list[int]:
    """PIDs of the Ray Train worker processes in one process session: those of a `ganworks train` started with
    start_new_session (as ServiceProcess starts it), whose local Ray cluster runs in the trainer's session."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            sid = os.getsid(int(entry))
        except (OSError, ProcessLookupError):
            continue
        if sid == session_id and cmdline.startswith("ray::RayTrainWorker"):
            found.append(int(entry))
    return sorted(found)


# Every process started with this variable in its environment (Ray's daemons and workers inherit it) can be found
# again, to show that none is left behind after a stop.
MARK = "GANWORKS_TEST_PROCESS_MARK"


def marked_env() -> dict[str, str]:
    """Environment to start a command with; Ray's daemons and workers inherit it too."""
    import uuid

    return {**os.environ, MARK: uuid.uuid4().hex}


def processes_marked(env: dict[str, str]) -> list[str]:
    """'pid cmdline' of every live process started (directly or not) with env's marker."""
    needle = f"{MARK}={env[MARK]}".encode()
    found = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {cmdline[:120]}")
        except OSError:
            continue
    return found


def wait_for_grpc_health(address: str, timeout: float, process: ServiceProcess | None = None, service: str = "") -> None:
    """Waits until the server at address answers SERVING, or raises with the process's log tail."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and not process.running:
                raise RuntimeError(f"{process.name} exited with {process.exit_code()} before it was healthy:\n{process.log_tail()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise TimeoutError(f"{address} was not SERVING within {timeout:.0f}s" + (f"; log:\n{process.log_tail()}" if process else ""))


def wait_for_http(url: str, timeout: float, process: ServiceProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(f"{process.name} exited with {process.exit_code()}:\n{process.log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")
