"""Evaluating a translation run (cyclegan): held-out images of each domain through the served model's Translate call.

For each direction (a_to_b: domain A's held-out images made into B, b_to_a the reverse) the evaluator takes up to
`num_samples` held-out images of the source domain (a seeded choice when there are more), translates them with the
generator service exactly as a backend would, and translates the results back. Then:

- translation_fid / translation_kid: the translations' features against the real target domain's (its training
  images, the run's reference, cached like an image run's reference statistics), with the run's extractor;
- cycle_consistency: how far the round trip lands from the original (0..1 pixel scale);
- translation_success: the share of translations the judge puts in the target domain. The judge is the classifier
  of the labelled dataset both domains are class subsets of (`fashion-mnist:sneaker` ↔ `fashion-mnist:ankle-boot`
  are judged by the Fashion-MNIST classifier), fitted and stored by the evaluator like any dataset classifier.
  Domains from two datasets, or a domain that is a whole dataset, have no such judge: the default set leaves the
  metric out and an explicit ask for it is refused with the reason.

Without a held-out split (a run trained with --split all) the training images are translated, and the report says so.
"""

from __future__ import annotations

import time

import numpy as np

from evaluator_service.cache import BoundedCache
from evaluator_service.compute import compute_metrics
from evaluator_service.errors import InvalidRequestError
from evaluator_service.features import ExtractorCache, check_extractor_id, check_resize_mode, default_extractor
from evaluator_service.features import classifier as classifier_extractor
from evaluator_service.metrics import get_metric
from evaluator_service.metrics.spec import REFERENCE_DOMAINS
from evaluator_service.plan import (Domains, EvaluationRequest, Plan, Progress, cached_dataset, num_samples, requested_metrics, seed_and_variant,
                                    split_params)
from evaluator_service.privacy import is_private
from evaluator_service.reference import load_or_compute
from evaluator_service.reports import write_report
from evaluator_service.sampler import GeneratorSampler, GeneratorTarget
from evaluator_service.samples import DIRECTIONS, DirectionSamples
from evaluator_service.settings import EvaluatorSettings
from evaluator_service.stats import FeatureStats
from ganworks import __version__, subset
from ganworks.data import ImageDataset
from ganworks.errors import DatasetError

# direction -> (source domain, target domain, the direction back)
ROUTES = {"a_to_b": ("a", "b", "b_to_a"), "b_to_a": ("b", "a", "a_to_b")}


def _judge(specs: dict[str, str], image_size: int, channels: int, load) -> tuple[tuple[str, ImageDataset, str] | None, str, dict[str, tuple[int, ...]]]:
    """The classifier that can tell the two domains apart: that of the one labelled dataset both are class subsets of."""
    parsed = {k: subset.parse(spec) for k, spec in specs.items()}
    bases = {base for base, _ in parsed.values()}
    if len(bases) != 1:
        return None, f"its domains come from two datasets ({specs['a']} and {specs['b']}), so no one classifier knows both", {}
    base = bases.pop()
    if not all(restriction.classes for _, restriction in parsed.values()):
        return None, f"a domain is the whole of {base} rather than some of its classes (e.g. {base}:3 and {base}:5)", {}
    dataset = load(base, image_size, channels, "train")
    if dataset.labels is None or dataset.num_classes < 2:
        return None, f"dataset {base} has no class labels to judge the domains by", {}
    classes = {k: tuple(subset.class_indices(restriction, dataset.class_names, base)) for k, (_, restriction) in parsed.items()}
    if set(classes["a"]) & set(classes["b"]):
        return None, f"its domains share classes of {base}, so a classifier cannot tell them apart", {}
    targets = {d: classes[ROUTES[d][1]] for d in DIRECTIONS}
    return (classifier_extractor.extractor_id(dataset), dataset, base), "", targets


def check_run_info(dataset: dict, where: str) -> None:
    """run.json names both domains and the image shape."""
    if not all(isinstance(dataset.get(k), dict) and "spec" in dataset[k] for k in ("domain_a", "domain_b")) or not {"image_size", "channels"} <= set(dataset):
        raise InvalidRequestError(f"{where} has no spec of domain_a/domain_b or no image_size/channels; the evaluator cannot tell what the run translates")


def plan(store, request: EvaluationRequest, settings: EvaluatorSettings, datasets: BoundedCache, info: dict, step: int) -> Plan:
    """Both domains' images, the extractor, the judge, and the translation metrics."""
    if is_private(info):  # evaluator_service/privacy.py plans image and table runs on held-out data; no such plan here
        raise InvalidRequestError(f"run {request.run!r} is private (run.json has privacy), and translation runs have no private evaluation; "
                                  "evaluate a copy of the run without privacy if its data may be used for evaluation")
    ds = info["dataset"]
    metrics = requested_metrics(request, "translation")
    n = num_samples(request, settings)
    resize_mode = check_resize_mode(request.resize_mode or settings.default_resize_mode)
    split = ds.get("split", "train")
    size, channels = int(ds["image_size"]), int(ds["channels"])
    specs = {"a": ds["domain_a"]["spec"], "b": ds["domain_b"]["spec"]}

    def load(spec: str, image_size: int, chans: int, which: str) -> ImageDataset:
        return cached_dataset(datasets, spec, image_size, chans, which)

    try:
        train = {k: load(spec, size, channels, split) for k, spec in specs.items()}
        held_out = split == "train"
        sources = {k: load(spec, size, channels, "test") for k, spec in specs.items()} if held_out else train
        judge, judge_missing, targets = _judge(specs, size, channels, load)
    except DatasetError as exc:
        raise InvalidRequestError(f"the run's domains cannot be loaded: {exc}") from None
    if judge is None and "translation_success" in metrics:
        if request.metrics:
            raise InvalidRequestError(f"translation_success needs a classifier of both domains, but for run {request.run!r} {judge_missing}; drop translation_success from the metrics")
        metrics.remove("translation_success")
    extractor_dataset, extractor_spec = (judge[1], judge[2]) if judge is not None else (train["b"], specs["b"])
    default_extractor_id = settings.default_extractor or (judge[0] if judge is not None else default_extractor(train["b"]))
    extractor = request.extractor or default_extractor_id
    check_extractor_id(extractor, extractor_dataset)
    params = split_params(dict(request.params), metrics, n)
    seed, variant = seed_and_variant(request, settings, params)
    domains = Domains(specs, train, sources, held_out, extractor_dataset, extractor_spec, judge, judge_missing, targets)
    return Plan(run=request.run, step=step, num_samples=n, metrics=metrics, extractor=extractor, resize_mode=resize_mode, seed=seed, params=params,
                run_info=info, reference=train["b"], held_out=sources["b"] if held_out else None, default_metrics=not request.metrics, variant=variant,
                default_set=not variant and not request.metrics and n == settings.default_num_samples and resize_mode == settings.default_resize_mode
                and extractor == default_extractor_id, domains=domains, kind="translation", dataset_id=ds.get("id") or train["b"].id)


