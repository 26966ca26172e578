"""The probes the manifests declare pass against servers started exactly as the manifests start them, TLS and tokens on.

The generator and the evaluator run as `ganworks … serve` processes with the environment their Deployments give
them (base + the auth and tls components, rendered by kubectl kustomize) and the files their volumes mount (the
Secrets' keys, written under a temporary root). Only what cannot be the cluster's is changed: ports become free
ports, the store a local folder, the generator's Service name `localhost` (the test certificate's name).
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganworks.api import evaluator_pb2, evaluator_pb2_grpc
from ganworks.generator_client import GeneratorClient
from ganworks.store import open_store
from tests.deploy.artifacts import kustomize_on_base, named, of_kind
from tests.generator.conftest import publish
from tests.tlscerts import self_signed_certificate
from tests.waiting import wait_until

SECRET_VALUES = {"ganworks-generator-token": {"token": "generator-token-of-the-test"}, "ganworks-evaluator-token": {"token": "evaluator-token-of-the-test"},
                 "ganworks-s3-generator": {"access-key": "unused", "secret-key": "unused-secret"}, "ganworks-s3-evaluator": {"access-key": "unused", "secret-key": "unused-secret"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pod:
    """One Deployment's first container: its environment and its mounted files, made real under `root`."""

    def __init__(self, objects, name: str, root: pathlib.Path, secrets: dict[str, dict[str, bytes]]):
        template = named(objects, "Deployment", name)["spec"]["template"]
        self.container = template["spec"]["containers"][0]
        config = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objects, "ConfigMap")}
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            env.update(config[source["configMapRef"]["name"]])
        for item in self.container.get("env", []):
            ref = item.get("valueFrom", {}).get("configMapKeyRef")
            env[item["name"]] = config[ref["name"]][ref["key"]] if ref else item["value"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        self.mounts: dict[str, pathlib.Path] = {}
        for mount in self.container.get("volumeMounts", []):
            where = root / name / mount["mountPath"].lstrip("/")
            where.mkdir(parents=True, exist_ok=True)
            secret = volumes[mount["name"]].get("secret")
            if secret:
                for key, value in secrets[secret["secretName"]].items():
                    (where / key).write_bytes(value)
            self.mounts[mount["mountPath"]] = where
        # A path inside a mount points at the same file under the root.
        for key, value in env.items():
            for mount_path, where in self.mounts.items():
                if value.startswith(mount_path + "/"):
                    env[key] = str(where / value[len(mount_path) + 1:])
        self.env = env

    def probe(self, kind: str) -> dict:
        return self.container[kind]["grpc"]

    def port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)


def _serve(component: str, env: dict[str, str], log: pathlib.Path) -> subprocess.Popen:
    exe = pathlib.Path(sys.executable).parent / "ganworks"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ganworks.cli"]
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV", "LANG") if k in os.environ}
    with log.open("wb") as out:
        return subprocess.Popen([*cmd, component, "serve"], env={**keep, **env}, stdout=out, stderr=subprocess.STDOUT)


