"""The kustomize base and overlays render, validate strictly, and wire their parts together correctly."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest

from tests.deploy import artifacts
from tests.deploy.artifacts import named, of_kind, pod_templates, rendered

CUSTOM_KINDS = {"RayJob", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
# The newest Kubernetes the installed kubernetes-validate knows; never older than 1.33.
K8S_VERSION = kubernetes_validate.latest_version()
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.I)


def _validation_problem(obj: dict) -> str | None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # kubernetes-validate wraps jsonschema's error, whose message and path are the useful part.
        cause = exc.__cause__ or exc.__context__ or exc
        where = "/".join(str(p) for p in getattr(cause, "absolute_path", []))
        message = getattr(cause, "message", str(cause).splitlines()[0])
        return f"{obj['kind']}/{obj['metadata']['name']} at {where or '?'}: {message}"
    return None


def _labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _containers(template: dict) -> list[dict]:
    return template["spec"].get("containers", []) + template["spec"].get("initContainers", [])


def test_kubernetes_version_checked_is_recent():
    major, minor, *_ = (int(part) for part in K8S_VERSION.split("."))
    assert (major, minor) >= (1, 33), f"kubernetes-validate only knows {K8S_VERSION}; upgrade it"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_every_builtin_kind_validates_strictly(overlay):
    objects = rendered(overlay)
    builtin = [obj for obj in objects if obj["kind"] not in CUSTOM_KINDS]
    problems = [p for p in map(_validation_problem, builtin) if p]
    assert not problems, f"{overlay} against Kubernetes {K8S_VERSION}:\n" + "\n".join(problems)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "RayJob", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_rayjob_pod_templates_are_valid_pods(overlay):
    """KubeRay copies these templates into Pods, so each must be a valid Pod spec itself."""
    problems = []
    for owner, template in pod_templates(of_kind(rendered(overlay), "RayJob")):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template.get("metadata", {})}, "spec": template["spec"]}
        problem = _validation_problem(pod)
        if problem:
            problems.append(f"{owner}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_rayjob_has_what_kuberay_requires(overlay):
    job = named(rendered(overlay), "RayJob", "ganworks-train")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("ganworks train ") and "--ray-address auto" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "KubeRay needs rayStartParams values as strings"
    assert head["template"]["spec"]["containers"][0]["image"], "the Ray container must be the first one"
    assert cluster["workerGroupSpecs"], "at least one worker group"
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and group["template"]["spec"]["containers"][0]["image"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"worker group {group['groupName']} replicas out of bounds"
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
    workers = sum(group["replicas"] for group in cluster["workerGroupSpecs"])
    asked = int(re.search(r"--num-workers (\d+)", spec["entrypoint"]).group(1))
    assert asked <= workers, f"entrypoint asks for {asked} training workers, the cluster has {workers} worker pods (the head runs none)"
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_ray_auth_mode_is_decided_for_every_ray_pod(overlay):
    """Ray 2.60 turns token auth on for new clusters; every Ray pod and the submitter get the same setting."""
    objects = rendered(overlay)
    config = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objects, "ConfigMap")}
    for owner, template in pod_templates(of_kind(objects, "RayJob")):
        container = template["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            env.update(config.get(source.get("configMapRef", {}).get("name"), {}))
        assert env.get("RAY_AUTH_MODE") == "disabled", f"{owner}: RAY_AUTH_MODE not set"
    policy = named(objects, "NetworkPolicy", "ganworks-trainer")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "trainer"}, "auth is off, so the Ray pods must be fenced"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_services_and_monitors_select_real_pods_and_ports(overlay):
    objects = rendered(overlay)
    templates = pod_templates(objects)
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [t for _, t in templates if all(t["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        assert pods, f"Service {service['metadata']['name']} selects no pod"
        port_names = {p.get("name") for t in pods for c in _containers(t) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {service['metadata']['name']} targets port {port['targetPort']} no pod has"
    for monitor in of_kind(objects, "ServiceMonitor") + of_kind(objects, "PodMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1", monitor["metadata"]["name"]
        assert monitor["spec"]["selector"].get("matchLabels"), f"{monitor['metadata']['name']}: an empty selector would match everything"
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"].get("podMetricsEndpoints")
        assert endpoints and all(e.get("port") for e in endpoints), f"{monitor['metadata']['name']} needs endpoints with a named port"
    for monitor in of_kind(objects, "ServiceMonitor"):
        services = [s for s in of_kind(objects, "Service") if _labels_match(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
        assert len(services) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(services)} Services (want exactly 1)"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    for monitor in of_kind(objects, "PodMonitor"):
        pods = [t for _, t in templates if _labels_match(monitor["spec"]["selector"], t["metadata"].get("labels", {}))]
        ports = {p.get("name"): p["containerPort"] for t in pods for c in _containers(t) for p in c.get("ports", [])}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert ports.get(endpoint["port"]) == 9310, f"PodMonitor {monitor['metadata']['name']} port {endpoint['port']} is not the trainer's 9310"
    names = {m["metadata"]["name"] for m in of_kind(objects, "ServiceMonitor")}
    assert {"ganworks-generator", "ganworks-evaluator"} <= names


def test_generator_probes_use_native_grpc_health():
    deployment = named(rendered("base"), "Deployment", "ganworks-generator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # Liveness must not depend on a model being loaded, or a slow first load would restart the pod forever.
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    assert container["readinessProbe"]["grpc"]["service"] == "ganworks.v1.Generator"


def test_generator_spreads_load_and_scales_on_inflight_requests():
    objects = rendered("base")
    config = named(objects, "ConfigMap", "ganworks-generator")["data"]
    assert float(config["GANWORKS_GENERATOR_MAX_CONNECTION_AGE_SECONDS"]) > 0
    headless = named(objects, "Service", "ganworks-generator-headless")
    assert headless["spec"]["clusterIP"] == "None"
    hpa = named(objects, "HorizontalPodAutoscaler", "ganworks-generator")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ganworks-generator"}
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "ganworks_generator_inflight_requests"
    pdb = named(objects, "PodDisruptionBudget", "ganworks-generator")
    generator_labels = named(objects, "Deployment", "ganworks-generator")["spec"]["template"]["metadata"]["labels"]
    assert _labels_match(pdb["spec"]["selector"], generator_labels)
    # With two or more replicas one always serves; a one-replica dev cluster can still be drained.
    assert pdb["spec"]["maxUnavailable"] == 1 and hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_every_pod_runs_as_non_root(overlay):
    for owner, template in pod_templates(rendered(overlay)):
        pod = template["spec"].get("securityContext", {})
        for container in _containers(template):
            context = {**pod, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True or context.get("runAsUser", 0) != 0, f"{owner}/{container['name']} may run as root"
            assert context.get("allowPrivilegeEscalation") is not True, f"{owner}/{container['name']}"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_images_are_pinned(overlay):
    for owner, template in pod_templates(rendered(overlay)):
        for container in _containers(template):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{owner}: image {image} is not pinned"


def test_base_holds_no_literal_credentials():
    objects = rendered("base")
    assert not of_kind(objects, "Secret"), "the base must reference Secrets, not define them"
    for owner, template in pod_templates(objects):
        for container in _containers(template):
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]) and not env["name"].endswith("_FILE"):
                    assert "valueFrom" in env, f"{owner}: {env['name']} has a literal value"
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            if SECRET_NAME.search(key):
                assert key.endswith("_FILE") and value.startswith("/var/run/secrets/"), f"ConfigMap {config['metadata']['name']}: {key} looks like a credential"
    text = json.dumps(objects)
    assert "AKIA" not in text and "BEGIN PRIVATE KEY" not in text


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_dashboards_ship_as_configmaps_from_the_same_json(overlay):
    objects = rendered(overlay)
    shipped = {}
    for config in of_kind(objects, "ConfigMap"):
        if config["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            shipped.update(config["data"])
    files = {path.name: path.read_text() for path in artifacts.DASHBOARDS.glob("*.json")}
    assert shipped == files


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_prometheusrule_carries_the_rules_file(overlay):
    rule = named(rendered(overlay), "PrometheusRule", "ganworks")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == artifacts.rule_groups()


def test_dev_overlay_runs_its_own_minio_with_a_volume_and_a_bucket():
    objects = rendered("dev")
    minio = named(objects, "StatefulSet", "minio")
    assert minio["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    job = named(objects, "Job", "minio-create-bucket")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    store = named(objects, "ConfigMap", "ganworks-store")["data"]
    bucket = store["GANWORKS_STORE"].removeprefix("s3://").split("/")[0]
    assert f"mc mb --ignore-existing dev/{bucket}" in script
    service = named(objects, "Service", "minio")
    assert store["GANWORKS_S3_ENDPOINT"] == f"http://minio:{service['spec']['ports'][0]['port']}"
    assert named(objects, "Secret", "ganworks-s3")
    assert named(objects, "HorizontalPodAutoscaler", "ganworks-generator")["spec"]["minReplicas"] == 1


def test_gpu_overlay_asks_for_gpus_on_gpu_nodes_and_uses_an_external_store():
    objects = rendered("gpu")
    gpu_pods = [(o, t) for o, t in pod_templates(objects) if "submitter" not in o and "head" not in o]
    assert len(gpu_pods) == 3, [o for o, _ in gpu_pods]
    for owner, template in gpu_pods:
        container = template["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", owner
        assert template["spec"]["nodeSelector"], owner
        assert any(t["key"] == "nvidia.com/gpu" for t in template["spec"]["tolerations"]), owner
        assert container["image"].endswith("-cuda"), owner
    assert "--use-gpu" in named(objects, "RayJob", "ganworks-train")["spec"]["entrypoint"]
    assert not of_kind(objects, "Secret") and not of_kind(objects, "StatefulSet"), "gpu uses an external store and an existing Secret"
    assert named(objects, "ConfigMap", "ganworks-store")["data"]["GANWORKS_S3_SECURE"] == "true"


def _env(objects, template: dict) -> dict[str, str]:
    """The environment of a pod template's first container, with ConfigMap references resolved."""
    config = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objects, "ConfigMap")}
    container = template["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config.get(source.get("configMapRef", {}).get("name"), {}))
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        env[item["name"]] = config[ref["name"]][ref["key"]] if ref else item.get("value", "")
    return env


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_the_trainer_generator_and_evaluator_work_on_the_same_run(overlay):
    objects = rendered(overlay)
    templates = dict(pod_templates(objects))
    job = named(objects, "RayJob", "ganworks-train")
    trained = _env(objects, templates["RayJob/ganworks-train head"]).get("GANWORKS_TRAINER_RUN")  # the driver runs on the head
    flag = re.search(r"--run (\S+)", job["spec"]["entrypoint"])
    trained = flag.group(1) if flag else trained
    served = _env(objects, templates["Deployment/ganworks-generator"]).get("GANWORKS_GENERATOR_RUNS")
    evaluated = _env(objects, templates["Deployment/ganworks-evaluator"]).get("GANWORKS_EVALUATOR_RUNS")
    assert trained and trained == served == evaluated, f"{overlay}: trains {trained}, serves {served}, evaluates {evaluated}"
    assert named(objects, "ConfigMap", "ganworks-run")["data"]["run"] == trained
    if overlay == "gpu":
        assert trained == "faces" and "faces" in job["spec"]["entrypoint"]


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_the_image_runs_the_ray_version_the_rayjob_declares(overlay):
    dockerfile = (artifacts.DEPLOY / "docker" / "Dockerfile").read_text()
    pinned = re.search(r"ARG RAY_VERSION=(\S+)", dockerfile)
    assert pinned and '"ray[default]==${RAY_VERSION}"' in dockerfile, "the image must pin ray"
    assert named(rendered(overlay), "RayJob", "ganworks-train")["spec"]["rayClusterSpec"]["rayVersion"] == pinned.group(1)
    # KubeRay 1.1-1.5 probe Ray pods with wget, which the slim image lacks: the docs must say which KubeRay works.
    assert "KubeRay >= 1.6" in (artifacts.DEPLOY / "README.md").read_text()


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_the_trainer_podmonitor_scrapes_only_training_worker_pods(overlay):
    objects = rendered(overlay)
    monitor = named(objects, "PodMonitor", "ganworks-trainer")
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    scraped = [owner for owner, t in pod_templates(objects) if _labels_match(monitor["spec"]["selector"], t["metadata"].get("labels", {}))
               and any(p.get("name") == port for c in _containers(t) for p in c.get("ports", []))]
    # Only pods that run a training worker serve 9310 (rank 0 the training metrics, the others ganworks_trainer_worker_up).
    assert scraped and all(" workers " in owner for owner in scraped), scraped


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_every_ganworks_pod_is_locked_down(overlay):
    for owner, template in pod_templates(rendered(overlay)):
        if not owner.startswith(("RayJob/", "Deployment/ganworks-")):
            continue
        spec = template["spec"]
        assert spec.get("automountServiceAccountToken") is False, f"{owner} mounts the service-account token"
        assert spec.get("securityContext", {}).get("seccompProfile") == {"type": "RuntimeDefault"}, f"{owner} has no seccomp profile"
        for container in spec["containers"]:
            context = container.get("securityContext", {})
            assert context.get("readOnlyRootFilesystem") is True, f"{owner}/{container['name']}: writable root filesystem"
            assert context.get("allowPrivilegeEscalation") is False and context.get("capabilities", {}).get("drop") == ["ALL"], f"{owner}/{container['name']}"
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{owner}/{container['name']}: a read-only root needs a writable /tmp"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_generator_and_evaluator_take_grpc_only_from_their_namespace_and_labelled_clients(overlay):
    objects = rendered(overlay)
    for name, grpc_port, metrics_port in (("ganworks-generator", 50051, 9311), ("ganworks-evaluator", 50052, 9312)):
        policy = named(objects, "NetworkPolicy", name)
        pods = named(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(policy["spec"]["podSelector"], pods) and policy["spec"]["policyTypes"] == ["Ingress"]
        rules = policy["spec"]["ingress"]
        grpc_rules = [r for r in rules if any(p["port"] == grpc_port for p in r.get("ports", []))]
        assert grpc_rules and all(r.get("from") for r in grpc_rules), f"{name}: gRPC open to every source"
        assert any(not r.get("from") and [p["port"] for p in r["ports"]] == [metrics_port] for r in rules), f"{name}: /metrics must stay scrapeable"


@pytest.mark.parametrize("overlay", artifacts.OVERLAYS)
def test_no_deployment_sets_replicas_that_an_autoscaler_owns(overlay):
    objects = rendered(overlay)
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = named(objects, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], f"Deployment {target['metadata']['name']} sets replicas although HPA {hpa['metadata']['name']} owns them"
