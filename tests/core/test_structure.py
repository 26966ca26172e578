"""The architecture's standing rules, checked over the source: one module builds store keys; the parts import one way."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ("trainer", "generator_service", "evaluator_service")
ORCHESTRATION = "orchestration"
PACKAGES = ("ganworks", *SERVICES, ORCHESTRATION, "benchmarks")
LAYOUT_MODULE = ROOT / "ganworks" / "layout.py"
GENERATED = ROOT / "ganworks" / "api"

# A store key spelled by hand: a string that starts at one of the store's top folders, or that names a part of
# a run's folder after a "/" (how `f"{prefix}/manifest.json"` spells it).
KEY_ROOT = re.compile(r"^(runs|reference-stats|extractors)/")
KEY_PART = re.compile(r"/(LATEST|run\.json|manifest\.json|generator\.safetensors|classifier\.safetensors|samples\.png|stats\.jsonl|"
                      r"checkpoints/|evals/|train_state\b)")


def _sources(packages=PACKAGES):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if GENERATED not in path.parents:
                yield path


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _string_literals(tree: ast.AST):
    """(line, text) of every string literal that is not a docstring; an f-string's literal parts count one by one."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def hand_built_keys(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{line}: {text!r}" for line, text in _string_literals(tree) if KEY_ROOT.match(text) or KEY_PART.search(text)]


def imported_modules(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[tuple[int, str]]:
    """Every module path imports, at the top or inside functions (relative imports resolved)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_layout_module_is_the_only_one_that_spells_store_keys():
    offenders = [f"{path.parent.relative_to(ROOT)}/{hit}" for path in _sources() if path != LAYOUT_MODULE for hit in hand_built_keys(path)]
    assert offenders == [], "build these keys with a function of ganworks/layout.py:\n" + "\n".join(offenders)


def test_the_key_check_sees_a_hand_built_key(tmp_path):
    """The check above can fail: it finds the shapes in which keys used to be spelled by hand."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""Mentions runs/<run>/LATEST in a docstring, which is fine."""\n'
                      'a = f"runs/{run}/stats.jsonl"\nb = f"{prefix}/manifest.json"\nc = "reference-stats/" + d\nd = "a message"\n')
    assert sorted({hit.split(":")[1] for hit in hand_built_keys(sample)}) == ["2", "3", "4"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_neither_another_service_nor_the_command_dispatcher_nor_the_orchestration(service):
    forbidden = {s for s in SERVICES if s != service} | {ORCHESTRATION}
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources((service,))
        for line, module in imported_modules(path)
        if _top(module) in forbidden or module == "ganworks.cli" or module.startswith("ganworks.cli.")
    ]
    assert offenders == [], f"{service} talks to the others through gRPC and the store only:\n" + "\n".join(offenders)


def test_the_core_imports_no_service_and_only_the_dispatcher_may_name_the_parts_above_it():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources(("ganworks",))
        for line, module in imported_modules(path)
        if _top(module) in (*SERVICES, ORCHESTRATION) or (module.startswith("ganworks.cli") and path.name != "cli.py")
    ]
    assert offenders == [], "the core sits below every part; the services and the orchestration import it, not the other way:\n" + "\n".join(offenders)


def test_the_orchestration_starts_services_as_processes_without_importing_them():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources((ORCHESTRATION,))
        for line, module in imported_modules(path)
        if _top(module) in SERVICES or module.startswith("ganworks.cli")
    ]
    assert offenders == [], "the orchestration configures services through their GANWORKS_* environment only:\n" + "\n".join(offenders)


def test_the_import_check_sees_an_import_of_another_service(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom generator_service.client import X\n\ndef f():\n    from ganworks import cli\n")
    assert imported_modules(sample, root=tmp_path) == [(1, "os"), (2, "generator_service.client.X"), (5, "ganworks.cli")]