def _health(port: int, service: str) -> str:
    """What the kubelet's gRPC probe sees: a plaintext grpc.health.v1 Check, no token."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    except grpc.RpcError as exc:
        return exc.code().name


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A generator and an evaluator, started as the manifests (base + auth + tls) start them."""
    root = tmp_path_factory.mktemp("pods")
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    secrets = {name: {k: v.encode() for k, v in values.items()} for name, values in SECRET_VALUES.items()}
    secrets["ganworks-tls"] = {"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes(), "ca.crt": cert.read_bytes()}
    objects = kustomize_on_base(["auth", "tls"])
    generator = Pod(objects, "ganworks-generator", root, secrets)
    evaluator = Pod(objects, "ganworks-evaluator", root, secrets)

    store_url = (root / "store").as_uri()
    publish(open_store(store_url), generator.env["GANWORKS_GENERATOR_RUNS"], 1)
    ports = {}
    for pod, prefix in ((generator, "GANWORKS_GENERATOR_"), (evaluator, "GANWORKS_EVALUATOR_")):
        for what in ("PORT", "METRICS_PORT", "HEALTH_PORT"):
            ports[prefix + what] = _free_port()
            pod.env[prefix + what] = str(ports[prefix + what])
        pod.env["GANWORKS_STORE"] = store_url
    # The Service name of the generator, as the evaluator dials it, becomes the certificate's name on loopback.
    service, _, service_port = evaluator.env["GANWORKS_EVALUATOR_GENERATOR"].rpartition(":")
    assert (service, int(service_port)) == ("ganworks-generator", generator.port("grpc"))
    evaluator.env["GANWORKS_EVALUATOR_GENERATOR"] = f"localhost:{ports['GANWORKS_GENERATOR_PORT']}"

    processes = [_serve("generator", generator.env, root / "generator.log"), _serve("evaluator", evaluator.env, root / "evaluator.log")]
    try:
        yield {"generator": generator, "evaluator": evaluator, "ports": ports, "cert": cert.read_bytes(), "root": root, "secrets": SECRET_VALUES}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _logs(cluster) -> str:
    return "\n".join(f"--- {name}.log\n{(cluster['root'] / f'{name}.log').read_text()[-3000:]}" for name in ("generator", "evaluator"))


@pytest.mark.parametrize("server", ["generator", "evaluator"])
def test_the_manifests_probes_pass_over_plaintext_health_with_tls_and_tokens_on(cluster, server):
    pod, prefix = cluster[server], f"GANWORKS_{server.upper()}_"
    assert pod.env[prefix + "TLS_CERT"] and pod.env[prefix + "AUTH_TOKEN_FILE"], "the rendered manifests must turn TLS and the token on"
    health_port = pod.port("health")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = pod.probe(kind)
        # The probe goes to the port the server was told to serve health on (the test moved it to a free one).
        assert probe["port"] == health_port and health_port != pod.port("grpc"), f"{server} {kind} is not on the health port"
        port = cluster["ports"][prefix + "HEALTH_PORT"]
        wait_until(lambda: _health(port, probe.get("service", "")) == "SERVING", 120, f"{server} {kind} (service {probe.get('service', '')!r}) to pass\n{_logs(cluster)}", interval=0.5)


def test_the_generator_api_refuses_plaintext_and_calls_without_the_token(cluster):
    ports, token = cluster["ports"], cluster["secrets"]["ganworks-generator-token"]["token"]
    run = cluster["generator"].env["GANWORKS_GENERATOR_RUNS"]
    wait_until(lambda: _health(ports["GANWORKS_GENERATOR_HEALTH_PORT"], "ganworks.v1.Generator") == "SERVING", 120, f"the generator to be ready\n{_logs(cluster)}", interval=0.5)
    address = f"localhost:{ports['GANWORKS_GENERATOR_PORT']}"
    with GeneratorClient(address, token=token, retries=0, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as err:
        plaintext.generate(run, 1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with GeneratorClient(address, root_certificates=cluster["cert"], retries=0) as no_token, pytest.raises(grpc.RpcError) as err:
        no_token.generate(run, 1)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with GeneratorClient(address, token=token, root_certificates=cluster["cert"], retries=0) as client:
        assert client.generate(run, 2, seed=0).images.shape[0] == 2
    # The health port carries health only: the API is not there, with or without a token.
    with GeneratorClient(f"127.0.0.1:{ports['GANWORKS_GENERATOR_HEALTH_PORT']}", token=token, retries=0, timeout=5) as health_only, pytest.raises(grpc.RpcError) as err:
        health_only.generate(run, 1)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_evaluator_api_refuses_plaintext_and_calls_without_the_token(cluster):
    ports, token = cluster["ports"], cluster["secrets"]["ganworks-evaluator-token"]["token"]
    wait_until(lambda: _health(ports["GANWORKS_EVALUATOR_HEALTH_PORT"], "") == "SERVING", 120, f"the evaluator to serve\n{_logs(cluster)}", interval=0.5)
    address = f"localhost:{ports['GANWORKS_EVALUATOR_PORT']}"
    request = evaluator_pb2.ListEvaluationsRequest()
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        evaluator_pb2_grpc.EvaluatorStub(channel).ListEvaluations(request, timeout=5, metadata=[("authorization", f"Bearer {token}")])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    credentials = grpc.ssl_channel_credentials(root_certificates=cluster["cert"])
    with grpc.secure_channel(address, credentials) as channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListEvaluations(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.ListEvaluations(request, timeout=5, metadata=[("authorization", f"Bearer {token}")])
    with grpc.insecure_channel(f"127.0.0.1:{ports['GANWORKS_EVALUATOR_HEALTH_PORT']}") as channel, pytest.raises(grpc.RpcError) as err:
        evaluator_pb2_grpc.EvaluatorStub(channel).ListEvaluations(request, timeout=5, metadata=[("authorization", f"Bearer {token}")])
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("server", ["generator", "evaluator"])
def test_metrics_answer_only_on_the_metrics_path(cluster, server):
    port = cluster["ports"][f"GANWORKS_{server.upper()}_METRICS_PORT"]
    url = f"http://127.0.0.1:{port}"
    page = wait_until(lambda: _get(url + "/metrics"), 120, f"{server} /metrics\n{_logs(cluster)}", interval=0.5)
    assert f"ganworks_{server}_" in page
    for path in ("/", "/healthz", "/metricsx", "/metrics/extra"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=5)
        assert err.value.code == 404, path


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None
