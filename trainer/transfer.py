"""Starting a run from another run's published snapshot (`ganworks train --init-from RUN[@STEP]`): transfer learning.

The source snapshot gives G_ema, the raw G and D (published with every snapshot as safetensors; see
`ganworks.checkpoint`). Everything is checked on the driver before Ray starts: the source exists and is
complete, it was trained with the same family and hyperparameters, and every tensor fits. The one allowed
difference is the class count of a conditional model: the weights whose shape follows the number of classes
(class embeddings, projections) start each at the source class its images resemble most (`--new-class-init
nearest`, the default: the source discriminator's class projection scored on the new run's own images, each source
class given to one new class while there are enough), fresh (`random`), or at the mean of the source's classes (`mean`);
the family decides what starting at a source class means for its layers. The rest is kept. The workers then
load the checked bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ganworks.checkpoint import list_snapshots, load_snapshot, load_training_weights, read_latest, read_manifest
from ganworks.errors import CheckpointError, ConfigError, ObjectNotFoundError
from ganworks.layout import run_info_key
from ganworks.models import ModelFamily
from ganworks.store import ArtifactStore
from trainer.config import DEFAULT_NEW_CLASS_INIT, class_map

log = logging.getLogger("trainer.transfer")

_SPEC = re.compile(r"^(?P<run>[^@]+?)(?:@(?P<step>\d+))?$")
FLAG = "--init-from"
# The roles of the weights a new run starts from, and the network each one is loaded into.
ROLES = ("generator_ema", "generator", "discriminator")


@dataclasses.dataclass
class InitSource:
    """A checked source snapshot: the weights the new run starts from by role, and the tensors not taken as they are."""

    run: str
    step: int
    sha256: str
    num_classes: int
    weights: dict[str, bytes]  # role -> safetensors bytes, the class-indexed tensors already at the new class count
    reinitialised: dict[str, list[str]]  # role -> state keys whose shape follows the class count
    kept_fresh: dict[str, list[str]]  # role -> the keys each worker keeps at its own fresh initialisation
    new_class_init: str = "random"
    class_start: dict[str, str] | None = None  # --new-class-init nearest: new class name -> the source class it started at

    def describe(self) -> dict[str, Any]:
        """What run.json records about where the run started."""
        record = {"run": self.run, "step": self.step, "sha256": self.sha256, "num_classes": self.num_classes,
                  "reinitialised": {role: keys for role, keys in self.reinitialised.items() if keys}}
        if record["reinitialised"]:
            record["new_class_init"] = self.new_class_init
        if self.class_start:
            record["class_start"] = dict(self.class_start)
        return record


def parse_spec(text: str) -> tuple[str, int | None]:
    match = _SPEC.match(text.strip())
    if not match:
        raise ConfigError(f"{FLAG} {text!r} is not RUN or RUN@STEP (for example {FLAG} digits-base@2000)")
    return match["run"], int(match["step"]) if match["step"] is not None else None


def find_source(store: ArtifactStore, text: str, started: dict | None = None):
    """The manifest of the snapshot `text` names (RUN: its LATEST); ConfigError naming the flag when there is none.

    started is the `init_from` a resumed run recorded in its run.json: RUN without a step then means the step the run
    started from, not the source's LATEST of today (which may have moved on since)."""
    run, step = parse_spec(text)
    if step is None and started and started.get("run") == run:
        step = int(started["step"])
    try:
        latest = read_latest(store, run)
        steps = list_snapshots(store, run)
    except CheckpointError as exc:
        raise ConfigError(f"{FLAG} {text!r}: cannot read run {run!r} in {store.url}: {exc}") from None
    if latest is None and not steps:
        raise ConfigError(f"{FLAG} {text!r}: {store.url} has no published snapshot of run {run!r}; `ganworks runs` lists the runs there")
    if step is None:
        step = latest if latest is not None else steps[-1]
    elif step not in steps:
        shown = ", ".join(str(s) for s in steps[-10:])
        raise ConfigError(f"{FLAG} {text!r}: run {run!r} has no complete snapshot at step {step}; its published steps end with: {shown}")
    try:
        return read_manifest(store, run, step)
    except CheckpointError as exc:
        raise ConfigError(f"{FLAG} {text!r}: {exc}") from None


def source_params(family: ModelFamily, manifest) -> dict[str, Any]:
    """The source's settable hyperparameters: the new run's defaults, so `--init-from` alone gives the same architecture."""
    return {key: value for key, value in manifest.architecture_params.items() if key in family.settable()}


