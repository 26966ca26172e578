"""What every kind's plan shares: the checked run (TrainPlan), the family's hyperparameters from flags and data, and the resume checks."""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import subprocess
from typing import Any

from ganworks import __version__
from ganworks.errors import ConfigError, ModelConfigError, ObjectNotFoundError
from ganworks.layout import run_info_key
from ganworks.models import HyperparameterError, ModelFamily, get_family
from ganworks.settings import StoreSettings
from ganworks.store import ArtifactStore
from trainer import transfer
from trainer.config import TrainOptions

log = logging.getLogger("trainer")


@dataclasses.dataclass
class TrainPlan:
    """A run checked against the store, the dataset and the architecture; nothing has been written yet."""

    options: TrainOptions
    store_settings: StoreSettings
    store: ArtifactStore
    dataset: Any  # what the kind trains on: an ImageDataset, a TabularDataset, a DomainPair
    architecture_params: dict[str, Any]
    dataset_record: dict[str, Any]  # run.json's "dataset": what trained (and what was held out), as the kind records it
    kind: str = "image"  # the family's kind of run: trainer/kinds/<kind>.py plans it and makes its steps
    init: transfer.InitSource | None = None  # --init-from: the checked source snapshot
    table: Any = None  # a table run's fitted transformer and encoded rows (trainer.kinds.table.TablePlan)
    privacy: Any = None  # --dp-epsilon: the trainer.privacy.PrivacyPlan (σ, sample rate, δ, the steps the budget allows)

    def run_json(self) -> dict[str, Any]:
        started = {"init_from": self.init.describe()} if self.init is not None else {}
        if self.privacy is not None:
            started["privacy"] = self.privacy.to_json()
        return {**started,
            "run": self.options.run,
            "code_version": code_version(),
            "options": self.options.to_json(),
            "dataset": self.dataset_record,
            "architecture": self.options.model,  # the model family; the manifest names it the same way
            "architecture_params": self.architecture_params,
        }


def code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=pathlib.Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"ganworks {__version__}" + (f" ({commit})" if commit else "")


def per_worker_batch(options: TrainOptions) -> int:
    return options.batch_size // options.num_workers


def check_enough(options: TrainOptions, count: int, what: str) -> None:
    """Each worker's share of the data must fill its batch."""
    if count // options.num_workers < per_worker_batch(options):
        raise ConfigError(f"--batch-size {options.batch_size} is larger than the {count} training {what} allow with {options.num_workers} workers")


def choose_loss(options: TrainOptions, family: ModelFamily, default: str) -> None:
    """--loss, or the kind's default; a loss that does not apply to the family's kind is refused, naming those that do."""
    from trainer.losses import LOSSES, get_loss

    options.loss = options.loss or default
    fitting = [name for name, loss in LOSSES.items() if family.kind in loss.kinds]
    if family.kind not in get_loss(options.loss).kinds:
        raise ConfigError(f"--loss {options.loss} does not apply to {family.name}, a model of {family.kind} runs; use one of {', '.join(fitting)} "
                          f"(default {default})")


# The hyperparameters the trainer sets from the dataset and its own flags, not from --model-param.
_FROM_DATA_FLAGS = {"image_size": "--image-size", "channels": "--channels (or the dataset)", "num_classes": "--conditional (and the dataset's labels)"}


def family_of(name: str) -> ModelFamily:
    try:
        return get_family(name)
    except ModelConfigError as exc:
        raise ConfigError(f"--model {name!r}: {exc}") from None


def check_settable(family: ModelFamily, options: TrainOptions) -> None:
    settable = family.settable()
    for key in options.model_params:
        if key not in settable:
            where = f"; it comes from {_FROM_DATA_FLAGS[key]}" if key in _FROM_DATA_FLAGS else ""
            raise ConfigError(f"--model-param {key}: {family.name} has no such settable hyperparameter{where}; use one of {', '.join(settable)}")


