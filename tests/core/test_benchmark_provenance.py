"""Every benchmark's final JSON line says when, at which commit and on which machine it was measured."""

from __future__ import annotations

import ast
import datetime
import importlib.util
import pathlib
import re

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
# By path, as the benchmarks import it (from beside them): a dependency installs a top-level `benchmarks` package.
_spec = importlib.util.spec_from_file_location("provenance", BENCHMARKS / "provenance.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
FIELDS, provenance = _module.FIELDS, _module.provenance


def test_provenance_names_the_date_commit_cpu_torch_python_and_device():
    record = provenance()

    assert tuple(record) == FIELDS == ("date", "commit", "cpu_model", "torch", "python", "device")
    assert all(isinstance(v, str) and v for v in record.values()), record
    assert datetime.datetime.fromisoformat(record["date"]).utcoffset() == datetime.timedelta(0)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", record["commit"]), record["commit"]
    assert record["device"] == "cpu" or record["device"].startswith("cuda:")
    assert provenance(device="cuda:0")["device"] == "cuda:0"


def test_every_benchmark_puts_provenance_into_the_json_it_prints():
    """Each script of benchmarks/ (but this helper) calls provenance() for the JSON line it ends with."""
    lacking = []
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name == "provenance.py" or script.name.endswith("_peer.py") and "print(json.dumps" not in script.read_text():
            continue  # a peer server the generator benchmark starts; its numbers go into that benchmark's line
        tree = ast.parse(script.read_text())
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "provenance"]
        if not calls:
            lacking.append(script.name)
    assert lacking == [], f"benchmarks whose final JSON has no date, commit and machine: {lacking} (add **provenance() to it)"
