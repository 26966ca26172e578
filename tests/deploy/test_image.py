"""The Dockerfile (no engine here to build it): copies files that exist and are in the context, runs as non-root."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
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
    assert any(op == "RUN" and re.search(r"pip install [-\w ]*\.( |$)", args) for op, args in _instructions())


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


def _run_args(needle: str) -> tuple[int, str]:
    return next((i, args) for i, (op, args) in enumerate(_instructions()) if op == "RUN" and needle in args)


def _locked(path) -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", path.read_text(), flags=re.M)}


def test_the_image_installs_the_hashed_lock_then_torch_then_the_project_without_resolving():
    lock_step, lock = _run_args("requirements/image.txt")
    assert "--require-hashes" in lock and "--no-deps" in lock
    torch_step, _ = _run_args("TORCH_SPEC")
    project_step, project = _run_args("pip install --no-deps --no-build-isolation .")
    assert lock_step < torch_step < project_step, "lock, then torch (outside the lock), then the project"
    assert "pip check" in project
    copied = " ".join(args for op, args in _instructions() if op == "COPY")
    assert "requirements/image.txt" in copied and "requirements/bootstrap.txt" in copied


def test_the_image_lock_holds_every_extra_the_manifests_use_and_no_torch():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    locked = _locked(ROOT / "requirements" / "image.txt")
    # fid: import-inception (gpu component); dp: --dp-epsilon; mlflow: tracking; report: ganworks report; cluster: KubeRay's job server.
    for extra in ("fid", "dp", "mlflow", "report", "cluster"):
        for requirement in extras[extra]:
            name, _, version = re.sub(r"\[.*\]", "", requirement).partition("==")
            assert locked.get(name.lower().replace("_", "-")) == version, f"extra {extra}: {requirement} is not in requirements/image.txt"
    assert "torch" not in locked and not any(name.startswith("nvidia-") for name in locked), "torch's build is chosen at build time"
    ray_version = re.search(r"ARG RAY_VERSION=(\S+)", DOCKERFILE.read_text()).group(1)
    assert locked["ray"] == ray_version


def test_base_images_are_pinned_by_digest():
    bases = [args.split("=", 1)[1] for op, args in _instructions() if op == "ARG" and args.startswith("BASE_IMAGE=")]
    assert bases and all(re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base) for base in bases), bases
    stages = [args for op, args in _instructions() if op == "FROM"]
    assert all(stage.split()[0] == "${BASE_IMAGE}" for stage in stages), stages


def test_the_healthcheck_asks_the_server_the_container_runs(tmp_path):
    ops = _instructions()
    final_stage = max(i for i, (op, _) in enumerate(ops) if op == "FROM")
    check = [args for op, args in ops[final_stage:] if op == "HEALTHCHECK"]
    assert check and "/opt/ganworks/healthcheck.py" in check[0]
    assert any(op == "COPY" and args.split()[0] == "deploy/docker/healthcheck.py" for op, args in ops[final_stage:])

    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        def healthcheck(*cmdline: str, **env: str) -> int:
            path = tmp_path / "cmdline"
            path.write_bytes(b"\0".join(part.encode() for part in cmdline) + b"\0")
            keep = {k: v for k, v in os.environ.items() if not k.startswith("GANWORKS_")}
            return subprocess.run([sys.executable, str(DEPLOY / "docker" / "healthcheck.py"), str(path)], env={**keep, **env}, capture_output=True, timeout=60).returncode

        serve = ("/opt/ganworks/bin/python", "/opt/ganworks/bin/ganworks", "generator", "serve", "--runs", "digits")
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert healthcheck(*serve, GANWORKS_GENERATOR_HEALTH_PORT=str(port)) == 1, "a generator without its model is not healthy"
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert healthcheck(*serve, GANWORKS_GENERATOR_HEALTH_PORT=str(port)) == 0
        assert healthcheck("ganworks", "evaluator", "serve", "--port", str(port)) == 0, "without a health port, the API port is asked"
        server.stop(0)
        assert healthcheck(*serve, GANWORKS_GENERATOR_HEALTH_PORT=str(port)) == 1, "a server that does not answer is not healthy"
        assert healthcheck("ray", "start", "--head") == healthcheck("ganworks", "train", "--run", "r") == 0, "nothing to ask"
    finally:
        server.stop(0)


def test_compose_waits_for_a_healthy_generator_before_the_evaluator():
    import yaml

    services = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    assert services["evaluator"]["depends_on"]["generator"]["condition"] == "service_healthy"
    assert services["generator"]["environment"]["GANWORKS_GENERATOR_HEALTH_PORT"]