def model_params(family: ModelFamily, options: TrainOptions, *, channels: int | None, num_classes: int | None) -> dict:
    """The family's validated hyperparameters from --model-param and the data; errors name the flag to change."""
    check_settable(family, options)
    from_data = {"image_size": options.image_size, "channels": channels, "num_classes": num_classes}
    data = {key: value for key, value in from_data.items() if value is not None and key in {p.name for p in family.params if p.from_data}}
    try:
        return family.validate({**options.model_params, **data})
    except HyperparameterError as exc:
        flag = _FROM_DATA_FLAGS.get(exc.param, f"--model-param {exc.param}")
        raise ConfigError(f"{flag}: {exc}") from None
    except ModelConfigError as exc:
        raise ConfigError(f"--model {family.name}: {exc}") from None


def run_info(store: ArtifactStore, run: str) -> dict[str, Any]:
    """The run.json of a run being resumed; {} for a new run."""
    try:
        return store.get_json(run_info_key(run))
    except ObjectNotFoundError:
        return {}


def check_same_run(store: ArtifactStore, run: str, architecture: str, params: dict[str, Any], dataset_id: str, init_from: dict | None = None) -> None:
    """Resuming is by run id; resuming with another model or dataset would load weights that do not fit."""
    before = run_info(store, run)
    if not before:
        return
    if before.get("architecture") != architecture or before.get("architecture_params") != params:
        raise ConfigError(f"run {run!r} already exists in {store.url} with architecture {before.get('architecture')} {before.get('architecture_params')}; "
                          f"resume it with the same --model and --model-param flags or choose a new --run")
    if before.get("dataset", {}).get("id") != dataset_id:
        raise ConfigError(f"run {run!r} already exists in {store.url} trained on dataset {before.get('dataset', {}).get('id')}, not {dataset_id}; choose a new --run")
    started = started_with(before.get("init_from"))
    if _without_class_start(started) != _without_class_start(init_from):
        said = f"--init-from {started['run']}@{started['step']}" if started else "no --init-from"
        if started and "new_class_init" in started:
            said += f" --new-class-init {started['new_class_init']}"
        raise ConfigError(f"run {run!r} already exists in {store.url} and was started with {said}; resume it with the same flags or choose a new --run")


def _without_class_start(record: dict | None) -> dict | None:
    """An init_from record without the classes `nearest` matched: a resume loads the run's own snapshot, so a
    re-scoring that matched otherwise (on other hardware, say) changes nothing and must not refuse the resume."""
    return {k: v for k, v in record.items() if k != "class_start"} if record else record


def started_with(recorded: dict | None) -> dict | None:
    """A run.json's init_from as this version writes it: runs recorded before --new-class-init started new classes at random, its default."""
    if recorded and recorded.get("reinitialised") and "new_class_init" not in recorded:
        return {**recorded, "new_class_init": "random"}
    return recorded


def start_of(store: ArtifactStore, options: TrainOptions):
    """A resumed run's recorded start (None for a new run) and the --init-from source's manifest (None without one)."""
    began = started_with(run_info(store, options.run).get("init_from"))
    return began, transfer.find_source(store, options.init_from, began) if options.init_from else None


def plan_privacy(store: ArtifactStore, options: TrainOptions, family: ModelFamily, params: dict[str, Any], n: int, fitted=None,
                 covers: str = "the networks", warning: str = "", mixing_hint: str = ""):
    """--dp-epsilon: the checks and σ (trainer/privacy.py); a resumed run must stay as private as it started.
    fitted: a table's transformer fitted privately (ganworks.tabular.private.PrivateFit), whose ε and δ were spent first;
    covers and warning: what ε covers, and what the user is warned it does not (the kind says)."""
    info = run_info(store, options.run)
    before = info.get("privacy")
    if before is not None and not options.dp_epsilon:
        raise ConfigError(f"run {options.run!r} was trained privately (ε budget {before['epsilon']}); resume it with --dp-epsilon {before['epsilon']} or choose a new --run")
    if not options.dp_epsilon:
        return None
    if info and before is None:
        raise ConfigError(f"run {options.run!r} already exists and was not trained privately; a private run needs a new --run")
    from trainer import privacy

    privacy.check_private_trainable(options, family, params, **({"mixing_hint": mixing_hint} if mixing_hint else {}))
    if fitted is not None:
        return privacy.plan_privacy(options, n, before, (fitted.epsilon, fitted.delta), "the networks and the fitted transformer", fitted.describe())
    if warning:
        log.warning(warning)
    return privacy.plan_privacy(options, n, before, covers=covers)
