"""The `ganworks` command as a user runs it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ganworks.checkpoint import publish_snapshot
from ganworks.cli import COMMANDS, main
from ganworks.models import build_generator


def ganworks(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganworks.cli", *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_help_lists_every_command():
    out = ganworks("--help").stdout

    for command in ("train", "generator", "evaluator", "generate", "evaluate", "up", "demo", "runs", "report"):
        assert f"  {command} " in out


def test_runs_lists_published_snapshots_of_a_store(tmp_path):
    from ganworks.store import open_store

    store = open_store(str(tmp_path))
    params = {"image_size": 16, "channels": 1, "latent_dim": 8, "width": 8}
    for step in (10, 20):
        publish_snapshot(store, run="demo-run", step=step, generator_state=build_generator("dcgan", **params).state_dict(), architecture="dcgan", architecture_params=params)

    result = ganworks("runs", "--store", str(tmp_path), "--json")

    assert result.returncode == 0, result.stderr
    assert '"step": 20' in result.stdout and '"latest": true' in result.stdout


def test_a_malformed_store_url_is_reported_without_a_traceback(tmp_path):
    result = ganworks("runs", "--store", "gs://bucket/x")

    assert result.returncode == 2
    assert "unknown scheme 'gs'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_interrupted_exits_130_saying_so(command, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt, which SIGTERM becomes too) anywhere in a command's run: exit code 130, no traceback."""
    module = importlib.import_module(COMMANDS[command][0])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "configure", lambda parser: None)  # no flags needed to reach run()
    monkeypatch.setattr(module, "run", interrupted)

    code = main([command])

    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "Traceback" not in err
