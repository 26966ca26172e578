"""The venv is the lock: what `make venv` installs is exactly requirements/*.txt, and the lock is pyproject.toml's."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[2]
REQS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the venv holds beside the locks: ganworks itself, and PyTorch with what only its CUDA build pulls in.
OUTSIDE_THE_LOCK = re.compile(r"^(ganworks|torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)$")


def _compile_module():
    spec = importlib.util.spec_from_file_location("compile_locks", REQS / "compile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _locked(name: str) -> dict[str, Version]:
    """Package -> version for every entry of a lock file whose marker holds for this interpreter."""
    pins = {}
    for line in (REQS / name).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate()):
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def _installed() -> dict[str, Version]:
    """What pip installed into this environment: its site-packages only (Ray, once imported, puts its bundled
    thirdparty_files, psutil among them, on sys.path; those are Ray's, not the venv's)."""
    where = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in importlib.metadata.distributions(path=where)}


def test_the_venv_holds_exactly_the_locked_versions():
    locked = {**_locked("bootstrap.txt"), **_locked("lock.txt"), **_locked("nodeps.txt")}
    installed = _installed()

    wrong = {n: f"locked {v}, installed {installed.get(n, 'nothing')}" for n, v in locked.items() if installed.get(n) != v}
    strays = sorted(n for n in installed if n not in locked and not OUTSIDE_THE_LOCK.match(n))
    assert not wrong, f"the venv differs from requirements/: {wrong}; run `make venv` (it rebuilds from the lock)"
    assert not strays, f"installed but in no lock: {strays}; add them to pyproject.toml and run `make lock`"


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = project.get("optional-dependencies", {})
    texts = [*project["dependencies"], *(r for e in extras if e in declared for r in declared[e])]
    return [Requirement(t) for t in texts]


@pytest.mark.parametrize(("lock", "extras"), [("lock.txt", "VENV_EXTRAS"), ("image.txt", "IMAGE_EXTRAS")])
def test_every_requirement_of_pyproject_is_locked_at_a_version_it_accepts(lock, extras):
    pins = _locked(lock)
    disagree = []
    for req in _requirements(getattr(_compile_module(), extras)):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name == "torch":  # outside the lock: TORCH_SPEC's version must be one pyproject accepts (below)
            continue
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            disagree.append(f"{req} (requirements/{lock}: {pins.get(name, 'absent')})")
    assert not disagree, f"pyproject.toml and the lock disagree: {disagree}; run `make lock`"


def test_the_default_torch_build_is_one_pyproject_accepts():
    spec = re.search(r"^TORCH_SPEC \?= (\S+)$", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    wanted = Requirement(spec)
    torch_req = next(r for r in _requirements(()) if canonicalize_name(r.name) == "torch")
    assert all(torch_req.specifier.contains(Version(s.version)) for s in wanted.specifier), (spec, str(torch_req))


def test_the_image_lock_takes_the_venv_versions_of_every_package_they_share():
    venv, image = _locked("lock.txt"), _locked("image.txt")
    differ = {n: (str(venv[n]), str(image[n])) for n in venv.keys() & image.keys() if venv[n] != image[n]}
    assert not differ, f"requirements/image.txt and lock.txt pin different versions: {differ}; run `make lock`"


def test_the_build_backend_is_locked_at_a_version_the_build_system_accepts():
    pins = _locked("bootstrap.txt")
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"{req} vs requirements/bootstrap.txt"


@pytest.mark.slow
def test_make_lock_writes_the_same_files_when_nothing_changed(tmp_path):
    uv = shutil.which("uv", path=str(pathlib.Path(sys.executable).parent))
    assert uv, "uv is not in the venv: it comes with the `lock` extra (requirements/lock.txt)"
    date = re.search(r"^LOCK_DATE \?= (\S+)$", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    done = subprocess.run([sys.executable, str(REQS / "compile.py"), "--date", date, "--out", str(tmp_path), "--uv", uv],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr

    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.txt")}
    committed = {p.name: p.read_text() for p in REQS.glob("*.txt")}
    assert sorted(fresh) == sorted(committed)
    drifted = [name for name in fresh if fresh[name] != committed[name]]
    assert not drifted, f"{drifted} differ from what `make lock` makes now: run it and commit requirements/"


def _minimum_python() -> tuple[int, int]:
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert m, "requires-python should be a plain lower bound, like >=3.11"
    return int(m.group(1)), int(m.group(2))


def test_every_python_file_parses_on_the_oldest_python_pyproject_allows():
    oldest = _minimum_python()
    too_new = []
    for path in ROOT.rglob("*.py"):
        if {".venv", ".git", "build", "node_modules"} & set(path.relative_to(ROOT).parts):
            continue
        try:
            ast.parse(path.read_text(), filename=str(path), feature_version=oldest)
        except SyntaxError as e:
            too_new.append(f"{path.relative_to(ROOT)}:{e.lineno}: {e.msg}")
    assert not too_new, f"syntax newer than Python {oldest[0]}.{oldest[1]}: {too_new}"


def test_the_python_floor_is_the_same_in_pyproject_the_makefile_and_the_image():
    major, minor = _minimum_python()
    assert f"sys.version_info < ({major}, {minor})" in (ROOT / "Makefile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=python:(\d+)\.(\d+)", (ROOT / "deploy/docker/Dockerfile").read_text(), flags=re.M)
    assert base and (int(base.group(1)), int(base.group(2))) >= (major, minor)
    # tomllib (and so tests/ and requirements/compile.py) needs 3.11.
    assert (major, minor) >= (3, 11)
