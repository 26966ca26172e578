"""The snapshot format and publish protocol: the contract between the trainer and the services.

A snapshot is weights (safetensors), an optional sample grid, optional files the model needs beside its weights
(a tabular model's transformer.json) and a manifest under the run's checkpoints, plus the run's LATEST
(written last: the newest complete step); `ganworks.layout` names the keys. Publishing is atomic by order:
weights, samples, files, manifest, then LATEST. A reader follows LATEST or complete manifests only and verifies
the sha256 of the weights and of every file before building the model. No pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ganworks.errors import CheckpointError, CheckpointFormatError, CheckpointIntegrityError, ConfigError, ModelConfigError, ObjectNotFoundError, SnapshotExistsError, SnapshotMissingError
from ganworks.layout import MANIFEST, RUNS, SAMPLES, TRAINING_WEIGHTS, WEIGHTS, check_run_id, checkpoints_prefix, latest_key, run_of_key, snapshot_key, stats_key, step_of_manifest_key
from ganworks.models import FAMILIES, get_family
from ganworks.store import ArtifactStore

FORMAT_VERSION = 1

# What a reader accepts before it builds anything (docs/security.md): a crafted manifest cannot make a reader
# read a huge object whole or allocate a model it cannot hold.
MAX_MANIFEST_BYTES = 1 * 2**20
MAX_LATEST_BYTES = 64
MAX_FILE_BYTES = 256 * 2**20  # a file published beside the weights (a tabular model's transformer.json)
MAX_WEIGHTS_BYTES = 4 * 2**30
MAX_GENERATOR_PARAMETERS = 2**28  # 268 M parameters, 1 GiB in float32: far above any family's largest preset
MAX_DESCRIBED = {"image_size": 4096, "channels": 4, "num_classes": 1_000_000, "latent_dim": 65_536}


@dataclasses.dataclass
class Manifest:
    """What a snapshot is: enough to rebuild and verify the generator from the store alone."""

    run: str
    step: int
    architecture: str
    architecture_params: dict[str, Any]
    image_size: int
    channels: int
    num_classes: int
    latent_dim: int
    sha256: str
    images_seen: int = 0
    created_at: float = dataclasses.field(default_factory=time.time)
    dataset_id: str = ""
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    # Files published beside the weights, name -> sha256 (e.g. transformer.json of a tabular model).
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    # sha256 of the training weights published with G_ema, by role (layout.TRAINING_WEIGHTS); empty in snapshots
    # published without them (older ganworks), which can be served and evaluated but not trained on from.
    training_weights: dict[str, str] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # The family's kind of run ("image", "table", "translation"); a manifest written before it was recorded gets its family's.
    kind: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = MANIFEST) -> "Manifest":
        if not isinstance(data, dict):
            raise CheckpointFormatError(f"{where} is not a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{where} has format_version {version!r}; this ganworks reads version {FORMAT_VERSION}. "
                f"Upgrade ganworks to read newer snapshots, or re-publish with this version"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = required - set(data)
        if missing:
            raise CheckpointFormatError(f"{where} misses fields {sorted(missing)}")
        try:
            manifest = cls(**{k: v for k, v in data.items() if k in names})
            manifest.step, manifest.image_size, manifest.channels = int(manifest.step), int(manifest.image_size), int(manifest.channels)
            manifest.num_classes, manifest.latent_dim = int(manifest.num_classes), int(manifest.latent_dim)
        except (TypeError, ValueError) as exc:
            raise CheckpointFormatError(f"{where} has a field of the wrong type: {exc}") from None
        if not isinstance(manifest.files, dict) or not all(isinstance(v, str) and _plain_name(k) for k, v in manifest.files.items()):
            raise CheckpointFormatError(f"{where}: files must map plain file names to sha256 digests, got {manifest.files!r:.200}")
        for name, most in MAX_DESCRIBED.items():
            if not 0 <= getattr(manifest, name) <= most:
                raise CheckpointFormatError(f"{where}: {name} is {getattr(manifest, name)}, outside what this ganworks builds (0 to {most}); the snapshot is refused")
        if not isinstance(manifest.architecture, str) or not isinstance(manifest.architecture_params, dict):
            raise CheckpointFormatError(f"{where}: architecture must be a name and architecture_params a JSON object")
        if not manifest.kind and manifest.architecture in FAMILIES:
            manifest.kind = FAMILIES[manifest.architecture].kind
        return manifest


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


@dataclasses.dataclass
class Snapshot:
    manifest: Manifest
    generator: torch.nn.Module
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # the manifest's files, verified


def _state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return save_safetensors(tensors, metadata={"format": "pt"})


def publish_snapshot(
    store: ArtifactStore,
    *,
    run: str,
    step: int,
    generator_state: dict[str, torch.Tensor],
    architecture: str,
    architecture_params: dict[str, Any],
    images_seen: int = 0,
    dataset_id: str = "",
    metrics: dict[str, float] | None = None,
    samples_png: bytes | None = None,
    files: dict[str, bytes] | None = None,
    training_states: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Manifest:
    """Publishes a generator snapshot: weights, training weights, samples, manifest, then LATEST (only if step is newer).

    training_states holds the raw generator's and the discriminator's state by role ("generator",
    "discriminator"), so another run can start from this snapshot (`ganworks train --init-from`).

    A complete snapshot is immutable: publishing the same weights again (a retried attempt) only makes
    sure LATEST is set; other weights for an existing step raise SnapshotExistsError, so readers that
    loaded or evaluated that snapshot are never contradicted.
    """
    if step < 0:
        raise ConfigError(f"snapshot step must be >= 0, got {step}")
    check_run_id(run)
    family = get_family(architecture)
    weights = _state_bytes(generator_state)
    digest = hashlib.sha256(weights).hexdigest()
    files = dict(files or {})
    for name in files:
        if name in (WEIGHTS, MANIFEST, SAMPLES, *TRAINING_WEIGHTS.values()) or not _plain_name(name):
            raise ConfigError(f"snapshot file name {name!r} is reserved or not a plain file name")
    unknown = set(training_states or {}) - set(TRAINING_WEIGHTS)
    if unknown:
        raise ConfigError(f"unknown training weights {sorted(unknown)}; a snapshot holds {sorted(TRAINING_WEIGHTS)}")
    extra = {role: _state_bytes(state) for role, state in (training_states or {}).items()}
    try:
        existing = read_manifest(store, run, step)
    except CheckpointError:
        existing = None  # none, or a partial one (weights without a manifest), which is safe to replace
    if existing is not None:
        if existing.sha256 != digest or existing.files != {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}:
            raise SnapshotExistsError(
                f"run {run!r} already has a complete snapshot at step {step} with other weights; published snapshots "
                "are immutable (a resumed run skips the steps an earlier attempt published)"
            )
        _advance_latest(store, run, step)
        return existing
    manifest = Manifest(
        run=run,
        step=step,
        architecture=architecture,
        architecture_params=dict(architecture_params),
        **family.describe(family.validate(architecture_params)),
        sha256=digest,
        images_seen=images_seen,
        dataset_id=dataset_id,
        metrics=dict(metrics or {}),
        files={name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        training_weights={role: hashlib.sha256(data).hexdigest() for role, data in extra.items()},
        kind=family.kind,
    )
    store.put_bytes(snapshot_key(run, step, WEIGHTS), weights)
    for role, data in extra.items():
        store.put_bytes(snapshot_key(run, step, TRAINING_WEIGHTS[role]), data)
    if samples_png is not None:
        store.put_bytes(snapshot_key(run, step, SAMPLES), samples_png, "image/png")
    for name, data in files.items():
        store.put_bytes(snapshot_key(run, step, name), data)
    store.put_json(snapshot_key(run, step, MANIFEST), manifest.to_json())
    _advance_latest(store, run, step)
    return manifest


def _advance_latest(store: ArtifactStore, run: str, step: int) -> None:
    try:
        current = read_latest(store, run)
    except CheckpointFormatError:
        current = None  # a corrupt LATEST must not stop publishing for good: the publisher owns it and rewrites it
    if current is None or step > current:
        store.put_bytes(latest_key(run), f"{step}\n".encode(), "text/plain")


def read_latest(store: ArtifactStore, run: str) -> int | None:
    """The step LATEST names, or None if the run has published nothing yet."""
    try:
        data = read_capped(store, latest_key(run), MAX_LATEST_BYTES)
    except ObjectNotFoundError:
        return None
    raw = data.decode("ascii", errors="replace").strip()
    # ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() then refuses or reads as another number.
    # The error never quotes the content: LATEST may be a link to a file that is not the store's to show.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise CheckpointFormatError(f"{store.url_for(latest_key(run))} does not hold a step number ({len(data)} bytes); the publisher writes digits and a newline")
    return int(raw)


def read_capped(store: ArtifactStore, key: str, limit: int) -> bytes:
    """An object's bytes, refused (CheckpointFormatError) when it is larger than limit: by its size before any byte is
    read, and by what was read if it grew in between. get_bytes keeps the store's retries of transient failures."""
    size = store.stat(key).size
    if size > limit:
        raise CheckpointFormatError(f"{store.url_for(key)} is {size} bytes, larger than the {limit} a reader accepts for it; refused unread")
    data = store.get_bytes(key)
    if len(data) > limit:
        raise CheckpointFormatError(f"{store.url_for(key)} is larger than the {limit} bytes a reader accepts for it (it grew while read); refused")
    return data


