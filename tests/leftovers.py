"""Finds the processes a command left behind: every process that inherited a marker in its environment."""

from __future__ import annotations

import os
import pathlib
import uuid

MARK = "GANWORKS_TEST_PROCESS_MARK"


def marked_env() -> dict[str, str]:
    """Environment to start a command with; Ray's daemons and workers inherit it too."""
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
