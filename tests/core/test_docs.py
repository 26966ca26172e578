"""The documentation: generated pages match their sources, the site builds strictly, the README stays short, and no
page narrates the work's chronology. `make docs-gen` fixes the first; the others need an edit."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORK_PERIOD = re.compile(r"\b[Ss]essions? [0-9]+|\b[Rr]un [0-9]+ of\b")


def _markdown_pages() -> list[pathlib.Path]:
    # deploy/README.md is part of the site (docs/deploy.md includes it).
    return [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_generated_pages_and_readme_numbers_match_what_make_docs_gen_writes():
    done = subprocess.run([sys.executable, "-m", "tools.docgen", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"generated docs are stale; run `make docs-gen` and commit:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"


def test_every_headline_number_on_the_benchmarks_page_and_in_the_readme_carries_its_files_date():
    sys.path.insert(0, str(ROOT))
    from tools.docgen import benchmarks_page

    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(benchmarks_page.README_START):readme.index(benchmarks_page.README_END)]
    checked = 0
    for path in benchmarks_page.result_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        spec = benchmarks_page.HEADLINES.get(path.stem)
        flat = benchmarks_page._flatten(data)
        date = str(data["date"]) if data.get("date") else "date unknown"
        for key, _, _ in (spec[1] if spec else []):
            if flat.get(key) is None:
                continue
            row = f"| `{path.relative_to(ROOT)}` | "
            lines = [line for line in block.splitlines() if line.startswith(row) and f"**{benchmarks_page._number(flat[key])}**" in line]
            assert lines and all(date in line for line in lines), f"README headline for {path.name}:{key} = {flat[key]} ({date}) is missing or undated"
            assert f"**{benchmarks_page._number(flat[key])}**" in page
            checked += 1
    assert checked, "no headline number found in benchmarks/results/: the page would be empty"


def test_the_site_builds_with_mkdocs_in_strict_mode(tmp_path):
    mkdocs = pathlib.Path(sys.executable).with_name("mkdocs")
    command = [str(mkdocs)] if mkdocs.exists() else [sys.executable, "-m", "mkdocs"]
    done = subprocess.run([*command, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def test_the_readme_is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/ and link to it"


def test_no_page_numbers_work_periods():
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}" for p in _markdown_pages()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if WORK_PERIOD.search(line)]
    assert not found, "numbered work periods in the docs (say what was decided and why; history lives in git):\n" + "\n".join(found)


def _anchors(page: pathlib.Path) -> set[str]:
    from pymdownx.slugs import slugify

    slug = slugify(case="lower")
    text = page.read_text(encoding="utf-8")
    headings = [re.sub(r"[`*]", "", m.group(1)).strip() for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)]
    return {slug(h, "-") for h in headings}


def test_every_relative_link_in_the_readme_reaches_a_file_and_heading():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, "README links that lead nowhere:\n" + "\n".join(broken)
