"""The kustomize base, its components and the overlays render, validate strictly, and wire their parts together correctly."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.deploy import artifacts
from tests.deploy.artifacts import named, of_kind, pod_templates, rendered

CUSTOM_KINDS = {"RayJob", "ServiceMonitor", "PodMonitor", "PrometheusRule", "Certificate"}
# The newest Kubernetes the installed kubernetes-validate knows; never older than 1.33.
K8S_VERSION = kubernetes_validate.latest_version()
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.I)
ROLES = ("trainer", "generator", "evaluator", "rollout")


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


def _with(*kinds: str) -> list[str]:
    """The renderings that hold every one of these kinds."""
    return [name for name in artifacts.RENDERINGS if set(kinds) <= {obj["kind"] for obj in rendered(name)}]


def test_kubernetes_version_checked_is_recent():
    major, minor, *_ = (int(part) for part in K8S_VERSION.split("."))
    assert (major, minor) >= (1, 33), f"kubernetes-validate only knows {K8S_VERSION}; upgrade it"


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_every_builtin_kind_validates_strictly(overlay):
    objects = rendered(overlay)
    builtin = [obj for obj in objects if obj["kind"] not in CUSTOM_KINDS]
    problems = [p for p in map(_validation_problem, builtin) if p]
    assert not problems, f"{overlay} against Kubernetes {K8S_VERSION}:\n" + "\n".join(problems)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "NetworkPolicy", "CronJob"} <= kinds


CRDS = pathlib.Path(__file__).parent / "crds"


def _structural(schema):
    """A CRD's openAPIV3Schema as a JSON Schema that, like the API server's pruning, knows no field it does not declare."""
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _structural(value) if key in ("items", "additionalProperties", "not") or key.endswith("Of") else value for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: _structural(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _crd_problems(obj: dict) -> list[str]:
    import jsonschema

    crd = json.loads((CRDS / f"{obj['kind']}.json").read_text())
    assert obj["apiVersion"] == f"{crd['group']}/{crd['version']}", f"{obj['kind']} {obj['apiVersion']}: the CRD serves {crd['group']}/{crd['version']}"
    validator = jsonschema.Draft7Validator(_structural(crd["schema"]))
    return [f"{obj['kind']}/{obj['metadata']['name']} at {'/'.join(map(str, e.absolute_path)) or '?'}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_every_custom_resource_validates_against_its_crd_schema(overlay):
    """Each custom resource against its CRD's own schema (tests/deploy/crds, from the released CRDs), unknown fields refused."""
    custom = [obj for obj in rendered(overlay) if obj["kind"] in CUSTOM_KINDS]
    problems = [p for obj in custom for p in _crd_problems(obj)]
    assert not problems, "\n".join(problems)


def test_the_crd_check_refuses_an_unknown_field_and_a_wrong_type():
    job = json.loads(json.dumps(named(rendered("base+trainer"), "RayJob", "ganworks-train")))
    job["spec"]["ttlSecondsAfterFinish"] = 60
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "2"
    problems = " ".join(_crd_problems(job))
    assert "ttlSecondsAfterFinish" in problems and "'2' is not of type 'integer'" in problems


def test_the_base_alone_needs_no_custom_resource_definition():
    """The base applies on a bare cluster: nothing in it needs KubeRay, the Prometheus operator or cert-manager."""
    kinds = {obj["kind"] for obj in rendered("base")}
    assert not kinds & CUSTOM_KINDS, sorted(kinds & CUSTOM_KINDS)
    assert all(obj["apiVersion"].split("/")[0] in ("v1", "apps", "batch", "autoscaling", "policy", "networking.k8s.io") for obj in rendered("base"))


@pytest.mark.parametrize("component", artifacts.COMPONENTS)
def test_each_component_adds_only_its_own_custom_kinds(component):
    needs = {"trainer": {"RayJob"}, "monitoring": {"ServiceMonitor", "PodMonitor", "PrometheusRule"}, "tls-cert-manager": {"Certificate"}}.get(component, set())
    kinds = {obj["kind"] for obj in rendered(f"base+{component}")}
    assert kinds & CUSTOM_KINDS == needs


