"""Runs ganworks commands as real subprocesses for the deploy tests, and stops them with all their children."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

from tests.deploy.tools import ROOT


class ServiceProcess:
    """`ganworks ARGS...` in its own session, its output in LOG; stop() ends it and every process it started."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: pathlib.Path):
        self.name, self.args = name, args
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "ganworks.cli", *args], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.running():
            raise AssertionError(f"ganworks {' '.join(self.args[:2])} exited with {self.process.returncode}:\n{self.log_tail()}")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, grace: float = 15.0) -> None:
        """SIGINT first (the CLI shuts Ray down on it), then SIGTERM/SIGKILL to the process and its descendants by pid."""
        family = [self.process.pid, *_descendants(self.process.pid)]
        if self.running():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        family += [pid for pid in _descendants(self.process.pid) if pid not in family]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in family if _alive(pid)]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.process.wait(10)
        self._log.close()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc (Linux)."""
    parents = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return parents


def _descendants(pid: int) -> list[int]:
    parents, found, frontier = _parents(), [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def subprocess_env(**extra: str) -> dict[str, str]:
    # A Ray cluster another test started in this process must not capture the subprocesses' `--ray-address local`.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def wait_for(check, timeout: float, what: str, processes: list[ServiceProcess] = (), interval: float = 0.5):
    """Polls check() until it returns a true value; fails early if one of `processes` died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for process in processes:
            process.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in processes)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)


def fetch_metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None
