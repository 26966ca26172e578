"""Every test that a table in README.md or docs/ names exists: a renamed or deleted test cannot leave a promise pointing at nothing.

Any Markdown table row counts; a cell names a test as `tests/….py`, optionally `::name` (a test, fixture or class;
a trailing `*` matches by prefix), and `…::name` means the file named before it in the same cell.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"(?P<path>tests/[\w./-]+?\.py)(?:::(?P<name>[\w*]+))?|(?:…|\.\.\.)::(?P<same>[\w*]+)")


def documents() -> list[pathlib.Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if p.is_file()]


def table_references(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, path, name or None) for every test named in a table row of `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("|") or re.fullmatch(r"\s*\|[\s:|-]*", line):
            continue
        for cell in line.split("|"):
            path = None
            for match in REFERENCE.finditer(cell):
                if match["path"]:
                    path = match["path"]
                    found.append((number, path, match["name"]))
                elif path:
                    found.append((number, path, match["same"]))
    return found


@functools.cache
def defined_names(path: pathlib.Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def missing(text: str, label: str) -> list[str]:
    """One line for each test named in a table of `text` that does not exist."""
    out = []
    for number, path, name in table_references(text):
        target = ROOT / path
        if not target.is_file():
            out.append(f"{label}:{number}: {path} does not exist")
        elif name and not fnmatch.filter(defined_names(target), name):
            out.append(f"{label}:{number}: {path} defines nothing named {name}")
    return out


def test_every_test_named_in_a_table_of_the_readme_or_docs_exists():
    texts = {str(document.relative_to(ROOT)): document.read_text() for document in documents()}
    referenced = [ref for text in texts.values() for ref in table_references(text)]
    problems = [problem for label, text in texts.items() for problem in missing(text, label)]

    assert referenced, "no table in README.md or docs/ names a test: the promise→test table is gone, or this check no longer reads it"
    assert problems == [], "\n".join(problems)


def test_a_table_naming_a_missing_file_or_test_is_caught():
    text = ("| promise | test |\n| --- | --- |\n"
            "| a | `tests/core/test_promise_table.py::test_every_test_named_*`, `…::no_such_test` |\n"
            "| b | `tests/core/no_such_file.py` |\n"
            "outside a table: tests/core/also_missing.py\n")

    assert missing(text, "doc.md") == ["doc.md:3: tests/core/test_promise_table.py defines nothing named no_such_test",
                                       "doc.md:4: tests/core/no_such_file.py does not exist"]