def check_source(store: ArtifactStore, text: str, manifest, family: ModelFamily, params: dict[str, Any], freeze_d_blocks: int,
                 new_class_init: str | None = None, dataset=None, recorded_start: dict[str, str] | None = None) -> InitSource:
    """Checks that the new run's networks can start from the source snapshot and loads its verified weights.

    new_class_init None is the default (DEFAULT_NEW_CLASS_INIT); one given for a run with the source's class
    count is refused. dataset (an ImageDataset with labels) is the new run's training data: `nearest` scores its images,
    unless recorded_start (a resumed run's `class_start`) already says which source class each new class began at."""
    where = f"{FLAG} {text!r} ({manifest.run} step {manifest.step})"
    if manifest.architecture != family.name:
        raise ConfigError(f"{where} is a {manifest.architecture} snapshot; train with --model {manifest.architecture} to start from it")
    source = family.validate(manifest.architecture_params)
    differ = sorted(key for key in source if key != "num_classes" and source[key] != params.get(key))
    if differ:
        said = ", ".join(f"{key}: source {source[key]!r}, this run {params.get(key)!r}" for key in differ)
        raise ConfigError(f"{where} has another architecture ({said}); the weights cannot carry over — match the source "
                          f"(--image-size, --channels, --model-param) or train from scratch")
    old_classes, new_classes = source.get("num_classes", 0), params.get("num_classes", 0)
    if bool(old_classes) != bool(new_classes):
        hint = "add --conditional" if old_classes else "drop --conditional"
        raise ConfigError(f"{where} is {'conditional with %d classes' % old_classes if old_classes else 'unconditional'}, "
                          f"this run is {'conditional' if new_classes else 'unconditional'}: {hint}, or train from scratch")
    try:
        weights = load_training_weights(store, manifest.run, manifest.step)
        ema = load_snapshot(store, manifest.run, manifest.step).generator
    except CheckpointError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    missing = sorted(set(ROLES[1:]) - set(weights))
    if missing:
        raise ConfigError(f"{where} was published without its {' and '.join(missing)} weights (by an older ganworks), so training "
                          "cannot start from it; choose a snapshot published by this version")
    weights["generator_ema"] = save_safetensors({k: v.contiguous() for k, v in ema.state_dict().items()})
    networks = {"generator_ema": family.build_generator(params), "generator": family.build_generator(params), "discriminator": family.build_discriminator(params)}
    reinitialised = {role: _fitting(where, role, load_safetensors(weights[role]), networks[role].state_dict(), old_classes, new_classes) for role in ROLES}
    kept_fresh, class_start, resized = dict(reinitialised), None, any(reinitialised.values())
    if new_class_init not in (None, "random") and not resized:
        raise ConfigError(f"--new-class-init {new_class_init}: {where} has the same {new_classes} classes as this run, so every class "
                          "embedding carries over as it is and there are no new classes to start; drop the flag")
    new_class_init = new_class_init or DEFAULT_NEW_CLASS_INIT
    if new_class_init != "random" and resized:
        if new_class_init == "mean":
            mix = torch.full((new_classes, old_classes), 1.0 / old_classes)
        elif (named := class_map(new_class_init)) is not None:
            mix, class_start = _named_classes(store, manifest, source, dataset, named)
            log.info("new classes start at the source class --new-class-init names: %s", ", ".join(f"{new} → {old}" for new, old in class_start.items()))
        else:
            recorded = _recorded_classes(store, manifest, source, dataset, recorded_start)
            mix, class_start = recorded or _nearest_classes(store, manifest, family, source, weights["discriminator"], dataset)
            log.info("new classes start at the source class %s: %s", "recorded when the run began" if recorded else "their images resemble most",
                     ", ".join(f"{new} → {old}" for new, old in class_start.items()))
        for role in ROLES:
            if reinitialised[role]:
                weights[role], kept_fresh[role] = _inherit_classes(family, role, weights[role], reinitialised[role], networks[role], mix)
    if freeze_d_blocks:
        try:
            blocks = family.discriminator_blocks(networks["discriminator"])
        except Exception as exc:  # noqa: BLE001 - the family says why in its message
            raise ConfigError(f"--freeze-d-blocks: {exc}") from None
        if freeze_d_blocks > len(blocks):
            raise ConfigError(f"--freeze-d-blocks {freeze_d_blocks}: this {family.name} discriminator has {len(blocks)} blocks")
    return InitSource(manifest.run, manifest.step, manifest.sha256, old_classes, weights, reinitialised, kept_fresh, new_class_init, class_start)


