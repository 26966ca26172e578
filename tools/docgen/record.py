"""Runs a benchmark and keeps its final JSON line as benchmarks/results/<name>.json, with when and where it ran.

The fields a benchmark already reports (date, commit, cpu_model, torch, python, device) are kept as it wrote them;
only missing ones are filled in here, from this machine at the time of the run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

from tools.docgen.benchmarks_page import RESULTS
from tools.docgen.common import ROOT


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def _torch_and_device() -> tuple[str, str]:
    try:
        import torch
    except ImportError:
        return "", ""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return torch.__version__, device


def record(name: str, command: list[str]) -> dict:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"record: the name {name!r} must be letters, digits, - or _ (it becomes benchmarks/results/{name}.json)")
    load_before = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.timezone.utc)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip().startswith("{"):
            last = line.strip()
    if proc.wait() != 0:
        raise SystemExit(f"record: {shlex.join(command)} exited with {proc.returncode}; nothing recorded")
    if not last:
        raise SystemExit(f"record: {shlex.join(command)} printed no JSON line; nothing recorded")
    result = json.loads(last)
    torch_version, device = _torch_and_device()
    filled = {
        "date": started.strftime("%Y-%m-%d"), "commit": _commit(), "cpu_model": _cpu_model(), "cpus": os.cpu_count(),
        "torch": torch_version, "python": platform.python_version(), "device": device, "command": shlex.join(command),
        "load_average": f"{load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end",
    }
    for key, value in filled.items():
        if result.get(key) in (None, "") and value not in (None, ""):
            result[key] = value
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return result
