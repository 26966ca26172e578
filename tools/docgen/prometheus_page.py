"""docs/reference/prometheus.md: every Prometheus metric the services export (read from their live registries, so the
names, types, labels and help are the code's) and every recording rule and alert of deploy/monitoring."""

from __future__ import annotations

import importlib
import inspect

import yaml

from tools.docgen.common import ROOT, banner, cell, code, table

# (module, class, component, endpoint): each class builds its metrics in a registry it is given.
EXPORTERS = (
    ("trainer.exporter", "TrainerMetrics", "trainer", "rank 0's `--metrics-port` (default 9310)"),
    ("generator_service.metrics", "GeneratorMetrics", "generator", "`--metrics-port` (default 9311)"),
    ("evaluator_service.exporter", "EvaluatorMetrics", "evaluator", "`--metrics-port` (default 9312)"),
)
RULES = ROOT / "deploy" / "monitoring" / "rules"
RUNBOOKS = "deploy/README.md"


def _instance(cls: type, registry: object) -> object:
    """The exporter built on `registry`, with a placeholder for any other required argument (a run id)."""
    kwargs = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name == "registry":
            kwargs[name] = registry
        elif param.default is inspect.Parameter.empty and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            kwargs[name] = "RUN"
    return cls(**kwargs)


def _families(module: str, name: str) -> list[list[str]]:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    _instance(getattr(importlib.import_module(module), name), registry)
    # A labelled metric has no samples until a child is made, so its label names come from the metric object.
    declared = {getattr(c, "_name", None): list(getattr(c, "_labelnames", ())) for c in list(registry._collector_to_names)}
    rows = {}
    for family in registry.collect():
        labels = declared.get(family.name) or sorted({k for s in family.samples for k in s.labels if k not in ("le", "quantile")})
        rows[family.name] = [code(family.name + ("_total" if family.type == "counter" else "")), family.type,
                             ", ".join(code(x) for x in labels), cell(family.documentation)]
        if family.type == "histogram":
            rows[family.name][0] = code(family.name) + " (`_bucket`, `_sum`, `_count`)"
    return [rows[k] for k in sorted(rows)]


def _rules() -> tuple[list[list[str]], list[list[str]]]:
    recording, alerts = [], []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                expr = " ".join(str(rule["expr"]).split())
                if "record" in rule:
                    recording.append([code(rule["record"]), code(expr)])
                else:
                    ann = rule.get("annotations", {})
                    # The runbook is a heading of deploy/README.md, which docs/deploy.md includes: a strict build
                    # fails when an alert has none.
                    alerts.append([f"[`{rule['alert']}`](../deploy.md#{rule['alert'].lower()})",
                                   cell(rule.get("labels", {}).get("severity", "")), code(rule.get("for", "")),
                                   cell(ann.get("description") or ann.get("summary", "")), code(expr)])
    return recording, alerts


def render() -> str:
    out = [banner("the exporters' registries (" + ", ".join(f"`{m}.{c}`" for m, c, _, _ in EXPORTERS) + ") and `deploy/monitoring/rules/`"),
           "# Prometheus metrics and alerts\n",
           "Names follow `ganworks_<component>_<what>_<unit>`; counters end in `_total`, times in `_seconds`; labels "
           "are of low cardinality. Alerts and dashboards in `deploy/` use these names, so they are a contract. "
           f"Each alert links to its runbook in [`{RUNBOOKS}`](../deploy.md#alert-runbooks).\n"]
    for module, name, component, endpoint in EXPORTERS:
        out.append(f"## {component}\n")
        out.append(f"Served on {endpoint}; built by `{module}.{name}`.\n")
        out.append(table(["metric", "type", "labels", "meaning"], _families(module, name)))
    recording, alerts = _rules()
    out.append("## Alerts\n")
    out.append("From `deploy/monitoring/rules/` (the single source for Prometheus, compose and the Kubernetes "
               "PrometheusRule; its promtool tests are in `deploy/monitoring/tests/`).\n")
    out.append(table(["alert", "severity", "for", "what it means", "expression"], alerts))
    out.append("## Recording rules\n")
    out.append(table(["series", "expression"], recording))
    return "\n".join(out)
