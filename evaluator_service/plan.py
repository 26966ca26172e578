"""What an evaluation is asked and what it will do: the request, its resolved plan, and the request parsing every kind shares."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

from evaluator_service.cache import BoundedCache
from evaluator_service.errors import InvalidRequestError, NotFoundError
from evaluator_service.metrics import METRICS, Metric, get_metric
from evaluator_service.settings import EvaluatorSettings
from ganworks.checkpoint import list_snapshots, read_latest
from ganworks.data import ImageDataset, load_dataset
from ganworks.errors import ConfigError, ObjectNotFoundError
from ganworks.layout import check_run_id, eval_report_key, latest_key, run_info_key

Progress = Callable[[str, float], None]

# What each kind of run does, for the message that refuses a metric of another kind.
RUN_KINDS = {"image": "makes images", "table": "makes table rows", "translation": "translates images"}
# run.json's dataset "kind" of each kind of run that records one (an image run's dataset records none).
_DATASET_KINDS = {"table": "table", "domains": "translation"}


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
class Domains:
    """A translation run's data as the evaluator uses it: each domain's training and source images, and the judge."""

    specs: dict[str, str]  # "a"/"b" -> dataset spec
    train: dict[str, ImageDataset]
    sources: dict[str, ImageDataset]  # the held-out split, or the training images when the run kept none
    held_out: bool
    extractor_dataset: ImageDataset  # what the FID extractor is fitted on when it is a dataset classifier
    extractor_spec: str
    judge: tuple[str, ImageDataset, str] | None  # (extractor id, dataset, spec) of the classifier of both domains
    judge_missing: str  # why there is no judge
    target_classes: dict[str, tuple[int, ...]]  # direction -> the judge's classes of its target domain


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
    domains: Domains | None = None  # a translation run's two domains
    privacy: dict | None = None  # set by evaluator_service.privacy.private_plan: the split compared with, what was left out
    kind: str = "image"  # the kind of run (evaluator_service/kinds/)
    dataset_id: str = ""  # what the run is compared with: its dataset, or a translation run's pair of domains; reference.id when empty

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset_id or self.reference.id

    @property
    def metrics_set(self) -> str:
        names = "default" if self.default_metrics else "-".join(sorted(self.metrics))
        return f"{self.extractor}-{self.resize_mode}-n{self.num_samples}-{names}" + (f"-{self.variant}" if self.variant else "")

    @property
    def report_key(self) -> str:
        return eval_report_key(self.run, self.step, self.metrics_set)


def cached_dataset(datasets: BoundedCache[ImageDataset], spec: str, image_size: int, channels: int, split: str) -> ImageDataset:
    return datasets.get_or_create((spec, image_size, channels, split), lambda: load_dataset(spec, image_size=image_size, channels=channels, split=split))


def read_run_info(store, run: str) -> tuple[dict, str]:
    """The run's run.json and where it is (for messages); the kind's module checks it has what that kind needs."""
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
    if not isinstance(info, dict) or not isinstance(info.get("dataset"), dict):
        raise_without_dataset(store.url_for(key))
    return info, store.url_for(key)


def raise_without_dataset(where: str) -> None:
    raise InvalidRequestError(f"{where} has no dataset spec/image_size/channels; the evaluator cannot tell what to compare the run with")


def run_kind(info: dict) -> str:
    """The kind of run a run.json describes, read from what its dataset record is (an image run's names no kind)."""
    return _DATASET_KINDS.get(info["dataset"].get("kind"), "image")


def step_to_evaluate(store, request: EvaluationRequest) -> int:
    """The step to evaluate: the pinned version (published), or the newest one LATEST names."""
    if request.version:
        if request.version not in list_snapshots(store, request.run):
            raise NotFoundError(f"run {request.run!r} has no snapshot at step {request.version}; published steps: {list_snapshots(store, request.run)[-10:] or 'none'}")
        return request.version
    latest = read_latest(store, request.run)
    if latest is None:
        raise NotFoundError(f"run {request.run!r} has not published a snapshot yet; evaluate it once `{store.url_for(latest_key(request.run))}` exists")
    return latest


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


def seed_and_variant(request: EvaluationRequest, settings: EvaluatorSettings, params: dict[str, dict[str, Any]]) -> tuple[int, str]:
    """The request's seed, and its variant: "" for the server's default seed and parameters, else what sets it apart."""
    seed = settings.default_seed if request.seed is None else int(request.seed)
    parts = [] if seed == settings.default_seed else [f"seed{seed}"]
    given = {metric: values for metric, values in params.items() if values}
    if given:
        parts.append("p" + hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:10])
    return seed, "-".join(parts)


def needs_side(metric: Metric, side: str) -> bool:
    return any(i.startswith(f"{side}.") for i in metric.inputs)


def without_held_out_metrics(request: EvaluationRequest, metrics: list[str], split: str, what: str) -> list[str]:
    """A run that kept no held-out split: the default set leaves out metrics that need one, an explicit ask fails."""
    needing = [m for m in metrics if needs_side(get_metric(m), "held_out")]
    if needing and request.metrics:
        raise InvalidRequestError(f"{', '.join(needing)} needs held-out {what}, but run {request.run!r} trained on split {split!r}; drop {', '.join(needing)} from the metrics")
    return [m for m in metrics if m not in needing]