def _pick(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n of the images (all when there are no more): a seeded choice, in their stored order."""
    if len(images) <= n:
        return images
    return images[np.sort(np.random.default_rng(seed).permutation(len(images))[:n])]


def run(store, p: Plan, settings: EvaluatorSettings, extractors: ExtractorCache, progress: Progress) -> dict:
    """Each direction's held-out images translated (and back) by the generator service, their features and the judge's classes, metrics, report."""
    started, created_at = time.monotonic(), time.time()
    domains = p.domains
    metrics = [get_metric(name) for name in p.metrics]
    inputs = {i for m in metrics for i in m.inputs}
    wants_features = REFERENCE_DOMAINS in inputs
    wants_cycle = "cycle_consistency" in p.metrics
    progress("extractor", 0.01)
    extractor = extractors.get(p.extractor, domains.extractor_dataset, domains.extractor_spec) if wants_features else None
    judge = None
    if "translation_success" in p.metrics:
        judge_id, judge_dataset, judge_spec = domains.judge
        judge = extractor if extractor is not None and extractor.id == judge_id else extractors.get(judge_id, judge_dataset, judge_spec)
    real, fake = DirectionSamples(), DirectionSamples(target_classes=dict(domains.target_classes))
    reference_counts = {}
    if wants_features:
        progress("reference", 0.05)
        for d in DIRECTIONS:
            ref, _ = load_or_compute(store, domains.train[ROUTES[d][1]], extractor, p.resize_mode, settings.max_reference_samples, settings.batch_size)
            real.features[d], real.stats[d], reference_counts[d] = ref.features, ref.stats, ref.count
    progress("translating", 0.2)
    with GeneratorSampler(GeneratorTarget.from_settings(settings)) as sampler:
        model = sampler.describe(p.run, p.step)
        for i, d in enumerate(DIRECTIONS):
            source, _, back = ROUTES[d]
            images = _pick(domains.sources[source].images, p.num_samples, p.seed + i)
            translated = sampler.translate_images(p.run, p.step, images, d)
            fake.sources[d] = images
            if wants_cycle:
                fake.cycled[d] = sampler.translate_images(p.run, p.step, translated, back)
            if extractor is not None:
                features, _ = extractor.extract(translated, p.resize_mode, settings.batch_size)
                fake.features[d], fake.stats[d] = features, FeatureStats.of(features)
            if judge is not None:
                fake.predicted[d] = judge.extract(translated, p.resize_mode, settings.batch_size)[1].argmax(1)
            progress("translating", 0.2 + 0.35 * (i + 1))
    progress("metrics", 0.9)
    values, warnings = compute_metrics(metrics, {"reference": real, "held_out": None, "generated": fake}, p.params)
    if not domains.held_out:
        warnings.append(f"run {p.run!r} trained on every image of both domains (split {p.run_info['dataset'].get('split')!r}): its training images were translated, not held-out ones")
    report = {
        "run": p.run, "step": p.step, "metrics": values, "metric_names": p.metrics, "metrics_set": p.metrics_set,
        "extractor": p.extractor, "input_scaling": extractor.input_scaling if extractor is not None else None, "resize_mode": p.resize_mode,
        "num_samples": p.num_samples, "seed": p.seed, "params": p.params, "dataset_id": p.dataset_id,
        "domains": {k: {"spec": spec, "train_dataset_id": domains.train[k].id, "source_dataset_id": domains.sources[k].id} for k, spec in domains.specs.items()},
        "translated": {d: len(fake.sources[d]) for d in DIRECTIONS}, "reference_samples": reference_counts,
        "held_out_dataset_id": domains.sources["b"].id if domains.held_out else None,
        "judge": {"extractor": domains.judge[0], "dataset_id": domains.judge[1].id, "target_classes": {d: list(c) for d, c in domains.target_classes.items()}}
        if judge is not None else None,
        "model_sha256": model.sha256, "generator": settings.generator, "warnings": warnings,
        "extractor_info": {k: v for k, v in extractor.source.items() if k in ("sha256", "test_accuracy", "dataset_id", "weights")} if extractor is not None else {},
        "created_at": created_at, "duration_seconds": round(time.monotonic() - started, 3), "code_version": __version__,
    }
    return write_report(store, p, report, progress)

