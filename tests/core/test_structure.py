"""The architecture's standing rules, checked over the source: one module builds store keys; the parts import one way."""

from __future__ import annotations

import ast
import pathlib
import re
import sys

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


# ---- the kind of run is a seam (image, table, translation): only kinds/ modules and the registry branch on it -------------

KIND_SEAMS = ("/kinds/", "ganworks/models/registry.py")
KIND_NAMES = {"image", "table", "translation", "domains"}
# The attributes that told the kinds apart before the seam: the family's flags, a loaded model's table part, a plan's domains.
KIND_FLAGS = {"tabular", "translation", "domains"}


def _names_the_kind(node: ast.AST) -> bool:
    """`x.kind`, `x["kind"]`, `x.get("kind")`, or a kind flag such as `family.tabular`."""
    if isinstance(node, ast.Attribute):
        return node.attr in KIND_FLAGS or node.attr == "kind"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "kind"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind"
    return False


def _kind_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in KIND_NAMES


def _branches_on_kind(test: ast.AST) -> bool:
    """A condition that asks which kind of run it has: a kind flag, `.kind == "table"`, `p.domains is not None`, ..."""
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in KIND_FLAGS and node.attr != "domains":
            return True
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_the_kind(s) for s in sides) and any(_kind_literal(s) or (isinstance(s, ast.Constant) and s.value is None) for s in sides):
                return True
    return False


def kind_branches(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    tests = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
            tests.append(node.test)
        elif isinstance(node, ast.comprehension):
            tests += node.ifs
        elif isinstance(node, ast.BoolOp):
            tests += node.values
    return sorted({f"{path.relative_to(ROOT) if ROOT in path.parents else path.name}:{t.lineno}" for t in tests if _branches_on_kind(t)})


def _kind_offenders(packages) -> list[str]:
    return [hit for path in _sources(packages) if not any(seam in path.as_posix() for seam in KIND_SEAMS) for hit in kind_branches(path)]


def test_only_kinds_modules_and_the_registry_branch_on_the_kind_of_run():
    offenders = _kind_offenders(("ganworks", "trainer", "generator_service", "evaluator_service", ORCHESTRATION))
    assert offenders == [], "a kind's behaviour belongs in its kinds/<kind>.py module (README: where to add things):\n" + "\n".join(offenders)


def test_the_kind_check_sees_a_branch_on_the_kind(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("if family.tabular:\n    pass\nx = 1 if p.domains is not None else 2\nok = [m for m in ms if m.kind == kind]\n"
                      "if info['dataset'].get('kind') == 'table':\n    pass\nwhile f.kind != 'image':\n    pass\n")
    assert [hit.split(":")[1] for hit in kind_branches(sample)] == ["1", "3", "5", "7"]


# ---- no import circle ---------------------------------------------------------------------------------------------------

def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(paths) -> dict[str, set[str]]:
    """module -> the modules of the project it imports (every import statement, TYPE_CHECKING and function-level ones included).
    `from a.b import c` is an edge to a.b.c when that is a module, else to a.b."""
    paths = list(paths)
    modules = {_module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        edges = set()
        for _, name in imported_modules(path, ROOT):
            target = name if name in modules else name.rpartition(".")[0] if name.rpartition(".")[0] in modules else None
            if target is None and name in modules:
                target = name
            if target and target != _module_name(path):
                edges.add(target)
        graph[_module_name(path)] = edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back():
    circles = import_circles(import_graph(_sources()))
    assert circles == [], "modules that import each other (directly or round a loop); move the shared part into a module both import:\n" + \
        "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_sees_a_circle_through_a_type_checking_import(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (package / "c.py").write_text("def f():\n    import pkg.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_circles(import_graph(sorted(package.glob("*.py")))) == [["pkg.a", "pkg.b", "pkg.c"]]