def list_snapshots(store: ArtifactStore, run: str) -> list[int]:
    """Steps of the run's complete snapshots (with a manifest), oldest first."""
    steps = {step_of_manifest_key(info.key) for info in store.list(checkpoints_prefix(run))}
    return sorted(steps - {None})


def list_runs(store: ArtifactStore) -> list[str]:
    return sorted({run_of_key(info.key) for info in store.list(RUNS)} - {None})


def read_manifest(store: ArtifactStore, run: str, step: int) -> Manifest:
    key = snapshot_key(run, step, MANIFEST)
    try:
        data = json.loads(read_capped(store, key, MAX_MANIFEST_BYTES))
    except ObjectNotFoundError:
        raise SnapshotMissingError(f"run {run!r} has no complete snapshot at step {step} ({store.url_for(key)} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointFormatError(f"{store.url_for(key)} is not valid JSON: {str(exc)[:120]}") from None
    return Manifest.from_json(data, store.url_for(key))


def resolve_step(store: ArtifactStore, run: str, step: int | None = None) -> int:
    """step itself, or the newest one LATEST names; CheckpointError if the run has none."""
    if step:
        return step
    latest = read_latest(store, run)
    if latest is None:
        raise CheckpointError(f"run {run!r} has no published snapshot in {store.url} yet (no {latest_key(run)})")
    return latest


def load_snapshot(store: ArtifactStore, run: str, step: int | None = None, device: str | torch.device = "cpu") -> Snapshot:
    """Loads, verifies and rebuilds a generator from the store alone (latest when step is None)."""
    step = resolve_step(store, run, step)
    manifest = read_manifest(store, run, step)
    family, params = check_buildable(manifest, store.url_for(snapshot_key(run, step, MANIFEST)))
    weights_key = snapshot_key(run, step, WEIGHTS)
    try:
        weights = read_capped(store, weights_key, MAX_WEIGHTS_BYTES)
    except ObjectNotFoundError:
        raise SnapshotMissingError(f"{store.url_for(weights_key)} is missing although its manifest exists; re-publish step {step}") from None
    digest = hashlib.sha256(weights).hexdigest()
    if digest != manifest.sha256:
        raise CheckpointIntegrityError(
            f"sha256 of {store.url_for(weights_key)} is {digest}, manifest says {manifest.sha256}; "
            "the upload was incomplete or the object was modified — the snapshot is refused"
        )
    files = {}
    for name, expected in manifest.files.items():
        key = snapshot_key(run, step, name)
        try:
            files[name] = read_capped(store, key, MAX_FILE_BYTES)
        except ObjectNotFoundError:
            raise SnapshotMissingError(f"{store.url_for(key)} is missing although its manifest lists it; re-publish step {step}") from None
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise CheckpointIntegrityError(f"sha256 of {store.url_for(key)} differs from the manifest's; the snapshot is refused")
    try:
        generator = family.build_generator(params)
    except Exception as exc:  # noqa: BLE001 - whatever the build meets, this manifest will meet again: a permanent refusal
        raise CheckpointFormatError(f"{store.url_for(snapshot_key(run, step, MANIFEST))} names a model this ganworks cannot build ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        state = load_safetensors(weights)
        generator.load_state_dict(state)
    except Exception as exc:  # safetensors and torch raise several types for a mismatched file
        raise CheckpointFormatError(f"{store.url_for(weights_key)} does not fit architecture {manifest.architecture!r} {str(manifest.architecture_params)[:300]}: {str(exc)[:300]}") from None
    generator.to(device).eval().requires_grad_(False)
    return Snapshot(manifest=manifest, generator=generator, files=files)


def check_buildable(manifest: Manifest, where: str) -> tuple[Any, dict[str, Any]]:
    """The manifest's family and validated hyperparameters, once its generator is known to fit MAX_GENERATOR_PARAMETERS.

    The generator is first built on torch's meta device (shapes only, no memory), so a manifest asking for a
    25 GB network is refused for the price of counting its parameters; the refusal is a CheckpointFormatError,
    which readers treat as permanent for that manifest.
    """
    try:
        family = get_family(manifest.architecture)
        params = family.validate(manifest.architecture_params)
        with torch.device("meta"):
            count = sum(p.numel() for p in family.build_generator(params).parameters())
    except ModelConfigError as exc:
        raise CheckpointFormatError(f"{where} names a model this ganworks cannot build: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a family that cannot even be described on the meta device cannot be built
        raise CheckpointFormatError(f"{where} names a model this ganworks cannot build ({type(exc).__name__}: {str(exc)[:200]})") from None
    if count > MAX_GENERATOR_PARAMETERS:
        raise CheckpointFormatError(f"{where} describes a generator of {count:,} parameters, above the {MAX_GENERATOR_PARAMETERS:,} a reader builds; the snapshot is refused")
    return family, params


def load_training_weights(store: ArtifactStore, run: str, step: int) -> dict[str, bytes]:
    """The verified safetensors bytes of a complete snapshot's training weights, by role; {} if it has none."""
    manifest = read_manifest(store, run, step)
    found: dict[str, bytes] = {}
    for role, expected in manifest.training_weights.items():
        if role not in TRAINING_WEIGHTS:
            raise CheckpointFormatError(f"{store.url_for(snapshot_key(run, step, MANIFEST))} lists unknown training weights {role!r}")
        key = snapshot_key(run, step, TRAINING_WEIGHTS[role])
        try:
            data = store.get_bytes(key)
        except ObjectNotFoundError:
            raise SnapshotMissingError(f"{store.url_for(key)} is missing although its manifest lists it; re-publish step {step}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise CheckpointIntegrityError(f"sha256 of {store.url_for(key)} is {digest}, manifest says {expected}; the object was modified — refused")
        found[role] = data
    return found


def read_stats(store: ArtifactStore, run: str) -> list[dict]:
    """The trainer's stats.jsonl lines, oldest first; [] when the run has none yet."""
    try:
        raw = store.get_bytes(stats_key(run)).decode()
    except ObjectNotFoundError:
        return []
    lines = []
    for text in raw.splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue  # a line torn by an old crash: the rest is still useful
    return lines