# --new-class-init nearest scores at most this many images of each new class.
NEAREST_IMAGES_PER_CLASS = 256


@torch.no_grad()
def _nearest_classes(store: ArtifactStore, manifest, family: ModelFamily, source_params: dict[str, Any], d_weights: bytes,
                     dataset) -> tuple[torch.Tensor, dict[str, str]]:
    """For each new class, the source class whose label the source discriminator finds most fitting for the new
    class's images, as one-hot rows of a mix matrix (new × source classes), and that choice by class name.

    D(x, k) for every source class k differs between the k only by D's class projection, so the mean over a new
    class's images of D(x, k), centred per new class, says how much each source class's conditioning fits them.
    New classes are matched greedily, best fit first, and each source class is given to at most ceil(new/source)
    new classes, so that new classes start apart (starting them alike is what makes `mean` slow)."""
    old, new = int(source_params["num_classes"]), int(dataset.num_classes) if dataset is not None else 0
    if dataset is None or dataset.labels is None or new == 0:
        raise ConfigError("--new-class-init nearest compares the new classes' images with the source's classes: it needs a labelled --dataset and --conditional")
    discriminator = family.build_discriminator(source_params)
    discriminator.load_state_dict(load_safetensors(d_weights))
    discriminator.eval()
    log.info("--new-class-init nearest: scoring up to %d images of each of %d new classes with %s step %d's discriminator under its %d labels",
             NEAREST_IMAGES_PER_CLASS, new, manifest.run, manifest.step, old)
    scores = torch.zeros(new, old)
    for c in range(new):
        chosen = np.flatnonzero(dataset.labels == c)[:NEAREST_IMAGES_PER_CLASS]
        if not len(chosen):
            raise ConfigError(f"--new-class-init nearest: class {dataset.class_names[c] if dataset.class_names else c!r} of --dataset has no "
                              "images to compare with the source's classes; give it images or use --new-class-init random")
        scores[c] = family.class_scores(discriminator, dataset.tensors(chosen), old).float().mean(dim=0)
    scores -= scores.mean(dim=1, keepdim=True)
    capacity, given, start = math.ceil(new / old), [0] * old, [-1] * new
    for flat in torch.argsort(scores.flatten(), descending=True).tolist():
        c, k = divmod(flat, old)
        if start[c] < 0 and given[k] < capacity:
            start[c], given[k] = k, given[k] + 1
    new_names, old_names = _class_names(dataset), _source_class_names(store, manifest.run, old)
    return _one_hot(start, old), {new_names[c]: old_names[start[c]] for c in range(new)}


def _recorded_classes(store: ArtifactStore, manifest, source_params: dict[str, Any], dataset, recorded: dict[str, str] | None) -> tuple[torch.Tensor, dict[str, str]] | None:
    """The match a resumed run recorded when it began, as _nearest_classes gives it, so a resume neither scores
    again nor can start otherwise; None when there is no record or it does not name every class."""
    if not recorded or dataset is None or dataset.labels is None:
        return None
    new_names, old_names = _class_names(dataset), _source_class_names(store, manifest.run, int(source_params["num_classes"]))
    if set(recorded) != set(new_names) or not set(recorded.values()) <= set(old_names):
        return None
    return _starting_at(recorded, new_names, old_names)


def _named_classes(store: ArtifactStore, manifest, source_params: dict[str, Any], dataset, named: dict[str, str]) -> tuple[torch.Tensor, dict[str, str]]:
    """--new-class-init NEW=SOURCE,...: the mix matrix and the match, with every new class named once and every source
    class one the source has; ConfigError naming the flag and both runs' class names otherwise."""
    if dataset is None or dataset.labels is None:
        raise ConfigError("--new-class-init NEW=SOURCE names the new run's classes: it needs a labelled --dataset and --conditional")
    new_names, old_names = _class_names(dataset), _source_class_names(store, manifest.run, int(source_params["num_classes"]))
    unknown_new = [name for name in named if name not in new_names]
    unnamed = [name for name in new_names if name not in named]
    unknown_old = sorted({old for old in named.values() if old not in old_names})
    if unknown_new or unnamed or unknown_old:
        said = "; ".join(part for part in (
            unknown_new and f"names {', '.join(map(repr, unknown_new))}, which --dataset does not have",
            unnamed and f"names no start for {', '.join(map(repr, unnamed))}",
            unknown_old and f"names source class(es) {', '.join(map(repr, unknown_old))}, which {manifest.run} does not have") if part)
        raise ConfigError(f"--new-class-init {said}. Name one source class for each new class ({', '.join(new_names)}) "
                          f"from the source's ({', '.join(old_names)})")
    return _starting_at(named, new_names, old_names)


