"""Reads what deploy/ ships: dashboards, rules, rendered kustomize output, and the metric names they use."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import tempfile

import yaml

from tests.deploy.tools import DEPLOY, run_tool

DASHBOARDS = DEPLOY / "monitoring" / "dashboards"
RULES = DEPLOY / "monitoring" / "rules" / "ganworks.rules.yml"
RULE_TESTS = sorted((DEPLOY / "monitoring" / "tests").glob("*.yml"))
K8S = DEPLOY / "k8s"
OVERLAYS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "gpu": K8S / "overlays" / "gpu", "my-cluster": K8S / "overlays" / "my-cluster"}
# Every component, in the order an overlay lists them (gpu patches the trainer's RayJob, so it comes after it).
COMPONENTS = ("trainer", "gpu", "monitoring", "auth", "tls", "tls-cert-manager", "minio")
# What the suite renders: the base alone, each component alone on it, all of them together, and the overlays.
RENDERINGS = ("base", *(f"base+{name}" for name in COMPONENTS), "base+" + "+".join(COMPONENTS), *(name for name in OVERLAYS if name != "base"))
METRIC_NAME = re.compile(r"\bganworks_[a-z0-9_]*[a-z0-9]\b")


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels folded into a row
    return found


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) for every target of every panel."""
    return [(name, panel["title"], target.get("expr", "")) for name, board in dashboards().items() for panel in panels(board) for target in panel.get("targets", [])]


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard query with Grafana's variables replaced, so Prometheus itself can run it."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval).replace("$__range", "1h")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> list[dict]:
    return [rule for rule in rules() if "record" in rule]


def metric_names_used() -> dict[str, set[str]]:
    """Every ganworks_* metric name written in deploy/'s YAML and JSON, with the files it appears in."""
    used: dict[str, set[str]] = {}
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            for name in METRIC_NAME.findall(path.read_text()):
                used.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    return used


def label_matchers_used() -> dict[str, set[str]]:
    """metric name -> label names matched in a selector like name{label="..."} anywhere in deploy/'s YAML and JSON."""
    used: dict[str, set[str]] = {}
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            text = path.read_text().replace('\\"', '"')
            for name, matchers in re.findall(r"\b(ganworks_[a-z0-9_]*[a-z0-9])\{([^}]*)\}", text):
                used.setdefault(name, set()).update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return used


def kustomize(folder) -> tuple[dict, ...]:
    result = run_tool("kubectl", "kustomize", str(folder))
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def kustomize_on_base(components: list[str], extra: dict | None = None) -> tuple[dict, ...]:
    """Renders the base with these components (and extra kustomization fields), as an overlay of one's own would."""
    with tempfile.TemporaryDirectory() as folder:
        # kustomize takes only relative paths to other kustomizations.
        relative = os.path.relpath(K8S, folder)
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [f"{relative}/base"],
                         "components": [f"{relative}/components/{name}" for name in components], **(extra or {})}
        (pathlib.Path(folder) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return kustomize(folder)


@functools.lru_cache(maxsize=None)
def rendered(name: str) -> tuple[dict, ...]:
    """The objects `kubectl kustomize` renders for an overlay, the base, or "base+component+..." (see RENDERINGS)."""
    if name in OVERLAYS:
        return kustomize(OVERLAYS[name])
    base, *components = name.split("+")
    assert base == "base" and components, name
    return kustomize_on_base(components)


def of_kind(objects, kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


_HASHED = re.compile(r"^(?P<name>.+)-[a-z0-9]{10}$")


def _is(obj: dict, name: str) -> bool:
    """True for the object of that name, or, for a generated ConfigMap or Secret, that name with its hash suffix."""
    actual = obj["metadata"]["name"]
    if actual == name:
        return True
    hashed = _HASHED.match(actual)
    return obj["kind"] in ("ConfigMap", "Secret") and hashed is not None and hashed.group("name") == name


def named(objects, kind: str, name: str) -> dict:
    matches = [obj for obj in objects if obj["kind"] == kind and _is(obj, name)]
    assert matches, f"no {kind} named {name} in the rendered output"
    return matches[0]


def pod_templates(objects) -> list[tuple[str, dict]]:
    """(owner description, pod template) for every workload, including the RayJob's head, workers and submitter."""
    found = []
    for obj in objects:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            found.append((f"{kind}/{name}", spec["template"]))
        elif kind == "CronJob":
            found.append((f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]))
        elif kind == "RayJob":
            cluster = spec["rayClusterSpec"]
            found.append((f"RayJob/{name} head", cluster["headGroupSpec"]["template"]))
            for group in cluster["workerGroupSpecs"]:
                found.append((f"RayJob/{name} workers {group['groupName']}", group["template"]))
            if "submitterPodTemplate" in spec:
                found.append((f"RayJob/{name} submitter", spec["submitterPodTemplate"]))
    return found
