"""The kind of model (image, table, translation) is a seam in the generator: one module per kind, no branches elsewhere."""

from __future__ import annotations

import ast
import pathlib

from ganworks.models import FAMILIES
from generator_service.kinds import KINDS, ServingKind, kind_of

SERVICE = pathlib.Path(__file__).resolve().parents[2] / "generator_service"
FLAGS = {"tabular", "translation"}


def _branches_on_the_kind(path: pathlib.Path) -> list[str]:
    """Lines whose if/elif/while/ternary/boolean test reads a kind flag (`.tabular`, `.translation`) or a family's `.kind`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        tests = [node.test] if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)) else []
        tests += node.values if isinstance(node, ast.BoolOp) else []
        tests += [node.operand] if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) else []
        for test in tests:
            if any(isinstance(n, ast.Attribute) and (n.attr in FLAGS or n.attr == "kind" and "famil" in ast.unparse(n.value)) for n in ast.walk(test)):
                found.append(f"{path.relative_to(SERVICE.parent)}:{test.lineno}")
    return found


def test_no_generator_module_outside_kinds_branches_on_the_kind_of_model():
    modules = [p for p in SERVICE.rglob("*.py") if "kinds" not in p.parts]
    assert [hit for path in modules for hit in _branches_on_the_kind(path)] == []


def test_every_registered_family_has_a_serving_kind_with_the_entry_points_filled_in():
    for name, family in FAMILIES.items():
        kind = KINDS[kind_of(family)]
        assert kind.calls, name
        assert type(kind).compute is not ServingKind.compute and type(kind).warm_up is not ServingKind.warm_up, name


def test_every_registered_family_is_served_by_the_module_of_its_declared_kind():
    assert {name: kind_of(family) for name, family in FAMILIES.items()} == {name: family.kind for name, family in FAMILIES.items()}
    assert {kind_of(family) for family in FAMILIES.values()} <= set(KINDS)