# The tls-cert-manager component only makes the Secret; the tls component mounts it.
@pytest.mark.parametrize("overlay", [r for r in _with("Certificate") if r != "base+tls-cert-manager"])
def test_the_certificate_makes_the_secret_the_servers_mount(overlay):
    objects = rendered(overlay)
    certificate = named(objects, "Certificate", "ganworks-tls")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    spec = certificate["spec"]
    assert spec["issuerRef"]["name"] and spec["issuerRef"]["kind"] in ("Issuer", "ClusterIssuer")
    assert {"ganworks-generator", "ganworks-evaluator"} <= set(spec["dnsNames"])
    assert set(spec) <= {"secretName", "duration", "renewBefore", "privateKey", "usages", "dnsNames", "issuerRef", "commonName", "ipAddresses", "uris", "subject", "secretTemplate"}
    for name in ("ganworks-generator", "ganworks-evaluator"):
        volumes = named(objects, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("secret", {}).get("secretName") == spec["secretName"] for v in volumes), f"{name} does not mount {spec['secretName']}"


@pytest.mark.parametrize("overlay", _with("RayJob"))
def test_rayjob_pod_templates_are_valid_pods(overlay):
    """KubeRay copies these templates into Pods, so each must be a valid Pod spec itself."""
    problems = []
    for owner, template in pod_templates(of_kind(rendered(overlay), "RayJob")):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template.get("metadata", {})}, "spec": template["spec"]}
        problem = _validation_problem(pod)
        if problem:
            problems.append(f"{owner}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", _with("RayJob"))
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


