"""One evaluation, start to end: resolve the request, reference statistics, samples from the generator, features, metrics, report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from evaluator_service.cache import BoundedCache
from evaluator_service.errors import EvaluationError, InvalidRequestError, NotFoundError
from evaluator_service.fanout import fan_out
from evaluator_service.features import Extractor, ExtractorCache, check_extractor_id, check_resize_mode, default_extractor, has_logits
from evaluator_service.features import classifier as classifier_extractor
from evaluator_service.metrics import METRICS, Metric, get_metric, metric_sources
from evaluator_service.metrics.spec import GENERATED_IMAGES, GENERATED_LABELS, HELD_OUT_LABELS, REFERENCE_IMAGES, REFERENCE_LABELS
from evaluator_service.reference import ReferenceStats, load_or_compute, reference_images, reference_subset
from evaluator_service.sampler import GeneratorSampler, GeneratorTarget
from evaluator_service.samples import Samples, TableSamples
from evaluator_service.settings import EvaluatorSettings
from evaluator_service.stats import FeatureStats
from ganworks import __version__
from ganworks.checkpoint import list_snapshots, read_latest
from ganworks.data import ImageDataset, load_dataset
from ganworks.errors import ConfigError, DatasetError, ObjectNotFoundError
from ganworks.layout import check_run_id, eval_report_key, evaluator_events_key, latest_key, run_info_key
from ganworks.tensorboard_events import evaluation_events
from ganworks.mlflow_tracking import MlflowRun, tracking_uri

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


_MLFLOW_RUNS: dict[tuple[str, str], MlflowRun | None] = {}
_MLFLOW_LOCK = threading.Lock()


def mlflow_run(run: str) -> MlflowRun | None:
    """The run's MLflow run (one background sender per run and tracking URI); None without GANWORKS_MLFLOW_TRACKING_URI."""
    key = (tracking_uri(), run)
    with _MLFLOW_LOCK:
        if key not in _MLFLOW_RUNS:
            _MLFLOW_RUNS[key] = MlflowRun.from_uri(key[0], run)
        return _MLFLOW_RUNS[key]


def close_mlflow_runs(timeout: float) -> bool:
    """At shutdown: sends what the runs' MLflow senders still hold, all within timeout seconds, and ends their threads
    (a later evaluation gets a fresh sender). False if something was left unsent."""
    with _MLFLOW_LOCK:
        senders = [sender for sender in _MLFLOW_RUNS.values() if sender is not None]
        _MLFLOW_RUNS.clear()
    deadline = time.monotonic() + timeout
    return all([sender.close(max(deadline - time.monotonic(), 0.1)) for sender in senders])


@dataclasses.dataclass
class EvaluationRequest:
    run: str
    version: int = 0
    num_samples: int = 0
    metrics: list[str] = dataclasses.field(default_factory=list)
    extractor: str = ""
    resize_mode: str = ""
    seed: int | None = None
    params: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan:
    """A request resolved against the store and the settings: everything an evaluation needs to know."""

    run: str
    step: int
    num_samples: int
    metrics: list[str]
    extractor: str
    resize_mode: str
    seed: int
    params: dict[str, dict[str, Any]]
    run_info: dict
    reference: ImageDataset  # a TabularDataset for a table run
    held_out: ImageDataset | None
    default_metrics: bool
    # "" for the server's default seed and parameters, else what sets this request apart, so reports never collide.
    variant: str = ""
    # The request is the continuous default set (every option at the server's default): only it drives the gauges.
    default_set: bool = False
    classifier_dataset: ImageDataset | None = None
    domains: Any = None  # a translation run's evaluator_service.translation.Domains

    @property
    def metrics_set(self) -> str:
        names = "default" if self.default_metrics else "-".join(sorted(self.metrics))
        return f"{self.extractor}-{self.resize_mode}-n{self.num_samples}-{names}" + (f"-{self.variant}" if self.variant else "")

    @property
    def dataset_id(self) -> str:
        """What the run is compared with: its dataset, or a translation run's pair of domains."""
        if self.domains is not None:
            return self.run_info["dataset"].get("id") or self.reference.id
        return self.reference.id

    @property
    def report_key(self) -> str:
        return eval_report_key(self.run, self.step, self.metrics_set)


