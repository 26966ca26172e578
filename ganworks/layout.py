"""The store layout: every key under `runs/`, `reference-stats/` and `extractors/` is built here and nowhere else.

    runs/<run>/run.json                                        options, dataset id, code version
    runs/<run>/checkpoints/<step:09d>/generator.safetensors    a snapshot's weights
    runs/<run>/checkpoints/<step:09d>/manifest.json            what the snapshot is (written after the weights)
    runs/<run>/checkpoints/<step:09d>/samples.png              a grid to look at
    runs/<run>/checkpoints/<step:09d>/transformer.json         tabular models: the fitted data transformer
    runs/<run>/LATEST                                          written last: the newest complete step
    runs/<run>/rollout.json                                    which step unpinned generator calls get (ganworks/rollout.py)
    runs/<run>/train_state/…                                   Ray Train checkpoints for resume (Ray names what is inside)
    runs/<run>/stats.jsonl                                     the trainer's statistics, one JSON line per interval
    runs/<run>/evals/<step:09d>/<metrics-set>.json             evaluator reports
    runs/<run>/tb/events.out.tfevents.trainer                  TensorBoard: the trainer's scalars and sample grids
    runs/<run>/tb/events.out.tfevents.<step:09d>.<metrics-set> TensorBoard: one evaluation's metrics
    reference-stats/<dataset-id>/<extractor-id>/<resize-mode>-<n>.npz
    extractors/<extractor-id>/<dataset-id>/{classifier.safetensors,manifest.json}
    extractors/<extractor-id>/{inception.safetensors,manifest.json}         imported weights, not tied to a dataset

Readers and writers on both sides of the store (trainer, generator, evaluator, `ganworks runs`) call these
functions, so a change to the layout is a change to this file.
"""

from __future__ import annotations

import re

from ganworks.errors import ConfigError, shown

RUNS = "runs/"
TRAIN_STATE = "train_state"  # the Ray Train run name, a folder under the run's prefix
# The files of a snapshot folder and of a fitted extractor's folder.
WEIGHTS = "generator.safetensors"
MANIFEST = "manifest.json"
SAMPLES = "samples.png"
TRANSFORMER = "transformer.json"  # beside a tabular model's weights; the manifest's `files` holds its sha256
# What a snapshot holds besides G_ema so another run can start from it (`ganworks train --init-from`):
# the raw generator and the discriminator, by role.
TRAINING_WEIGHTS = {"generator": "training-generator.safetensors", "discriminator": "training-discriminator.safetensors"}
EXTRACTOR_WEIGHTS = "classifier.safetensors"
IMPORTED_WEIGHTS = "inception.safetensors"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


def check_run_id(run: str) -> str:
    """The run id itself, or ConfigError: a run id is one path segment of the store."""
    if not isinstance(run, str) or not _RUN_ID.match(run) or ".." in run:
        raise ConfigError(f"invalid run id {shown(run)}: 1–128 characters of letters, digits, '.', '_', '-', starting with a letter or digit")
    return run


# -- runs/<run>/… ----------------------------------------------------------------------------------------------

def run_prefix(run: str) -> str:
    return f"{RUNS}{check_run_id(run)}"


def run_of_key(key: str) -> str | None:
    """The run a key under runs/ belongs to (None for keys outside a run folder)."""
    parts = key.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] + "/" == RUNS else None


def run_info_key(run: str) -> str:
    return f"{run_prefix(run)}/run.json"


def latest_key(run: str) -> str:
    return f"{run_prefix(run)}/LATEST"


def rollout_key(run: str) -> str:
    return f"{run_prefix(run)}/rollout.json"


def stats_key(run: str) -> str:
    return f"{run_prefix(run)}/stats.jsonl"


def train_state_key(run: str, name: str = "checkpoint_manager_snapshot.json") -> str:
    """A file Ray Train keeps in the run's train_state folder; by default its record of the registered checkpoints
    (what a restarted worker group resumes from)."""
    return f"{run_prefix(run)}/{TRAIN_STATE}/{name}"


def checkpoints_prefix(run: str) -> str:
    """Where every snapshot of the run lies (with a trailing slash, for listing)."""
    return f"{run_prefix(run)}/checkpoints/"


def snapshot_prefix(run: str, step: int) -> str:
    return f"{checkpoints_prefix(run)}{step:09d}"


def snapshot_key(run: str, step: int, name: str) -> str:
    """One file of a snapshot: WEIGHTS, MANIFEST, SAMPLES or one of TRAINING_WEIGHTS."""
    return f"{snapshot_prefix(run, step)}/{name}"


def step_of_manifest_key(key: str) -> int | None:
    """The step of a key `runs/<run>/checkpoints/<step>/manifest.json` (None for any other key)."""
    parts = key.split("/")
    if len(parts) == 5 and parts[2] == "checkpoints" and parts[4] == MANIFEST and parts[3].isdigit():
        return int(parts[3])
    return None


def evals_prefix(run: str, step: int) -> str:
    """Where the evaluator's reports on one snapshot lie (with a trailing slash, for listing)."""
    return f"{run_prefix(run)}/evals/{step:09d}/"


def eval_report_key(run: str, step: int, metrics_set: str) -> str:
    return f"{evals_prefix(run, step)}{metrics_set}.json"


def metrics_set_of_report_key(key: str) -> str | None:
    """The metrics-set name of a report key (None for other keys under evals/)."""
    name = key.rsplit("/", 1)[-1]
    return name[: -len(".json")] if name.endswith(".json") else None


def tensorboard_prefix(run: str) -> str:
    """The run's TensorBoard log folder (`tensorboard --logdir` on a synced copy of it)."""
    return f"{run_prefix(run)}/tb/"


def trainer_events_key(run: str) -> str:
    # TensorBoard reads every file with "tfevents" in its name; the trainer rewrites its one file whole.
    return f"{tensorboard_prefix(run)}events.out.tfevents.trainer"


def evaluator_events_key(run: str, step: int, metrics_set: str) -> str:
    """One file per evaluation, so a re-evaluation replaces its own numbers and nothing else."""
    return f"{tensorboard_prefix(run)}events.out.tfevents.{step:09d}.{metrics_set}"


# -- reference-stats/… and extractors/… -----------------------------------------------------------------------

def reference_stats_key(dataset_id: str, extractor: str, resize_mode: str, n: int) -> str:
    return f"reference-stats/{dataset_id}/{extractor}/{resize_mode}-{n}.npz"


def extractor_key(extractor: str, dataset_id: str, name: str = "") -> str:
    """A fitted extractor's folder, or one file in it (EXTRACTOR_WEIGHTS, MANIFEST)."""
    folder = f"extractors/{extractor}/{dataset_id}"
    return f"{folder}/{name}" if name else folder


def imported_extractor_key(extractor: str, name: str = "") -> str:
    """An imported (dataset-independent) extractor's folder, or one file in it (IMPORTED_WEIGHTS, MANIFEST)."""
    folder = f"extractors/{extractor}"
    return f"{folder}/{name}" if name else folder
