"""Writes tests/durations.json from a run's JUnit XML: each test file's seconds (setup, call and teardown of its tests),
for the files that take 15 s or more. tests/conftest.py starts the longest files first, so neither worker is left
with a long file at the end while the other idles.

    make test PYTEST_ARGS=--junitxml=/tmp/junit.xml && .venv/bin/python tests/tools/durations.py /tmp/junit.xml
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys
import xml.etree.ElementTree as ET

OUT = pathlib.Path(__file__).resolve().parents[1] / "durations.json"
FLOOR = 15.0


def test_file(classname: str) -> str:
    """tests.e2e.test_system.TestX → tests/e2e/test_system.py"""
    parts = classname.split(".")
    while parts and not parts[-1].startswith("test_"):
        parts.pop()
    while len(parts) > 1 and parts[-2].startswith("test_"):
        parts.pop()
    return "/".join(parts) + ".py"


def main(junit: str) -> None:
    seconds: collections.Counter = collections.Counter()
    for case in ET.parse(junit).iter("testcase"):
        seconds[test_file(case.get("classname", ""))] += float(case.get("time") or 0)
    kept = {name: round(s, 1) for name, s in seconds.most_common() if s >= FLOOR}
    OUT.write_text(json.dumps(kept, indent=1) + "\n")
    print(f"{OUT}: {len(kept)} files of {len(seconds)}, {sum(kept.values()):.0f} of {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not pathlib.Path(sys.argv[1]).is_file():
        sys.exit(f"usage: {sys.argv[0]} JUNIT.xml (a run's --junitxml file; got {sys.argv[1:]})")
    main(sys.argv[1])