def _dataset(datasets: BoundedCache[ImageDataset], spec: str, image_size: int, channels: int, split: str) -> ImageDataset:
    return datasets.get_or_create((spec, image_size, channels, split), lambda: load_dataset(spec, image_size=image_size, channels=channels, split=split))


def read_run_info(store, run: str) -> dict:
    try:
        check_run_id(run)
    except ConfigError as exc:
        raise InvalidRequestError(str(exc)) from None
    key = run_info_key(run)
    try:
        info = store.get_json(key)
    except ObjectNotFoundError:
        raise NotFoundError(f"unknown run {run!r}: {store.url_for(key)} does not exist (`ganworks runs --store {store.url}` lists the runs)") from None
    except ValueError as exc:
        raise InvalidRequestError(f"{store.url_for(key)} is not valid JSON: {exc}") from None
    dataset = info.get("dataset") if isinstance(info, dict) else None
    if isinstance(dataset, dict) and dataset.get("kind") == "table" and "spec" in dataset:
        return info
    if isinstance(dataset, dict) and dataset.get("kind") == "domains":
        if not all(isinstance(dataset.get(k), dict) and "spec" in dataset[k] for k in ("domain_a", "domain_b")) or not {"image_size", "channels"} <= set(dataset):
            raise InvalidRequestError(f"{store.url_for(key)} has no spec of domain_a/domain_b or no image_size/channels; the evaluator cannot tell what the run translates")
        return info
    if not isinstance(dataset, dict) or not {"spec", "image_size", "channels"} <= set(dataset):
        raise InvalidRequestError(f"{store.url_for(key)} has no dataset spec/image_size/channels; the evaluator cannot tell what to compare the run with")
    return info


def split_params(params: dict[str, float], metrics: list[str], num_samples: int) -> dict[str, dict[str, Any]]:
    """{"kid.subset_size": 100} -> {kid: {"subset_size": 100}}, each value checked against its metric's declaration."""
    out: dict[str, dict[str, Any]] = {m: {} for m in metrics}
    for key, value in params.items():
        metric, _, name = key.partition(".")
        if not name:
            raise InvalidRequestError(f"parameter {key!r} must be named <metric>.<parameter>, e.g. kid.subset_size")
        if metric not in out:
            raise InvalidRequestError(f"parameter {key!r} is for metric {metric!r}, which this evaluation does not compute ({', '.join(metrics)})")
        out[metric][name] = value
    checked = {metric: get_metric(metric).check_params(values) for metric, values in out.items()}
    for metric, values in checked.items():  # every range first: a wrong value is a clearer error than a small n
        get_metric(metric).check_sample_count(values, num_samples)
    return checked


# What each kind of run does, for the message that refuses a metric of another kind.
RUN_KINDS = {"image": "makes images", "table": "makes table rows", "translation": "translates images"}


def requested_metrics(request: EvaluationRequest, kind: str, default: list[str] | None = None) -> list[str]:
    """The metrics asked for, or the default set (all metrics of the kind when none is given), each of this kind of run."""
    fitting = [name for name, metric in METRICS.items() if metric.kind == kind]
    metrics = list(dict.fromkeys(request.metrics)) or list(default if default is not None else fitting)
    for name in metrics:
        metric = get_metric(name)
        if metric.kind != kind:
            raise InvalidRequestError(f"{name} is a metric of {metric.kind} runs; run {request.run!r} {RUN_KINDS[kind]} ({kind} metrics: {', '.join(fitting)})")
    return metrics


def num_samples(request: EvaluationRequest, settings: EvaluatorSettings) -> int:
    n = request.num_samples or settings.default_num_samples
    if n < 2 or n > settings.max_num_samples:
        raise InvalidRequestError(f"num_samples must be from 2 to {settings.max_num_samples}, got {n}")
    return n


def _needs(metric: Metric, side: str) -> bool:
    return any(i.startswith(f"{side}.") for i in metric.inputs)


def _kinds(inputs: set[str], side: str) -> set[str]:
    """What is asked of one side: {"features", "images", ...} from inputs named `<side>.<kind>`."""
    return {i.partition(".")[2] for i in inputs if i.startswith(f"{side}.")}


