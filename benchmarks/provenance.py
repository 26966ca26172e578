"""Where and when a benchmark ran: the fields every benchmark's final JSON line carries, so each figure names its machine."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("date", "commit", "cpu_model", "torch", "python", "device")


def provenance(device: str = "") -> dict[str, str]:
    """date (UTC, ISO 8601), commit (with "-dirty" when the tree had changes), cpu_model, torch, python, device.

    `device` is what the benchmark measured on; by default the first CUDA device's name, or "cpu".
    """
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
            "cpu_model": _cpu_model(), "torch": _version("torch"), "python": platform.python_version(), "device": device or _device()}


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return (head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
