"""The Dockerfile (no engine here to build it): copies files that exist and are in the context, runs as non-root."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.deploy.tools import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _in_context(path: str) -> bool:
    """.dockerignore semantics: the last pattern matching the path or one of its parents decides."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = path.strip("/").split("/")
    included = True
    for pattern in patterns:
        negate, glob = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        glob = glob.replace("**/", "")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if fnmatch.fnmatch(candidate, glob) or fnmatch.fnmatch(parts[depth - 1], glob):
                included = negate
                break
    return included


def test_every_copied_path_exists_and_is_in_the_build_context():
    copies = [args for op, args in _instructions() if op == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert _in_context(source), f"COPY {source}: excluded by .dockerignore"


def test_image_installs_every_package_the_project_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {source.strip("./") for op, args in _instructions() if op == "COPY" for source in args.split()[:-1]}
    for pattern in declared:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    assert any(op == "RUN" and "pip install ." in args for op, args in _instructions())


def test_image_runs_as_a_non_root_user_with_ganworks_as_entrypoint():
    ops = _instructions()
    final_stage = max(i for i, (op, _) in enumerate(ops) if op == "FROM")
    users = [args for op, args in ops[final_stage:] if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the final stage must switch to a non-root user"
    assert ("ENTRYPOINT", '["ganworks"]') in ops


def test_login_shells_keep_the_venv_on_path():
    """KubeRay runs `bash -lc 'ray start …'`; Debian's /etc/profile would otherwise drop the venv from PATH."""
    ops = _instructions()
    venv_bin = next(args for op, args in ops if op == "ENV" and "PATH=" in args).split("PATH=")[1].split(":")[0]
    profile = [args for op, args in ops if op == "RUN" and "/etc/profile.d/" in args]
    assert profile and f"export PATH={venv_bin}:$PATH" in profile[0]


def test_cpu_and_cuda_builds_differ_only_by_build_arguments():
    ops = _instructions()
    declared = {args.split("=")[0] for op, args in ops if op == "ARG"}
    assert {"BASE_IMAGE", "TORCH_SPEC", "TORCH_INDEX_URL"} <= declared
    install = next(args for op, args in ops if op == "RUN" and "TORCH_SPEC" in args)
    assert "--index-url" in install and "TORCH_INDEX_URL" in install
    bake = (DEPLOY / "docker" / "docker-bake.hcl").read_text()
    assert set(re.findall(r"(\w+)\s*=", "".join(re.findall(r"args\s*=\s*\{([^}]*)\}", bake)))) <= declared
    assert "whl/cu" in bake and "-cuda" in bake
    gpu = (DEPLOY / "k8s" / "components" / "gpu" / "kustomization.yaml").read_text()
    assert re.search(r"newTag:\s*\S+-cuda", gpu), "the gpu component should run the -cuda image"
    base_image = next(args for op, args in ops if op == "ARG" and args.startswith("BASE_IMAGE="))
    assert ":" in base_image and "latest" not in base_image
