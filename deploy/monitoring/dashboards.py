"""Builds the Grafana dashboards (training, serving, quality) as JSON: run it after editing a panel.

The JSON files under dashboards/ are what Grafana, compose and the Kubernetes ConfigMaps load; this
script is their one source, and tests/deploy checks that the committed files equal its output.
Usage: python deploy/monitoring/dashboards.py [--check]
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RUN = 'run=~"$run"'
NAMESPACE = 'namespace=~"$namespace"'
_SELECTOR = re.compile(r"\b(ganworks_[a-z0-9_]*[a-z0-9])(\{([^}]*)\})?")
SERVER_ERRORS = 'code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNIMPLEMENTED"'


def in_namespace(expr: str) -> str:
    """The query with every ganworks_* selector limited to the dashboard's namespace variable.

    One Prometheus often scrapes several namespaces (dev, staging, prod): without this, a panel would add
    a dev load test to prod's traffic.
    """
    def limit(match: re.Match) -> str:
        matchers = match.group(3)
        return f"{match.group(1)}{{{NAMESPACE}{', ' + matchers if matchers else ''}}}"

    return _SELECTOR.sub(limit, expr)


def _panel(title: str, queries: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries", description: str = "") -> dict:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "none"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(queries)],
    }


def _datasource_variable() -> dict:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "options": []}


def _label_variable(name: str, metric: str) -> dict:
    definition = f"label_values({metric if name == 'namespace' else in_namespace(metric)}, {name})"
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": definition,
        "query": {"query": definition, "refId": f"{name}-values"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {},
        "options": [],
        "sort": 1,
        "hide": 0,
    }


def _dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict], namespace_metric: str) -> dict:
    # Two panels a row, 8 units high; ids are stable so Grafana keeps user links to panels.
    for index, panel in enumerate(panels):
        for target in panel["targets"]:
            target["expr"] = in_namespace(target["expr"])
        panel["id"] = index + 1
        panel["gridPos"] = {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)}
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ganworks"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [_datasource_variable(), _label_variable("namespace", namespace_metric), *variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def training() -> dict:
    panels = [
        _panel("Images per second", [(f"sum by (run) (ganworks_trainer_images_per_second{{{RUN}}})", "{{run}}")], "short"),
        _panel("Steps per second", [(f"sum by (run) (rate(ganworks_trainer_steps_total{{{RUN}}}[$__rate_interval]))", "{{run}}")], "short"),
        _panel("Losses", [(f"avg by (run, network) (ganworks_trainer_loss{{{RUN}}})", "{{run}} {{network}}")], "short",
               description="Generator and discriminator loss of the last step (rank 0)."),
        _panel("Discriminator outputs", [(f"avg by (run, kind) (ganworks_trainer_discriminator_output{{{RUN}}})", "{{run}} D({{kind}})")], "short",
               description="Mean D output on real and fake images; a collapsing gap means D has stopped learning or has won."),
        _panel("Gradient norm", [(f"avg by (run, network) (ganworks_trainer_grad_norm{{{RUN}}})", "{{run}} {{network}}")], "short"),
        _panel("Last snapshot step", [(f"max by (run) (ganworks_trainer_last_snapshot_step{{{RUN}}})", "{{run}}")], "short"),
        _panel("Snapshot age", [(f"time() - max by (run) (ganworks_trainer_last_snapshot_timestamp_seconds{{{RUN}}})", "{{run}}")], "s",
               description="Seconds since the last published snapshot; the stalled-trainer alert fires past 30 minutes while steps advance."),
        _panel("Snapshots published and failed", [
            (f"sum by (run) (increase(ganworks_trainer_snapshots_published_total{{{RUN}}}[$__rate_interval]))", "{{run}} published"),
            (f"sum by (run) (increase(ganworks_trainer_publish_failures_total{{{RUN}}}[$__rate_interval]))", "{{run}} failed"),
        ], "short"),
        _panel("Images seen", [(f"sum by (run) (ganworks_trainer_images_seen_total{{{RUN}}})", "{{run}}")], "short"),
        _panel("Non-finite steps", [(f"sum by (run) (ganworks_trainer_nonfinite_steps_total{{{RUN}}})", "{{run}}")], "short",
               description="Steps skipped because a loss or gradient was NaN/Inf."),
    ]
    return _dashboard("ganworks-training", "ganworks / Training", "Ray Train GAN runs: throughput, losses, D outputs, snapshots.",
                      panels, [_label_variable("run", "ganworks_trainer_steps_total")], "ganworks_trainer_steps_total")


def serving() -> dict:
    latency = "ganworks_generator_request_latency_seconds_bucket"
    panels = [
        _panel("Requests per second by status", [("sum by (code) (rate(ganworks_generator_requests_total[$__rate_interval]))", "{{code}}")], "reqps"),
        _panel("Request latency", [
            (f"histogram_quantile(0.50, sum by (le) (rate({latency}[$__rate_interval])))", "p50"),
            (f"histogram_quantile(0.90, sum by (le) (rate({latency}[$__rate_interval])))", "p90"),
            (f"histogram_quantile(0.99, sum by (le) (rate({latency}[$__rate_interval])))", "p99"),
        ], "s"),
        _panel("Queue wait", [
            ("histogram_quantile(0.50, sum by (le) (rate(ganworks_generator_queue_wait_seconds_bucket[$__rate_interval])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(ganworks_generator_queue_wait_seconds_bucket[$__rate_interval])))", "p99"),
        ], "s", description="Time a request waits before its batch starts; bounded by max_queue_delay when the model keeps up."),
        _panel("Batch size", [
            ("sum(rate(ganworks_generator_batch_size_sum[$__rate_interval])) / sum(rate(ganworks_generator_batch_size_count[$__rate_interval]))", "mean"),
            ("histogram_quantile(0.90, sum by (le) (rate(ganworks_generator_batch_size_bucket[$__rate_interval])))", "p90"),
        ], "short", description="Samples per model call; near 1 under load means batching is not working."),
        _panel("Queue depth and in-flight requests", [
            ("sum by (instance) (ganworks_generator_queue_depth)", "{{instance}} queued samples"),
            ("sum by (instance) (ganworks_generator_queue_capacity)", "{{instance}} capacity"),
            ("sum by (instance) (ganworks_generator_inflight_requests)", "{{instance}} in flight"),
        ], "short"),
        _panel("Served model version", [("max by (model) (ganworks_generator_model_version)", "{{model}}")], "short",
               description="Training step of the newest snapshot each model has loaded."),
        _panel("Samples per second by model", [("sum by (model) (rate(ganworks_generator_samples_total[$__rate_interval]))", "{{model}}")], "short"),
        _panel("Model loads by result", [
            ("sum by (model, result) (ganworks_generator_model_loads_total)", "{{model}} {{result}}"),
        ], "short"),
        _panel("Model load time", [
            ("histogram_quantile(0.99, sum by (le) (rate(ganworks_generator_model_load_seconds_bucket[1h])))", "p99 (1h)"),
            ("sum(ganworks_generator_model_load_seconds_sum) / sum(ganworks_generator_model_load_seconds_count)", "mean"),
        ], "s"),
        # Rollout: the canary against the stable step beside it (the canary alerts compare the same series).
        _panel("Rollout: calls per second by track", [
            ("sum by (model, track) (rate(ganworks_generator_routed_requests_total[$__rate_interval]))", "{{model}} {{track}}"),
        ], "reqps", description="Calls by the rollout track that answered them: stable and candidate under a canary, latest or pinned otherwise."),
        _panel("Rollout: server-error share by track", [
            # `or … * 0`: a track without server errors shows 0, not a gap (no error series exists until the first error).
            (f"(sum by (model, track) (rate(ganworks_generator_routed_requests_total{{{SERVER_ERRORS}}}[$__rate_interval])) "
             "or sum by (model, track) (rate(ganworks_generator_routed_requests_total[$__rate_interval])) * 0) "
             "/ sum by (model, track) (rate(ganworks_generator_routed_requests_total[$__rate_interval]))", "{{model}} {{track}}"),
        ], "percentunit", description="GanworksCanaryErrorRate fires when the candidate's share is twice the stable's and 2 points above it."),
        _panel("Rollout: p99 latency by track", [
            ("histogram_quantile(0.99, sum by (le, model, track) (rate(ganworks_generator_routed_request_latency_seconds_bucket[$__rate_interval])))", "{{model}} {{track}}"),
        ], "s", description="GanworksCanaryLatencyHigh fires when the candidate's p99 is 1.5 times the stable's."),
        _panel("Rollout: step per track and policy applied", [
            ("max by (model, track) (ganworks_generator_rollout_step)", "{{model}} {{track}} step"),
            ("min by (model) (ganworks_generator_rollout_policy_ok)", "{{model}} policy applied (1) on every replica"),
        ], "short", description="The step each track serves (0: none); GanworksRolloutPolicyNotApplied fires when a replica cannot apply the policy."),
    ]
    return _dashboard("ganworks-serving", "ganworks / Serving", "The gRPC generator service: traffic, latency, batching, queue, models, rollout.", panels, [],
                      "ganworks_generator_requests_total")


def quality() -> dict:
    gauges = [
        ("FID", "fid", "lower is better"),
        ("KID", "kid", "lower is better"),
        ("Precision", "precision", "share of generated samples inside the real manifold"),
        ("Recall", "recall", "share of real samples covered by generated ones"),
        ("Density", "density", ""),
        ("Coverage", "coverage", ""),
        ("Inception score", "inception_score", "higher is better"),
        ("Diversity", "diversity", "mean pairwise feature distance of generated samples"),
        ("Memorization rate", "memorization_rate", "share of generated samples nearly identical to a training image"),
        ("Table quality", "table_quality", "table runs: SDMetrics quality score (mean of column shapes and pair trends), higher is better"),
        ("ML efficacy", "ml_efficacy", "table runs: F1 of a model trained on synthetic rows / trained on real rows, on held-out rows"),
        ("Closer to train than held-out (excess)", "closer_to_train_excess",
         "table runs: share of synthetic rows nearer a training row than any held-out row, above a non-copying generator's; the privacy alert fires above 0.1"),
    ]
    panels = [
        _panel(title, [(f"max by (run, extractor) (ganworks_evaluator_{name}{{{RUN}}})", "{{run}} ({{extractor}})")], "short", description=text)
        for title, name, text in gauges
    ]
    # Translation runs: one panel per measure, a series per direction (or per domain for the round trip).
    translation = [
        ("Translation FID", "translation_fid_{}", ("a_to_b", "b_to_a"), "translation runs: translated held-out images against the real target domain, lower is better"),
        ("Translation success", "translation_success_{}", ("a_to_b", "b_to_a"), "translation runs: share of translations a classifier of both domains puts in the target domain"),
        ("Cycle L1", "cycle_l1_{}", ("a", "b"), "translation runs: mean |x − back(there(x))| of held-out images, 0..1 scale, lower is better"),
    ]
    panels += [
        _panel(title, [(f"max by (run, extractor) (ganworks_evaluator_{name.format(part)}{{{RUN}}})", f"{{{{run}}}} {part}") for part in parts], "short", description=text)
        for title, name, parts, text in translation
    ]
    panels.insert(1, _panel("FID against the best of the last 24 h", [
        (f"min by (run, extractor) (ganworks_evaluator_fid{{{RUN}}})", "{{run}} now"),
        (f"min by (run, extractor) (min_over_time(ganworks_evaluator_fid{{{RUN}}}[24h]))", "{{run}} best 24h"),
    ], "short", description="The FID regression alert fires when now is 10% (and 1 point) above the best."))
    panels += [
        _panel("Evaluated snapshot step", [(f"max by (run, extractor) (ganworks_evaluator_evaluated_step{{{RUN}}})", "{{run}} ({{extractor}})")], "short"),
        _panel("Evaluations by result", [("sum by (result) (ganworks_evaluator_evaluations_total)", "{{result}}")], "short"),
        _panel("Evaluation duration", [
            ("histogram_quantile(0.50, sum by (le) (rate(ganworks_evaluator_job_duration_seconds_bucket[1h])))", "p50 (1h)"),
            ("sum(ganworks_evaluator_job_duration_seconds_sum) / sum(ganworks_evaluator_job_duration_seconds_count)", "mean"),
        ], "s"),
        _panel("Evaluator queue and failures", [
            ("sum(ganworks_evaluator_queue_depth)", "queued evaluations"),
            ("sum by (reason) (ganworks_evaluator_failures_total) or vector(0)", "failures {{reason}}"),
        ], "short", description="Failures by reason; a flat 0 when there has been none."),
    ]
    return _dashboard("ganworks-quality", "ganworks / Quality", "Evaluator metrics of each run's snapshots as they are published.",
                      panels, [_label_variable("run", "ganworks_evaluator_evaluated_step")], "ganworks_evaluator_evaluated_step")


DASHBOARDS = {"training": training, "serving": serving, "quality": quality}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [name for name, text in rendered.items() if not (OUT / name).exists() or (OUT / name).read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python deploy/monitoring/dashboards.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
