"""`python -m tools.docgen` writes the generated pages; `--check` only compares; `record NAME -- CMD` keeps a result."""

from __future__ import annotations

import argparse
import difflib
import pathlib
import sys
from typing import Callable

from tools.docgen import benchmarks_page, cli_page, grpc_page, metrics_page, prometheus_page, settings_page
from tools.docgen.common import DOCS, ROOT

PAGES: dict[pathlib.Path, Callable[[], str]] = {
    DOCS / "reference" / "cli.md": cli_page.render,
    DOCS / "reference" / "settings.md": settings_page.render,
    DOCS / "reference" / "grpc.md": grpc_page.render,
    DOCS / "reference" / "metrics.md": metrics_page.render,
    DOCS / "reference" / "prometheus.md": prometheus_page.render,
    DOCS / "benchmarks.md": benchmarks_page.render,
}
README = ROOT / "README.md"


def _readme(current: str) -> str:
    """README.md with its headline-numbers block replaced by the one the result files give."""
    start, end = current.find(benchmarks_page.README_START), current.find(benchmarks_page.README_END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no headline-numbers block; put the two marker lines in it:\n{benchmarks_page.README_START}\n{benchmarks_page.README_END}")
    return current[:start] + benchmarks_page.readme_block() + current[end + len(benchmarks_page.README_END):]


def expected() -> dict[pathlib.Path, str]:
    """Every generated file and the text it should hold."""
    out = {path: render().rstrip("\n") + "\n" for path, render in PAGES.items()}
    out[README] = _readme(README.read_text(encoding="utf-8"))
    return out


def drift() -> list[str]:
    """A unified diff for each generated file that differs from what the generator gives (empty: none)."""
    diffs = []
    for path, text in expected().items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            name = str(path.relative_to(ROOT))
            diffs.append("".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True), f"{name} (committed)", f"{name} (generated)", n=1)))
    return diffs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["record"]:
        if len(argv) < 4 or argv[2] != "--":
            print("usage: python -m tools.docgen record NAME -- COMMAND ...", file=sys.stderr)
            return 2
        from tools.docgen.record import record

        record(argv[1], argv[3:])
        argv = []
    parser = argparse.ArgumentParser(prog="python -m tools.docgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 and show the difference when a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        diffs = drift()
        for d in diffs:
            sys.stdout.write(d)
        if diffs:
            print(f"\n{len(diffs)} generated file(s) are stale: run `make docs-gen` and commit the result", file=sys.stderr)
        return 1 if diffs else 0
    for path, text in expected().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