def _missing_labels(run: str, info: dict, reference: ImageDataset) -> dict[str, str]:
    """Label inputs this run cannot give, each with the reason."""
    missing = {}
    if not int((info.get("architecture_params") or {}).get("num_classes") or 0):
        missing[GENERATED_LABELS] = f"run {run!r} trained an unconditional model, whose samples have no class labels (train with --conditional)"
    if reference.labels is None:
        missing[REFERENCE_LABELS] = missing[HELD_OUT_LABELS] = f"dataset {reference.id} has no class labels"
    return missing


def _without_label_metrics(metrics: list[str], missing: dict[str, str], explicit: bool) -> list[str]:
    """The default set leaves out metrics that need labels the run cannot give; an explicit ask fails."""
    for name in metrics:
        reasons = [missing[i] for i in get_metric(name).inputs if i in missing]
        if reasons and explicit:
            raise InvalidRequestError(f"{name} needs class labels, but {reasons[0]}; drop {name} from the metrics")
    return [m for m in metrics if not any(i in missing for i in get_metric(m).inputs)]


def _without_logit_metrics(metrics: list[str], extractor: str, explicit: bool) -> list[str]:
    """The default set leaves out metrics that need class logits when the extractor has none; an explicit ask fails."""
    needing = [m for m in metrics if any(i.endswith((".logits", ".classes")) for i in get_metric(m).inputs)]
    if needing and explicit:
        raise InvalidRequestError(
            f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} class logits, but extractor {extractor!r} has none "
            "(the TF FID Inception weights carry no 1008-way classifier); use inception-v3-fid or the dataset classifier for them, or drop them"
        )
    return [m for m in metrics if m not in needing]


def plan(store, request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache[ImageDataset] | None = None) -> Plan:
    """Checks a request against the store and settings; raises a typed error a person can act on.

    `datasets` keeps loaded datasets between plans (the server's, bounded by max_cached_datasets); without
    it every call loads them again."""
    datasets = datasets if datasets is not None else BoundedCache("datasets", 3)
    info = read_run_info(store, request.run)
    ds = info["dataset"]
    step = _step(store, request)
    if ds.get("kind") == "table":
        return _plan_table(request, settings, datasets, info, step)
    if ds.get("kind") == "domains":
        from evaluator_service.translation import plan_translation

        return plan_translation(request, settings, datasets, info, step)
    metrics = requested_metrics(request, "image", settings.default_metrics)
    n = num_samples(request, settings)
    resize_mode = check_resize_mode(request.resize_mode or settings.default_resize_mode)
    split = ds.get("split", "train")
    try:
        shape = (ds["spec"], int(ds["image_size"]), int(ds["channels"]))
        reference = _dataset(datasets, *shape, split)
        held_out = _dataset(datasets, *shape, "test") if split == "train" else None
        # The dataset classifier is fitted on the training split whatever split the run compares with.
        classifier_dataset = reference if split == "train" else _dataset(datasets, *shape, "train")
    except DatasetError as exc:
        raise InvalidRequestError(f"the run's dataset cannot be loaded: {exc}") from None
    extractor = request.extractor or settings.default_extractor or default_extractor(reference)
    check_extractor_id(extractor, reference)
    if not has_logits(extractor):
        metrics = _without_logit_metrics(metrics, extractor, explicit=bool(request.metrics))
    if held_out is None:
        needing = [m for m in metrics if _needs(get_metric(m), "held_out")]
        if needing and request.metrics:
            raise InvalidRequestError(f"{', '.join(needing)} needs held-out data, but run {request.run!r} trained on split {split!r}; drop {', '.join(needing)} from the metrics")
        metrics = [m for m in metrics if m not in needing]  # the default set adapts to a run without held-out data
    metrics = _without_label_metrics(metrics, _missing_labels(request.run, info, reference), explicit=bool(request.metrics))
    params = split_params(dict(request.params), metrics, n)
    seed = settings.default_seed if request.seed is None else int(request.seed)
    variant = _variant(seed, settings.default_seed, params)
    default_set = not variant and not request.metrics and n == settings.default_num_samples and resize_mode == settings.default_resize_mode \
        and extractor == (settings.default_extractor or default_extractor(reference))
    return Plan(
        run=request.run, step=step, num_samples=n, metrics=metrics, extractor=extractor, resize_mode=resize_mode,
        seed=seed, params=params, run_info=info, reference=reference, held_out=held_out, default_metrics=not request.metrics,
        variant=variant, default_set=default_set, classifier_dataset=classifier_dataset,
    )


