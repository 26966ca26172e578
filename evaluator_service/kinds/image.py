"""Evaluating an image run (noise to images): generated images' features against the dataset's, held-out and label metrics."""

from __future__ import annotations

import time

import numpy as np

from evaluator_service.cache import BoundedCache
from evaluator_service.compute import compute_metrics
from evaluator_service.errors import InvalidRequestError
from evaluator_service.fanout import fan_out
from evaluator_service.features import Extractor, ExtractorCache, check_extractor_id, check_resize_mode, default_extractor, has_logits
from evaluator_service.features import classifier as classifier_extractor
from evaluator_service.metrics import get_metric
from evaluator_service.metrics.spec import GENERATED_IMAGES, GENERATED_LABELS, HELD_OUT_LABELS, REFERENCE_IMAGES, REFERENCE_LABELS
from evaluator_service.plan import (EvaluationRequest, Plan, Progress, cached_dataset, num_samples, raise_without_dataset, requested_metrics,
                                    seed_and_variant, split_params, without_held_out_metrics)
from evaluator_service.reference import ReferenceStats, load_or_compute, reference_images, reference_subset
from evaluator_service.reports import write_report
from evaluator_service.sampler import GeneratorSampler, GeneratorTarget
from evaluator_service.samples import Samples
from evaluator_service.settings import EvaluatorSettings
from evaluator_service.stats import FeatureStats
from ganworks import __version__
from ganworks.data import ImageDataset
from ganworks.errors import DatasetError


def check_run_info(dataset: dict, where: str) -> None:
    """run.json names what the run trained on: the dataset's spec and the image shape."""
    if not {"spec", "image_size", "channels"} <= set(dataset):
        raise_without_dataset(where)


def plan(store, request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache[ImageDataset], info: dict, step: int) -> Plan:
    """The run's dataset (its split, the held-out split, the classifier's training split), extractor and metrics."""
    ds = info["dataset"]
    metrics = requested_metrics(request, "image", settings.default_metrics)
    n = num_samples(request, settings)
    resize_mode = check_resize_mode(request.resize_mode or settings.default_resize_mode)
    split = ds.get("split", "train")
    try:
        shape = (ds["spec"], int(ds["image_size"]), int(ds["channels"]))
        reference = cached_dataset(datasets, *shape, split)
        held_out = cached_dataset(datasets, *shape, "test") if split == "train" else None
        # The dataset classifier is fitted on the training split whatever split the run compares with.
        classifier_dataset = reference if split == "train" else cached_dataset(datasets, *shape, "train")
    except DatasetError as exc:
        raise InvalidRequestError(f"the run's dataset cannot be loaded: {exc}") from None
    extractor = request.extractor or settings.default_extractor or default_extractor(reference)
    check_extractor_id(extractor, reference)
    if not has_logits(extractor):
        metrics = _without_logit_metrics(metrics, extractor, explicit=bool(request.metrics))
    if held_out is None:  # the default set adapts to a run without held-out data
        metrics = without_held_out_metrics(request, metrics, split, "data")
    metrics = _without_label_metrics(metrics, _missing_labels(request.run, info, reference), explicit=bool(request.metrics))
    params = split_params(dict(request.params), metrics, n)
    seed, variant = seed_and_variant(request, settings, params)
    default_set = not variant and not request.metrics and n == settings.default_num_samples and resize_mode == settings.default_resize_mode \
        and extractor == (settings.default_extractor or default_extractor(reference))
    return Plan(
        run=request.run, step=step, num_samples=n, metrics=metrics, extractor=extractor, resize_mode=resize_mode,
        seed=seed, params=params, run_info=info, reference=reference, held_out=held_out, default_metrics=not request.metrics,
        variant=variant, default_set=default_set, classifier_dataset=classifier_dataset, kind="image",
    )


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


def _asked_of(inputs: set[str], side: str) -> set[str]:
    """What is asked of one side: {"features", "images", ...} from inputs named `<side>.<what>`."""
    return {i.partition(".")[2] for i in inputs if i.startswith(f"{side}.")}


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


def _held_out(store, p: Plan, extractor: Extractor, settings: EvaluatorSettings, asked: set[str]) -> Samples:
    """The held-out side with what is asked of it: features cost an extractor pass over the split, pixels and labels nothing."""
    images, labels = reference_subset(p.held_out, settings.max_reference_samples)
    images = images if "images" in asked else None
    if asked <= {"images", "labels"}:
        return Samples(None, None, None, labels=labels, images=images)
    return _side(load_or_compute(store, p.held_out, extractor, p.resize_mode, settings.max_reference_samples, settings.batch_size)[0], extractor, images)


def run(store, p: Plan, settings: EvaluatorSettings, extractors: ExtractorCache, progress: Progress) -> dict:
    """Reference statistics (cached), samples from the generator through the extractor (fanned out over Ray when large), metrics, report."""
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
    if _asked_of(inputs, "held_out"):
        sides["held_out"] = _held_out(store, p, extractor, settings, _asked_of(inputs, "held_out"))
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
    values, warnings = compute_metrics(metrics, sides, p.params)
    now = time.monotonic()
    marks = sorted(phases.items(), key=lambda kv: kv[1]) + [("end", now)]
    report = {
        "run": p.run, "step": p.step, "metrics": values, "metric_names": p.metrics, "metrics_set": p.metrics_set,
        "extractor": extractor.id, "input_scaling": extractor.input_scaling, "feature_precision": extractor.precision_record(), "resize_mode": p.resize_mode, "num_samples": p.num_samples, "seed": p.seed,
        "params": p.params, "dataset_id": p.reference.id, "reference_samples": reference.count, "reference_cached": cached,
        "held_out_dataset_id": p.held_out.id if sides["held_out"] is not None else None,
        "model_sha256": model.sha256, "generator": settings.generator, "feature_workers": generated.workers, "warnings": warnings,
        "extractor_info": {k: v for k, v in extractor.source.items() if k in ("sha256", "test_accuracy", "dataset_id", "weights")},
        "created_at": created_at, "duration_seconds": round(now - started, 3),
        "phase_seconds": {name: round(nxt[1] - t, 3) for (name, t), nxt in zip(marks, marks[1:])},
        "code_version": __version__,
    }
    return write_report(store, p, report, progress)