def _starting_at(start: dict[str, str], new_names: list[str], old_names: list[str]) -> tuple[torch.Tensor, dict[str, str]]:
    """A checked {new class: source class} as the mix matrix and the match in the new run's class order."""
    return _one_hot([old_names.index(start[name]) for name in new_names], len(old_names)), {name: start[name] for name in new_names}


def _class_names(dataset) -> list[str]:
    """The new run's class names; the class indices as text when the dataset has none."""
    count = int(dataset.num_classes)
    return list(dataset.class_names) if len(dataset.class_names) == count else [str(c) for c in range(count)]


def _one_hot(start: list[int], old: int) -> torch.Tensor:
    """The mix matrix (new × source classes) that starts new class c at source class start[c]."""
    mix = torch.zeros(len(start), old)
    mix[torch.arange(len(start)), torch.tensor(start)] = 1.0
    return mix


def _source_class_names(store: ArtifactStore, run: str, count: int) -> list[str]:
    """The source run's class names from its run.json; the class indices as text when it has none."""
    try:
        names = store.get_json(run_info_key(run)).get("dataset", {}).get("class_names") or []
    except (ObjectNotFoundError, ValueError):  # no run.json (a snapshot published alone) or not JSON: names are informative only
        names = []
    return [str(n) for n in names] if len(names) == count else [str(k) for k in range(count)]


def _inherit_classes(family: ModelFamily, role: str, data: bytes, keys: list[str], network: torch.nn.Module, mix: torch.Tensor) -> tuple[bytes, list[str]]:
    """The source weights with each class-indexed parameter started from the source's classes as `mix` says (the
    family's `new_class_weights`), and the keys left fresh: buffers such as spectral norm's power-iteration vectors,
    which re-converge by themselves, and tensors indexed by the class count along more than one axis."""
    state, target, parameters = load_safetensors(data), network.state_dict(), dict(network.named_parameters())
    fresh = []
    for key in keys:
        axes = [axis for axis, (a, b) in enumerate(zip(state[key].shape, target[key].shape)) if a != b]
        if key not in parameters or len(axes) != 1:
            fresh.append(key)
            continue
        state[key] = family.new_class_weights(role, key, state[key], axes[0], mix).to(target[key].dtype).contiguous()
        if state[key].shape != target[key].shape:
            raise ConfigError(f"{FLAG}: the {family.name} family started {role} {key} at shape {tuple(state[key].shape)}, not {tuple(target[key].shape)}")
    return save_safetensors(state), fresh


def _fitting(where: str, role: str, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], old_classes: int, new_classes: int) -> list[str]:
    """The keys that start fresh (their shape follows the class count); ConfigError for any other mismatch."""
    if set(source) != set(target):
        extra, absent = sorted(set(source) - set(target)), sorted(set(target) - set(source))
        raise ConfigError(f"{where}: its {role} does not fit this run's network (unexpected {extra[:5]}, missing {absent[:5]})")
    fresh = []
    for key, tensor in source.items():
        want = target[key].shape
        if tensor.shape == want:
            continue
        follows_classes = len(tensor.shape) == len(want) and all(a == b or (a, b) == (old_classes, new_classes) for a, b in zip(tensor.shape, want))
        if not follows_classes:
            raise ConfigError(f"{where}: its {role} tensor {key} has shape {tuple(tensor.shape)}, this run's network {tuple(want)}")
        fresh.append(key)
    return sorted(fresh)  # safetensors does not keep an order, and run.json's record is compared on resume


def load_into(weights: dict[str, bytes], kept_fresh: dict[str, list[str]], networks: dict[str, torch.nn.Module]) -> None:
    """Loads the checked start weights into the new run's freshly built networks; the `kept_fresh` keys keep their fresh values."""
    for role, module in networks.items():
        state = {k: v for k, v in load_safetensors(weights[role]).items() if k not in set(kept_fresh.get(role, ()))}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or sorted(missing) != sorted(kept_fresh.get(role, ())):
            raise ConfigError(f"{FLAG}: the {role} weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})")


def freeze_blocks(family: ModelFamily, discriminator: torch.nn.Module, count: int) -> None:
    """FreezeD: the first `count` discriminator blocks (from the input side) keep the source's weights."""
    for block in family.discriminator_blocks(discriminator)[:count]:
        block.requires_grad_(False)