def _step(store, request: EvaluationRequest) -> int:
    """The step to evaluate: the pinned version (published), or the newest one LATEST names."""
    if request.version:
        if request.version not in list_snapshots(store, request.run):
            raise NotFoundError(f"run {request.run!r} has no snapshot at step {request.version}; published steps: {list_snapshots(store, request.run)[-10:] or 'none'}")
        return request.version
    latest = read_latest(store, request.run)
    if latest is None:
        raise NotFoundError(f"run {request.run!r} has not published a snapshot yet; evaluate it once `{store.url_for(latest_key(request.run))}` exists")
    return latest


# A table run's evaluations name no extractor or resize mode: its report and gauges say "table".
TABLE_EXTRACTOR, TABLE_RESIZE = "table", "none"


def _plan_table(request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache, info: dict, step: int) -> Plan:
    """plan() for a tabular run: the table's train and held-out rows, and the table metrics (all of them by default)."""
    from ganworks.tabular.data import load_table

    ds = info["dataset"]
    metrics = requested_metrics(request, "table")
    if request.extractor not in ("", TABLE_EXTRACTOR) or request.resize_mode not in ("", TABLE_RESIZE):
        raise InvalidRequestError(f"run {request.run!r} makes table rows: leave extractor and resize_mode empty (they are for images)")
    n = num_samples(request, settings)
    split = ds.get("split", "train")
    try:
        reference = datasets.get_or_create(("table", ds["spec"], split), lambda: load_table(ds["spec"], split=split))
        held_out = datasets.get_or_create(("table", ds["spec"], "test"), lambda: load_table(ds["spec"], split="test")) if split == "train" else None
    except DatasetError as exc:
        raise InvalidRequestError(f"the run's table cannot be loaded: {exc}") from None
    if held_out is None:
        needing = [m for m in metrics if _needs(get_metric(m), "held_out")]
        if needing and request.metrics:
            raise InvalidRequestError(f"{', '.join(needing)} needs held-out rows, but run {request.run!r} trained on split {split!r}; drop {', '.join(needing)} from the metrics")
        metrics = [m for m in metrics if m not in needing]
    params = split_params(dict(request.params), metrics, n)
    seed = settings.default_seed if request.seed is None else int(request.seed)
    variant = _variant(seed, settings.default_seed, params)
    return Plan(run=request.run, step=step, num_samples=n, metrics=metrics, extractor=TABLE_EXTRACTOR, resize_mode=TABLE_RESIZE, seed=seed, params=params,
                run_info=info, reference=reference, held_out=held_out, default_metrics=not request.metrics, variant=variant,
                default_set=not variant and not request.metrics and n == settings.default_num_samples)


def _variant(seed: int, default_seed: int, params: dict[str, dict[str, Any]]) -> str:
    parts = [] if seed == default_seed else [f"seed{seed}"]
    given = {metric: values for metric, values in params.items() if values}
    if given:
        parts.append("p" + hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:10])
    return "-".join(parts)


def _generate_features(sampler: GeneratorSampler, p: Plan, extractor: Extractor, batch_size: int, progress: Progress, keep_images: bool) -> Samples:
    feats, logits, labels, images, done = [], [], [], [], 0
    for batch in sampler.sample(p.run, p.step, p.num_samples, p.seed):
        f, lg = extractor.extract(batch.images, p.resize_mode, batch_size)
        feats.append(f)
        logits.append(lg)
        labels.append(batch.labels)
        if keep_images:
            images.append(batch.images)
        done += len(f)
        progress("features", 0.2 + 0.7 * done / p.num_samples)
    features = np.concatenate(feats)
    # One large product at the end: per-batch outer products of 2048-d features are memory-bound.
    return Samples(features, np.concatenate(logits), FeatureStats.of(features), labels=np.concatenate(labels).astype(np.int64),
                   images=np.concatenate(images) if keep_images else None)