@pytest.mark.parametrize("overlay", _with("RayJob"))
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


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
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
        if not pods:
            continue  # the trainer's PodMonitor without the trainer component: nothing to scrape, nothing down
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert ports.get(endpoint["port"]) == 9310, f"PodMonitor {monitor['metadata']['name']} port {endpoint['port']} is not the trainer's 9310"
    if of_kind(objects, "ServiceMonitor"):
        names = {m["metadata"]["name"] for m in of_kind(objects, "ServiceMonitor")}
        assert {"ganworks-generator", "ganworks-evaluator"} <= names


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
@pytest.mark.parametrize("server", ["generator", "evaluator"])
def test_probes_use_native_grpc_health_on_the_plaintext_health_port(overlay, server):
    objects = rendered(overlay)
    template = named(objects, "Deployment", f"ganworks-{server}")["spec"]["template"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _env(objects, template)
    # The API port may speak TLS and want a token; the kubelet's gRPC probes speak plaintext without one.
    assert ports["health"] != ports["grpc"] and env[f"GANWORKS_{server.upper()}_HEALTH_PORT"] == str(ports["health"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"], probe
    if server == "generator":
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


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_every_pod_runs_as_non_root(overlay):
    for owner, template in pod_templates(rendered(overlay)):
        pod = template["spec"].get("securityContext", {})
        for container in _containers(template):
            context = {**pod, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True or context.get("runAsUser", 0) != 0, f"{owner}/{container['name']} may run as root"
            assert context.get("allowPrivilegeEscalation") is not True, f"{owner}/{container['name']}"


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
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


@pytest.mark.parametrize("overlay", _with("PrometheusRule"))
def test_dashboards_ship_as_configmaps_from_the_same_json(overlay):
    objects = rendered(overlay)
    shipped = {}
    for config in of_kind(objects, "ConfigMap"):
        if config["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            shipped.update(config["data"])
    files = {path.name: path.read_text() for path in artifacts.DASHBOARDS.glob("*.json")}
    assert shipped == files


@pytest.mark.parametrize("overlay", _with("PrometheusRule"))
def test_prometheusrule_carries_the_rules_file(overlay):
    rule = named(rendered(overlay), "PrometheusRule", "ganworks")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == artifacts.rule_groups()


@pytest.mark.parametrize("overlay", _with("StatefulSet"))
def test_the_minio_component_runs_its_own_minio_with_a_volume_a_bucket_and_a_user_per_role(overlay):
    objects = rendered(overlay)
    minio = named(objects, "StatefulSet", "minio")
    assert minio["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    job = named(objects, "Job", "minio-setup")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    store = named(objects, "ConfigMap", "ganworks-store")["data"]
    bucket, _, prefix = store["GANWORKS_STORE"].removeprefix("s3://").partition("/")
    assert f"mc mb --ignore-existing dev/{bucket}" in script
    service = named(objects, "Service", "minio")
    assert store["GANWORKS_S3_ENDPOINT"] == f"http://minio:{service['spec']['ports'][0]['port']}"
    policies = named(objects, "ConfigMap", "minio-policies")["data"]
    mounted = {v["secret"]["secretName"] for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    for role in ROLES:
        assert f"{role}.json" in policies and named(objects, "Secret", f"ganworks-s3-{role}")["metadata"]["name"] in mounted, role
        for statement in json.loads(policies[f"{role}.json"])["Statement"]:
            for resource in statement["Resource"]:
                assert resource == f"arn:aws:s3:::{bucket}" or resource.startswith(f"arn:aws:s3:::{bucket}/{prefix}/"), f"{role}: {resource} is outside the store"
    assert "root" not in " ".join(str(v) for v in mounted), "the setup Job hands no pod the root credentials"


def test_the_dev_overlay_runs_one_small_replica():
    assert named(rendered("dev"), "HorizontalPodAutoscaler", "ganworks-generator")["spec"]["minReplicas"] == 1


def test_gpu_overlay_asks_for_gpus_on_gpu_nodes_and_uses_an_external_store():
    objects = rendered("gpu")
    gpu_pods = [(o, t) for o, t in pod_templates(objects) if "submitter" not in o and "head" not in o and not o.startswith("CronJob/")]
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


@pytest.mark.parametrize("overlay", ["gpu", "my-cluster", "base+gpu"])
def test_the_gpu_evaluator_evaluates_unlabelled_runs_on_day_0_with_weights_it_imports_first(overlay):
    objects = rendered(overlay)
    template = named(objects, "Deployment", "ganworks-evaluator")["spec"]["template"]
    env = _env(objects, template)
    extractor = env["GANWORKS_EVALUATOR_DEFAULT_EXTRACTOR"]
    assert extractor == env["GANWORKS_EVALUATOR_CONTINUOUS_INCEPTION_EXTRACTOR"] == "inception-v3-tf"
    init = template["spec"]["initContainers"]
    assert [c["args"] for c in init] == [["evaluator", "import-inception"]]
    main = template["spec"]["containers"][0]
    assert init[0]["image"] == main["image"], "the import runs the image the evaluator runs (it holds the fid extra)"
    assert {m["mountPath"] for m in init[0]["volumeMounts"]} >= {"/var/run/secrets/ganworks/s3", "/tmp"}
    assert [s["configMapRef"]["name"] for s in init[0]["envFrom"]] == [s["configMapRef"]["name"] for s in main["envFrom"] if "ganworks-store" in s["configMapRef"]["name"]]


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


@pytest.mark.parametrize("overlay", _with("RayJob"))
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


@pytest.mark.parametrize("overlay", _with("RayJob"))
def test_the_image_runs_the_ray_version_the_rayjob_declares(overlay):
    dockerfile = (artifacts.DEPLOY / "docker" / "Dockerfile").read_text()
    pinned = re.search(r"ARG RAY_VERSION=(\S+)", dockerfile)
    assert pinned, "the image must pin ray"
    assert named(rendered(overlay), "RayJob", "ganworks-train")["spec"]["rayClusterSpec"]["rayVersion"] == pinned.group(1)


@pytest.mark.parametrize("overlay", _with("RayJob"))
def test_every_ray_container_declares_http_probes_so_kuberay_injects_none(overlay):
    """KubeRay 1.1-1.5 add exec probes running wget (absent from the image) to a Ray container without probes."""
    job = named(rendered(overlay), "RayJob", "ganworks-train")
    for owner, template in pod_templates([job]):
        if "submitter" in owner:
            continue
        container = template["spec"]["containers"][0]
        ports = {p["containerPort"] for p in container["ports"]}
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            assert probe and "httpGet" in probe, f"{owner}: no declared {kind}"
            assert probe["httpGet"]["path"] in ("/api/gcs_healthz", "/api/local_raylet_healthz") and probe["httpGet"]["port"] in ports, f"{owner} {kind}"


@pytest.mark.parametrize("overlay", _with("RayJob"))
def test_rayjob_places_one_training_worker_per_worker_pod_with_shm_above_the_object_store(overlay):
    spec = named(rendered(overlay), "RayJob", "ganworks-train")["spec"]
    entrypoint = spec["entrypoint"]
    per_worker = int(re.search(r"--cpus-per-worker (\d+)", entrypoint).group(1))
    workers = int(re.search(r"--num-workers (\d+)", entrypoint).group(1))
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "no training worker on the head"
    pods = 0
    for group in cluster["workerGroupSpecs"]:
        offered = int(group["rayStartParams"]["num-cpus"])
        # Ray packs workers by CPUs: a pod that offers fewer than two workers' worth holds exactly one.
        assert per_worker <= offered < 2 * per_worker, f"group {group['groupName']} offers {offered} CPUs for workers of {per_worker}"
        pods += group["replicas"]
        container = group["template"]["spec"]["containers"][0]
        assert int(float(container["resources"]["limits"]["cpu"])) >= offered
    assert workers == pods, f"{workers} training workers on {pods} worker pods: one pod would serve no :9310"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        shm = next(v for v in group["template"]["spec"]["volumes"] if v["name"] == "shm")["emptyDir"]
        assert shm["medium"] == "Memory" and _bytes(shm["sizeLimit"]) > int(group["rayStartParams"]["object-store-memory"])
    # kube-prometheus-stack's TargetDown waits 10 minutes: the finished cluster's pods must outlive it.
    assert spec["ttlSecondsAfterFinished"] > 900


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_every_container_has_cpu_memory_and_disk_limits_and_every_empty_dir_a_size(overlay):
    for owner, template in pod_templates(rendered(overlay)):
        for container in _containers(template):
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory", "ephemeral-storage"} <= set(limits), f"{owner}/{container['name']} limits only {sorted(limits)}"
        for volume in template["spec"].get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{owner}: emptyDir {volume['name']} has no sizeLimit"


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_configmaps_are_named_by_their_content_so_a_changed_setting_rolls_the_pods(overlay):
    objects = rendered(overlay)
    referenced = set()
    for _, template in pod_templates(objects):
        for container in _containers(template):
            referenced |= {s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s}
            referenced |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in container.get("env", []) if "configMapKeyRef" in e.get("valueFrom", {})}
    names = {cm["metadata"]["name"] for cm in of_kind(objects, "ConfigMap")}
    assert referenced and referenced <= names, f"pods name ConfigMaps that are not rendered: {sorted(referenced - names)}"
    assert all(re.search(r"-[a-z0-9]{10}$", name) for name in referenced), f"settings without a content hash: {sorted(referenced)}"


def test_changing_a_setting_changes_the_pod_templates_that_read_it():
    before = artifacts.kustomize_on_base(["trainer"])
    after = artifacts.kustomize_on_base(["trainer"], {"configMapGenerator": [{"name": "ganworks-generator", "behavior": "merge", "literals": ["GANWORKS_GENERATOR_MAX_BATCH_SIZE=32"]}]})

    def template(objects, kind, name):
        obj = named(objects, kind, name)
        return obj["spec"]["template"] if kind == "Deployment" else obj["spec"]

    assert template(before, "Deployment", "ganworks-generator") != template(after, "Deployment", "ganworks-generator")
    assert template(before, "Deployment", "ganworks-evaluator") == template(after, "Deployment", "ganworks-evaluator")
    moved = artifacts.kustomize_on_base(["trainer"], {"configMapGenerator": [{"name": "ganworks-store", "behavior": "merge", "literals": ["GANWORKS_S3_REGION=eu-west-1"]}]})
    for kind, name in (("Deployment", "ganworks-generator"), ("Deployment", "ganworks-evaluator"), ("RayJob", "ganworks-train")):
        assert template(before, kind, name) != template(moved, kind, name), f"{kind}/{name} does not see the new store setting"


@pytest.mark.parametrize("overlay", _with("PodMonitor", "RayJob"))
def test_the_trainer_podmonitor_scrapes_only_training_worker_pods(overlay):
    objects = rendered(overlay)
    monitor = named(objects, "PodMonitor", "ganworks-trainer")
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    scraped = [owner for owner, t in pod_templates(objects) if _labels_match(monitor["spec"]["selector"], t["metadata"].get("labels", {}))
               and any(p.get("name") == port for c in _containers(t) for p in c.get("ports", []))]
    # Only pods that run a training worker serve 9310 (rank 0 the training metrics, the others ganworks_trainer_worker_up).
    assert scraped and all(" workers " in owner for owner in scraped), scraped


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
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


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
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


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_no_deployment_sets_replicas_that_an_autoscaler_owns(overlay):
    objects = rendered(overlay)
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = named(objects, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], f"Deployment {target['metadata']['name']} sets replicas although HPA {hpa['metadata']['name']} owns them"


# -- least privilege, NetworkPolicies, auth, rollout ------------------------------------------------------------


def _store_secret(template: dict) -> str:
    """The Secret mounted where the store's credential files are read."""
    mounts = {m["name"] for c in _containers(template) for m in c.get("volumeMounts", []) if m["mountPath"] == "/var/run/secrets/ganworks/s3"}
    secrets = [v["secret"]["secretName"] for v in template["spec"].get("volumes", []) if v["name"] in mounts and "secret" in v]
    assert len(secrets) == 1, secrets
    return re.sub(r"-[a-z0-9]{10}$", "", secrets[0])


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_every_workload_reads_the_store_with_its_own_role_credentials(overlay):
    """One read-write key for every pod would let the internet-facing generator rewrite snapshots."""
    roles = {"Deployment/ganworks-generator": "generator", "Deployment/ganworks-evaluator": "evaluator", "CronJob/ganworks-rollout": "rollout"}
    for owner, template in pod_templates(rendered(overlay)):
        role = "trainer" if owner.startswith("RayJob/") and "submitter" not in owner else roles.get(owner)
        if role:
            assert _store_secret(template) == f"ganworks-s3-{role}", owner


def test_minio_policies_let_only_the_trainer_write_snapshots():
    folder = artifacts.K8S / "components" / "minio" / "policies"

    def written(role: str) -> list[str]:
        document = json.loads((folder / f"{role}.json").read_text())
        return [r for st in document["Statement"] if any(a in ("s3:PutObject", "s3:DeleteObject", "s3:*") for a in st["Action"]) for r in st["Resource"]]

    assert written("generator") == []
    assert written("rollout") == ["arn:aws:s3:::ganworks/dev/runs/*/rollout.json"]
    assert all(re.search(r"/(evals/\*|tb/events\.out\.tfevents\.\?{9}\.\*|reference-stats/\*|extractors/\*)$", r) for r in written("evaluator")), written("evaluator")
    assert written("trainer") == ["arn:aws:s3:::ganworks/dev/runs/*"]


@pytest.mark.parametrize("overlay", artifacts.RENDERINGS)
def test_the_namespace_denies_by_default_and_every_pod_has_a_policy_that_lets_its_callers_in(overlay):
    objects = rendered(overlay)
    policies = of_kind(objects, "NetworkPolicy")
    deny = named(objects, "NetworkPolicy", "ganworks-default-deny")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for owner, template in pod_templates(objects):
        if owner.startswith(("Job/", "CronJob/")) or "submitter" in owner:
            continue  # nothing calls a Job
        labels = template["metadata"].get("labels", {})
        assert any(p["spec"]["podSelector"] and _labels_match(p["spec"]["podSelector"], labels) for p in policies), f"{owner}: no policy admits its callers"


@pytest.mark.parametrize("overlay", _with("RayJob"))
def test_ray_ports_take_the_operator_only_from_its_namespace_named_by_name(overlay):
    policy = named(rendered(overlay), "NetworkPolicy", "ganworks-trainer")["spec"]
    for rule in policy["ingress"]:
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer:
                # kubernetes.io/metadata.name is set by the API server: nobody can give another namespace that name.
                assert set(peer["namespaceSelector"].get("matchLabels", {})) == {"kubernetes.io/metadata.name"}, peer
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kuberay-operator"}
                assert [p["port"] for p in rule["ports"]] == [8265]
            else:
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "trainer"}, peer
        if not rule.get("from"):
            assert {p["port"] for p in rule["ports"]} <= {9310, 8080}, "only metrics are open to every source"


@pytest.mark.parametrize("overlay", [r for r in artifacts.RENDERINGS if "auth" in r.split("+") or r in ("dev", "gpu", "my-cluster")])
def test_auth_mounts_each_token_into_its_server_and_every_client_that_calls_it(overlay):
    objects = rendered(overlay)
    tokens = {}
    for server in ("generator", "evaluator"):
        template = named(objects, "Deployment", f"ganworks-{server}")["spec"]["template"]
        tokens[(server, server)] = _mounted_secret(template, _env(objects, template)[f"GANWORKS_{server.upper()}_AUTH_TOKEN_FILE"])
    evaluator = named(objects, "Deployment", "ganworks-evaluator")["spec"]["template"]
    tokens[("evaluator", "generator")] = _mounted_secret(evaluator, _env(objects, evaluator)["GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN_FILE"])
    assert tokens[("evaluator", "generator")] == tokens[("generator", "generator")], "the evaluator must send the generator's own token"
    assert tokens[("generator", "generator")] != tokens[("evaluator", "evaluator")], "each server has its own token"


def _mounted_secret(template: dict, path: str) -> str:
    """The Secret (and key) a pod's file path reads, from the container's mounts and the pod's volumes."""
    container = template["spec"]["containers"][0]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"] + "/"):
            return volumes[mount["name"]]["secret"]["secretName"] + ":" + path[len(mount["mountPath"]) + 1:]
    raise AssertionError(f"{path} is in no mounted volume")


@pytest.mark.parametrize("overlay", ["gpu", "my-cluster", "base+tls"])
def test_tls_serves_the_api_from_the_mounted_secret_and_the_evaluator_trusts_its_ca(overlay):
    objects = rendered(overlay)
    for server in ("generator", "evaluator"):
        template = named(objects, "Deployment", f"ganworks-{server}")["spec"]["template"]
        env = _env(objects, template)
        assert _mounted_secret(template, env[f"GANWORKS_{server.upper()}_TLS_CERT"]) == "ganworks-tls:tls.crt"
        assert _mounted_secret(template, env[f"GANWORKS_{server.upper()}_TLS_KEY"]) == "ganworks-tls:tls.key"
    evaluator = named(objects, "Deployment", "ganworks-evaluator")["spec"]["template"]
    assert _mounted_secret(evaluator, _env(objects, evaluator)["GANWORKS_EVALUATOR_GENERATOR_TLS_CA"]) == "ganworks-tls:ca.crt"
    for service in ("ganworks-generator", "ganworks-evaluator"):
        assert named(objects, "Service", service)["spec"]["ports"][0]["appProtocol"] != "kubernetes.io/h2c", "the API is TLS now, not h2c"


ONE_LINER = re.compile(r"kubectl (?:-n \S+ )?create job --from=cronjob/(?P<cronjob>\S+) .*?\| kubectl set env --local -f - -o yaml (?P<env>[A-Za-z_=0-9. ]+?) \| kubectl create -f -")


@pytest.mark.parametrize("action, env, expected", [
    ("promote", "ACTION=promote STEP=4000", ["generator", "promote", "digits", "4000"]),
    ("canary", "ACTION=promote STEP=4000 CANARY=0.1", ["generator", "promote", "digits", "4000", "--canary", "0.1"]),
    ("rollback", "ACTION=rollback", ["generator", "rollback", "digits"]),
])
def test_the_documented_rollout_one_liner_makes_a_valid_job_that_runs_the_rollout_command(tmp_path, action, env, expected):
    """What `kubectl create job --from=cronjob/ganworks-rollout` makes, through the README's own `kubectl set env`."""
    readme = (artifacts.DEPLOY / "README.md").read_text().replace("\\\n", " ")
    documented = ONE_LINER.search(re.sub(r"\s+", " ", readme))
    assert documented, "deploy/README.md must show the rollout one-liner"
    objects = rendered("base")
    cronjob = named(objects, "CronJob", documented.group("cronjob"))
    assert cronjob["spec"]["suspend"] is True, "the template must never run by itself"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"rollout-{action}", "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
           "spec": cronjob["spec"]["jobTemplate"]["spec"]}
    result = artifacts.run_tool("kubectl", "set", "env", "--local", "-f", "-", "-o", "yaml", *env.split(), stdin=yaml.safe_dump(job))
    assert result.returncode == 0, result.stderr
    made = yaml.safe_load(result.stdout)
    assert _validation_problem(made) is None, _validation_problem(made)
    container = made["spec"]["template"]["spec"]["containers"][0]
    config = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objects, "ConfigMap")}
    variables = {}
    for item in container["env"]:
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        variables[item["name"]] = config[ref["name"]][ref["key"]] if ref else item.get("value", "")
    # Run the container's command with a stand-in `ganworks` that prints the arguments it gets.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ganworks").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (fake / "ganworks").chmod(0o755)
    ran = subprocess.run([*container["command"], *container["args"]], env={**variables, "PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:-1] == expected
