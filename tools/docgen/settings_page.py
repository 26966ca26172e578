"""docs/reference/settings.md: every settings field, its environment variable and default, from the settings classes.

A field's meaning is the comment block right above it in the class (the code's own documentation), and a secret
field also reads `<VAR>_FILE`. Environment variables read elsewhere in the code are listed after the classes.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap

from tools.docgen.common import ROOT, banner, cell, code, table

# (module, class, environment prefix, who reads it)
CLASSES = (
    ("ganworks.settings", "StoreSettings", "GANWORKS_", "every command that opens the store"),
    ("trainer.config", "TrainOptions", "GANWORKS_TRAINER_", "`ganworks train`"),
    ("generator_service.settings", "GeneratorSettings", "GANWORKS_GENERATOR_", "`ganworks generator serve`"),
    ("evaluator_service.settings", "EvaluatorSettings", "GANWORKS_EVALUATOR_", "`ganworks evaluator serve`"),
)
CODE_FOLDERS = ("ganworks", "trainer", "generator_service", "evaluator_service", "orchestration")
ENV_READ = re.compile(r"""["'](GANWORKS_[A-Z0-9_]*[A-Z0-9])["']""")


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment lines directly above its line in the class body."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            out[node.target.id] = " ".join(above)
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return str(value)


def _type(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def render() -> str:
    out = [banner("the settings dataclasses (" + ", ".join(f"`{m}.{c}`" for m, c, _, _ in CLASSES) + ") and the code's "
                  "environment reads"), "# Settings and environment variables\n",
           "One settings object per process, from flags, then `GANWORKS_*` environment variables, then the defaults "
           "below. A list is comma-separated in the environment; a boolean is `1/true/yes/on` or `0/false/no/off`. "
           "A secret (marked) may instead come from a file named by `<VARIABLE>_FILE` (a mounted Kubernetes Secret) "
           "and never appears in logs or `repr`.\n"]
    known: set[str] = set()
    for module, name, prefix, reader in CLASSES:
        cls = getattr(importlib.import_module(module), name)
        notes = _comments(cls)
        out.append(f"## `{name}`: {reader}\n")
        if cls.__doc__ and not cls.__doc__.startswith(f"{name}("):
            out.append(cell(inspect.cleandoc(cls.__doc__).split("\n\n")[0]) + "\n")
        rows = []
        for f in dataclasses.fields(cls):
            var = prefix + f.name.upper()
            known.add(var)
            secret = f.metadata.get("secret")
            variable = code(var) + (f" (secret; or {code(var + '_FILE')})" if secret else "")
            rows.append([variable, code(_type(f)), code(_default(f)), cell(notes.get(f.name, ""))])
        out.append(table(["variable", "type", "default", "meaning"], rows))
    others: dict[str, set[str]] = {}
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for var in ENV_READ.findall(path.read_text(encoding="utf-8")):
                if var not in known and not any(var == k + "_FILE" for k in known):
                    others.setdefault(var, set()).add(str(path.relative_to(ROOT)))
    out.append("## Other environment variables\n")
    out.append("Read directly by the code (not through a settings class); see the file for what each does.\n")
    out.append(table(["variable", "read in"], [[code(v), ", ".join(code(p) for p in sorted(files))] for v, files in sorted(others.items())]))
    return "\n".join(out)