def _side(ref: ReferenceStats, extractor: Extractor, images: np.ndarray | None = None) -> Samples:
    # Dataset labels only line up with a classifier's own classes; for other extractors compare predicted classes.
    own = extractor.id.endswith(classifier_extractor.SUFFIX)
    return Samples(ref.features, ref.logits, ref.stats, labels=ref.labels if len(ref.labels) else None, images=images, labels_are_classes=own)


def _held_out(store, p: Plan, extractor: Extractor, settings: EvaluatorSettings, kinds: set[str]) -> Samples:
    """The held-out side with what is asked of it: features cost an extractor pass over the split, pixels and labels nothing."""
    images, labels = reference_subset(p.held_out, settings.max_reference_samples)
    images = images if "images" in kinds else None
    if kinds <= {"images", "labels"}:
        return Samples(None, None, None, labels=labels, images=images)
    return _side(load_or_compute(store, p.held_out, extractor, p.resize_mode, settings.max_reference_samples, settings.batch_size)[0], extractor, images)


def _gather(name: str | None, sides: dict[str, Samples | None]) -> Any:
    """The value of a declared input `<side>.<kind>` (see evaluator_service/metrics/spec.py)."""
    if name is None:
        return None
    side, _, kind = name.partition(".")
    samples = sides.get(side)
    value = getattr(samples, kind, None) if samples is not None else None
    if value is None:
        raise EvaluationError(f"input {name} is not available in this evaluation")
    return value


def run_evaluation(store, p: Plan, settings: EvaluatorSettings, extractors: ExtractorCache, progress: Progress = lambda phase, fraction: None) -> dict:
    """Runs a planned evaluation and writes its report; returns the report."""
    if p.extractor == TABLE_EXTRACTOR:
        return _run_table_evaluation(store, p, settings, progress)
    if p.domains is not None:
        from evaluator_service.translation import run_translation_evaluation

        return run_translation_evaluation(store, p, settings, extractors, progress)
    started, created_at, phases = time.monotonic(), time.time(), {}

    def phase(name: str, fraction: float) -> None:
        phases.setdefault(name, time.monotonic())
        progress(name, fraction)

    phase("extractor", 0.01)
    extractor = extractors.get(p.extractor, p.classifier_dataset or p.reference, p.run_info["dataset"]["spec"], on_phase=lambda name: phase(name, 0.02))
    phase("reference", 0.05)
    metrics = [get_metric(name) for name in p.metrics]
    inputs = {i for m in metrics for i in m.inputs}
    reference, cached = load_or_compute(store, p.reference, extractor, p.resize_mode, settings.max_reference_samples, settings.batch_size)
    sides: dict[str, Samples | None] = {
        "reference": _side(reference, extractor, reference_images(p.reference, settings.max_reference_samples) if REFERENCE_IMAGES in inputs else None),
        "held_out": None,
    }
    if _kinds(inputs, "held_out"):
        sides["held_out"] = _held_out(store, p, extractor, settings, _kinds(inputs, "held_out"))
    phase("sampling", 0.2)
    target = GeneratorTarget.from_settings(settings)
    keep_images = GENERATED_IMAGES in inputs
    with GeneratorSampler(target) as sampler:
        model = sampler.describe(p.run, p.step)
        # Ray tasks return features and their statistics only: per-sample pixels and labels are gathered here.
        if settings.ray_address and p.num_samples >= settings.fanout_min_samples and not keep_images and GENERATED_LABELS not in inputs:
            phase("features", 0.25)
            generated = fan_out(settings.ray_address, settings.fanout_shards, target, p.run, p.step,
                                p.num_samples, p.seed, extractor, p.resize_mode, settings.batch_size, sampler.chunk)
        else:
            generated = _generate_features(sampler, p, extractor, settings.batch_size, phase, keep_images)
    sides["generated"] = generated
    phase("metrics", 0.9)
    values, warnings = _compute_metrics(metrics, sides, p)
    now = time.monotonic()
    marks = sorted(phases.items(), key=lambda kv: kv[1]) + [("end", now)]
    report = {
        "run": p.run, "step": p.step, "metrics": values, "metric_names": p.metrics, "metrics_set": p.metrics_set,
        "extractor": extractor.id, "input_scaling": extractor.input_scaling, "resize_mode": p.resize_mode, "num_samples": p.num_samples, "seed": p.seed,
        "params": p.params, "dataset_id": p.reference.id, "reference_samples": reference.count, "reference_cached": cached,
        "held_out_dataset_id": p.held_out.id if sides["held_out"] is not None else None,
        "model_sha256": model.sha256, "generator": settings.generator, "feature_workers": generated.workers, "warnings": warnings,
        "extractor_info": {k: v for k, v in extractor.source.items() if k in ("sha256", "test_accuracy", "dataset_id", "weights")},
        "created_at": created_at, "duration_seconds": round(now - started, 3),
        "phase_seconds": {name: round(nxt[1] - t, 3) for (name, t), nxt in zip(marks, marks[1:])},
        "code_version": __version__,
    }
    return _write_report(store, p, report, progress)


