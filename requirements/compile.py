"""Writes the hashed lock files in requirements/ from pyproject.toml (run: make lock).

Every file is made by uv's resolver as of one date (LOCK_DATE), so running it again with nothing changed gives the
same bytes, and a release elsewhere changes nothing until the date moves. PyTorch is left out of every lock: its
CPU and CUDA builds are different wheels of one version, chosen at install time by TORCH_SPEC (and the packages
only a CUDA build needs, nvidia-* and triton, go with it). Its pure-Python dependencies stay in, so both builds
install on top of the same locked set.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = ROOT / "requirements"
PYTHON = "3.11"
COMMAND = "make lock"
# Extras of pyproject.toml that make test and make demo install into the venv.
VENV_EXTRAS = ("test", "report", "lock", "docs")
# Extras the container image carries: every one the Kubernetes manifests use, and Ray's job server for KubeRay.
IMAGE_EXTRAS = ("fid", "dp", "mlflow", "report", "cluster")
# Packages that belong to a CUDA build of torch only; never locked, so a CPU install never pulls them.
CUDA_ONLY = re.compile(r"^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)$")


def _uv(args: list[str], uv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_NO_CONFIG"] = "1"  # only what this script says: no uv.toml of the user's changes a lock
    done = subprocess.run([uv, "pip", "compile", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"uv pip compile failed:\n{done.stderr}")
    return done.stdout


def _common(date: str) -> list[str]:
    return ["--generate-hashes", "--python-version", PYTHON, "--exclude-newer", date, "--custom-compile-command",
            COMMAND, "--quiet", "--no-progress"]


def _extras(names: tuple[str, ...]) -> list[str]:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    return [arg for name in names if name in declared for arg in ("--extra", name)]


def _locked_names(text: str) -> set[str]:
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, flags=re.M)}


def _full_lock(sources: list[str], extras: tuple[str, ...], date: str, uv: str, extra: list[str] = ()) -> str:
    """Resolves once to learn which CUDA-only packages the resolution reaches, then again without emitting them."""
    base = [*sources, *_extras(extras), "--universal", *_common(date), *extra]
    first = base if "--no-annotate" in base else [*base, "--no-annotate"]
    cuda = sorted(n for n in _locked_names(_uv(first, uv)) if CUDA_ONLY.match(n))
    skip = [arg for name in sorted(set(cuda) | {"torch"}) for arg in ("--no-emit-package", name)]
    return _uv([*base, *skip], uv)


def compile_all(out: pathlib.Path, date: str, uv: str) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def write(name: str, text: str) -> None:
        (out / name).write_text(text)
        written.append(out / name)

    # The venv's own tools: pip itself and the build backend the editable install uses without isolation.
    write("bootstrap.txt", _uv(["requirements/bootstrap.in", "--universal", *_common(date)], uv))
    venv = _full_lock(["pyproject.toml"], VENV_EXTRAS, date, uv)
    write("lock.txt", venv)
    # The image takes the venv's versions wherever the two share a package (one tested set). Not annotated: the
    # annotations would name the constraint file's path, which differs when the locks are written elsewhere.
    write("image.txt", _full_lock(["pyproject.toml"], IMAGE_EXTRAS, date, uv,
                                  ["--constraint", os.path.relpath(out / "lock.txt", ROOT), "--no-annotate"]))
    # Installed with --no-deps: ISLP for its CSVs (its own dependencies are heavy and unused), and pytorch-fid
    # with its torchvision into .venv/tools (the FID reference, never the venv).
    for name in ("nodeps", "fid-reference"):
        write(f"{name}.txt", _uv([f"requirements/{name}.in", "--no-deps", *_common(date)], uv))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="resolve as of this UTC date (YYYY-MM-DD): no release after it")
    parser.add_argument("--out", type=pathlib.Path, default=HERE, help="folder to write the locks to")
    parser.add_argument("--uv", default=str(pathlib.Path(sys.executable).parent / "uv"), help="the uv executable")
    args = parser.parse_args()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
        sys.exit(f"--date must be YYYY-MM-DD, got {args.date!r}")
    for path in compile_all(args.out, f"{args.date}T00:00:00Z", args.uv):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