def _compute_metrics(metrics: list[Metric], sides: dict[str, Any], p: Plan) -> tuple[dict[str, float], list[str]]:
    values: dict[str, float] = {}
    warnings: list[str] = []
    for metric in metrics:
        real, fake = _gather(metric.real, sides), _gather(metric.fake, sides)
        extra = {arg: _gather(name, sides) for arg, name in metric.extra.items()}
        if metric.warnings is not None:
            warnings += metric.warnings(real, fake)
        result = metric.fn(real, fake, **extra, **p.params.get(metric.name, {}))
        bad = [k for k, v in result.items() if not np.isfinite(v)]
        if bad:
            raise EvaluationError(f"{metric.name} gave a non-finite {', '.join(bad)}; the samples are degenerate (e.g. every generated sample is identical)")
        values.update(result)
    return values, warnings


def _write_report(store, p: Plan, report: dict, progress: Progress) -> dict:
    report.setdefault("metric_sources", metric_sources(report["metric_names"]))
    store.put_json(p.report_key, report)
    # The same numbers for TensorBoard, in the run's tb/ folder beside the trainer's curves.
    values, created_at = report["metrics"], report["created_at"]
    store.put_bytes(evaluator_events_key(p.run, p.step, p.metrics_set), evaluation_events(p.step, values, p.metrics_set, walltime=created_at), "application/octet-stream")
    tracking = mlflow_run(p.run)
    if tracking is not None:  # with GANWORKS_MLFLOW_TRACKING_URI: the same numbers in the run's MLflow run, at the snapshot's step
        tracking.log_metrics({f"{p.metrics_set}/{name}": value for name, value in values.items()}, p.step, created_at)
    progress("done", 1.0)
    log.info("evaluated %s step %d with %s: %s", p.run, p.step, report["extractor"], ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    return report


def _run_table_evaluation(store, p: Plan, settings: EvaluatorSettings, progress: Progress) -> dict:
    """A table run's evaluation: rows from the generator (GenerateRecords), then the table metrics against its train and held-out rows."""
    from ganworks.tabular.data import TabularDataset

    started, created_at = time.monotonic(), time.time()
    progress("sampling", 0.1)
    with GeneratorSampler(GeneratorTarget.from_settings(settings)) as sampler:
        model = sampler.describe(p.run, p.step)
        columns = sampler.sample_rows(p.run, p.step, p.num_samples, p.seed, p.reference.schema)
    generated = TabularDataset(columns=columns, schema=p.reference.schema, id=f"{p.run}-{p.step}-generated", source="generator")
    sides = {"reference": TableSamples(p.reference), "held_out": TableSamples(p.held_out) if p.held_out is not None else None, "generated": TableSamples(generated)}
    progress("metrics", 0.6)
    values, warnings = _compute_metrics([get_metric(name) for name in p.metrics], sides, p)
    report = {
        "run": p.run, "step": p.step, "metrics": values, "metric_names": p.metrics, "metrics_set": p.metrics_set, "extractor": TABLE_EXTRACTOR,
        "resize_mode": TABLE_RESIZE, "num_samples": p.num_samples, "seed": p.seed, "params": p.params, "dataset_id": p.reference.id,
        "reference_samples": len(p.reference), "held_out_dataset_id": p.held_out.id if p.held_out is not None else None,
        "model_sha256": model.sha256, "generator": settings.generator, "warnings": warnings, "created_at": created_at,
        "duration_seconds": round(time.monotonic() - started, 3), "code_version": __version__,
    }
    return _write_report(store, p, report, progress)
