"""The Ray wiring: check everything before training starts, write run.json, run TorchTrainer, show progress."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import secrets
import subprocess
import sys
import threading
import time
from typing import Any

from ganworks import __version__, mlflow_tracking
from ganworks.layout import TRAIN_STATE, TRANSFORMER, check_run_id, run_info_key, run_prefix
from ganworks.data import DomainPair, load_dataset, load_domains
from ganworks.errors import ConfigError, DatasetError, GanworksError, ModelConfigError, ObjectNotFoundError
from ganworks.models import HyperparameterError, ModelFamily, get_family
from ganworks.settings import StoreSettings, public_fields
from ganworks.store import ArtifactStore, open_store
from ganworks.telemetry import register_secrets
from trainer import transfer
from trainer.config import TrainOptions
from trainer.device import backend, check_gpus

log = logging.getLogger("trainer")


class TrainingFailedError(GanworksError):
    """The workers failed more often than --max-failures allows."""


@dataclasses.dataclass
class TablePlan:
    """What a tabular run trains on: the fitted transformer (published with every snapshot) and the encoded rows."""

    transformer_json: str
    encoded: Any  # numpy rows × transformer width, float32
    test: Any  # the held-out rows (TabularDataset), or None with --split all


@dataclasses.dataclass
class TrainPlan:
    """A run checked against the store, the dataset and the architecture; nothing has been written yet."""

    options: TrainOptions
    store_settings: StoreSettings
    store: ArtifactStore
    dataset: Any  # an ImageDataset, or a TabularDataset for a tabular family
    architecture_params: dict[str, Any]
    init: transfer.InitSource | None = None  # --init-from: the checked source snapshot
    table: TablePlan | None = None  # a tabular family's fitted transformer and encoded rows
    privacy: Any = None  # --dp-epsilon: the trainer.privacy.PrivacyPlan (σ, sample rate, δ, the steps the budget allows)

    def run_json(self) -> dict[str, Any]:
        d = self.dataset
        started = {"init_from": self.init.describe()} if self.init is not None else {}
        if self.table is not None:
            dataset = table_split_json(self.options.dataset, d, self.table.test, self.options.split)
        elif isinstance(d, DomainPair):
            dataset = {"kind": "domains", "id": d.id, "image_size": d.image_size, "channels": d.channels, "num_classes": 0, "split": self.options.split,
                       "domain_a": {"spec": self.options.dataset, "id": d.a.id, "images": len(d.a)},
                       "domain_b": {"spec": self.options.dataset_b, "id": d.b.id, "images": len(d.b)}}
        else:
            dataset = {"spec": self.options.dataset, "id": d.id, "image_size": d.image_size, "channels": d.channels, "num_classes": d.num_classes, "class_names": list(d.class_names), "split": self.options.split}
        if self.privacy is not None:
            started["privacy"] = self.privacy.to_json()
        return {**started,
            "run": self.options.run,
            "code_version": code_version(),
            "options": self.options.to_json(),
            "dataset": dataset,
            "architecture": self.options.model,  # the model family; the manifest names it the same way
            "architecture_params": self.architecture_params,
        }


def table_split_json(spec: str, train: Any, test: Any, split: str) -> dict[str, Any]:
    """run.json's record of a table and its split: which rows trained, which were held out for evaluation."""
    from ganworks.tabular.data import TEST_FRACTION

    held_out = None if test is None else {"id": test.id, "rows": len(test)}
    return {"spec": spec, "kind": "table", "id": train.id, "rows": len(train), "schema": train.schema.to_json(), "split": split,
            "test_fraction": TEST_FRACTION if test is not None else 0.0, "held_out": held_out,
            "split_rule": "rows shuffled by numpy RandomState(0); the last test_fraction are held out, the same rows in every run"}


@dataclasses.dataclass
class TrainOutcome:
    run: str
    step: int
    published: list[int]
    publish_failed: list[int]
    metrics_port: int | None
    seconds: float
    start_steps: list[int]  # the step each worker group started from: [0] fresh, [0, 40] after one restart


def code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=pathlib.Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"ganworks {__version__}" + (f" ({commit})" if commit else "")


def plan(options: TrainOptions, store_settings: StoreSettings) -> TrainPlan:
    """Every check that needs no Ray cluster, cheapest first: a wrong flag fails in seconds, not after start-up."""
    options.validate()
    mlflow_tracking.check_installed()
    if not options.run:
        options.run = time.strftime("run-%Y%m%d-%H%M%S")
    check_run_id(options.run)
    store = began = source = None
    if not options.model:  # --init-from without --model: the family the source snapshot was trained as
        store = open_store(settings=store_settings)
        began, source = _start(store, options)
        options.model = source.architecture
    family = _family(options.model)
    if (family.tabular or family.translation) and options.dp_epsilon:
        from trainer import privacy

        privacy.check_private_trainable(options, family, {})  # refuses, naming what to use
    if family.tabular:
        return _plan_table(options, store_settings, family)
    if options.dp_transformer_epsilon:
        raise ConfigError(f"--dp-transformer-epsilon is for tables (--model ctgan), whose fitted transformer is published; {family.name} has none, "
                          "and --dp-epsilon covers all it publishes")
    if family.translation:
        return _plan_translation(options, store_settings, family)
    if options.dataset_b:
        raise ConfigError(f"--dataset-b is domain B of a translation model (--model cyclegan); {family.name} trains on --dataset alone")
    _model_params(family, options, channels=None, num_classes=None)  # before the dataset: a wrong size or model flag fails fast
    if store is None:
        store = open_store(settings=store_settings)  # reaches the endpoint: an unreachable store fails here
        began, source = _start(store, options)
    if source is not None and source.architecture == family.name:
        options.model_params = {**transfer.source_params(family, source), **options.model_params}
    dataset = load_dataset(options.dataset, image_size=options.image_size, channels=options.channels or None, split=options.split)
    if options.conditional and dataset.labels is None:
        raise ConfigError(f"--conditional needs a dataset with labels; {options.dataset!r} has none (an image folder gets them from class subfolders)")
    per_worker = options.batch_size // options.num_workers
    if len(dataset) // options.num_workers < per_worker:
        raise ConfigError(f"--batch-size {options.batch_size} is larger than the {len(dataset)} training images allow with {options.num_workers} workers")
    params = _model_params(family, options, channels=dataset.channels, num_classes=dataset.num_classes if options.conditional else 0)
    init = None
    if source is not None:  # no --new-class-init: a resumed run goes on as it began, a new one takes the default
        new_class_init = options.new_class_init or (began or {}).get("new_class_init")
        init = transfer.check_source(store, options.init_from, source, family, params, options.freeze_d_blocks, new_class_init, dataset,
                                     recorded_start=(began or {}).get("class_start"))
        if any(init.reinitialised.values()):
            options.new_class_init = init.new_class_init
    _check_same_run(store, options.run, options.model, params, dataset.id, init.describe() if init else None)
    privacy = _plan_privacy(store, options, family, params, len(dataset))
    return TrainPlan(options, store_settings, store, dataset, params, init, privacy=privacy)


def _start(store: ArtifactStore, options: TrainOptions):
    """A resumed run's recorded start (None for a new run) and the --init-from source's manifest (None without one)."""
    began = _started_with(_run_info(store, options.run).get("init_from"))
    return began, transfer.find_source(store, options.init_from, began) if options.init_from else None


def _plan_privacy(store: ArtifactStore, options: TrainOptions, family: ModelFamily, params: dict[str, Any], n: int, fitted=None):
    """--dp-epsilon: the checks and σ (trainer/privacy.py); a resumed run must stay as private as it started.
    fitted: a table's transformer fitted privately (ganworks.tabular.private.PrivateFit), whose ε and δ were spent first."""
    info = _run_info(store, options.run)
    before = info.get("privacy")
    if before is not None and not options.dp_epsilon:
        raise ConfigError(f"run {options.run!r} was trained privately (ε budget {before['epsilon']}); resume it with --dp-epsilon {before['epsilon']} or choose a new --run")
    if not options.dp_epsilon:
        return None
    if info and before is None:
        raise ConfigError(f"run {options.run!r} already exists and was not trained privately; a private run needs a new --run")
    from trainer import privacy

    privacy.check_private_trainable(options, family, params)
    if fitted is not None:
        return privacy.plan_privacy(options, n, before, (fitted.epsilon, fitted.delta), "the networks and the fitted transformer", fitted.describe())
    covers = "the networks"
    if family.tabular:
        covers = "the networks, not the fitted transformer (--dp-transformer-epsilon 0)"
        log.warning("--dp-epsilon %g covers the networks, not the data transformer published beside them (its column ranges, modes, levels "
                    "and counts are fitted without noise); --dp-transformer-epsilon T fits it privately with T of the budget", options.dp_epsilon)
    return privacy.plan_privacy(options, n, before, covers=covers)


def _plan_table(options: TrainOptions, store_settings: StoreSettings, family: ModelFamily) -> TrainPlan:
    """plan() for a tabular family: the table loaded and its transformer fitted here, before any Ray start-up."""
    from ganworks.tabular.data import load_table
    from ganworks.tabular.synthesizer import prepare

    if options.init_from:
        raise ConfigError(f"--init-from is for image models; a {family.name} run starts from scratch (its transformer is fitted to this table)")
    for flag, given in (("--conditional", options.conditional), ("--augment ada", options.augment != "none")):
        if given:
            raise ConfigError(f"{flag} is for image models; {family.name} conditions on the table's categorical columns by itself")
    settable = family.settable()
    for key in options.model_params:
        if key not in settable:
            raise ConfigError(f"--model-param {key}: {family.name} has no such settable hyperparameter; use one of {', '.join(settable)}")
    if options.dp_epsilon:  # one record per D sample and no gradient penalty (trainer/tabular_loop.py, PrivateCTGANStep)
        options.model_params = {"pac": 1, "gp_weight": 0.0, **options.model_params}
    else:
        options.loss = "wgan-gp"  # CTGAN's loss, whatever --loss says: run.json records what trained
    try:
        pac = family.validate({**options.model_params, "data_dim": 1})["pac"]
    except HyperparameterError as exc:
        raise ConfigError(f"--model-param {exc.param}: {exc}") from None
    per_worker = options.batch_size // options.num_workers
    if per_worker % pac:
        raise ConfigError(f"--batch-size {options.batch_size} over --num-workers {options.num_workers} gives {per_worker} rows per worker, "
                          f"not a multiple of pac={pac} (the rows the discriminator judges together); e.g. --batch-size {pac * options.num_workers * 50}")
    store = open_store(settings=store_settings)
    table = load_table(options.dataset, split=options.split)
    if len(table) // options.num_workers < per_worker:
        raise ConfigError(f"--batch-size {options.batch_size} is larger than the {len(table)} training rows allow with {options.num_workers} workers")
    test = load_table(options.dataset, split="test") if options.split == "train" else None
    private_fit = None
    if options.dp_transformer_epsilon:  # ε covers the transformer too: fitted with its share of the budget
        from ganworks.tabular.private import transformer_delta
        from trainer.privacy import run_delta

        private_fit = (options.dp_transformer_epsilon, transformer_delta(table.schema, run_delta(options, len(table))))
    try:
        params, transformer, encoded, fitted = prepare(table, options.seed, private=private_fit, **options.model_params)
    except DatasetError as exc:
        if private_fit is None:
            raise
        raise ConfigError(f"--dp-transformer-epsilon {options.dp_transformer_epsilon:g}: {exc}") from None
    privacy = _plan_privacy(store, options, family, params, len(table), fitted)  # first: resuming a private run without --dp-epsilon is told so
    _check_same_run(store, options.run, options.model, params, table.id)
    return TrainPlan(options, store_settings, store, table, params, table=TablePlan(transformer.dumps(), encoded, test), privacy=privacy)


def _plan_translation(options: TrainOptions, store_settings: StoreSettings, family: ModelFamily) -> TrainPlan:
    """plan() for a translation family: two unpaired image sets, --dataset (domain A) and --dataset-b (domain B)."""
    if not options.dataset_b:
        raise ConfigError(f"--model {family.name} learns to translate between two image sets: give domain A as --dataset and domain B as --dataset-b "
                          "(e.g. --dataset fashion-mnist:sneaker --dataset-b fashion-mnist:ankle-boot)")
    for flag, given in (("--conditional", options.conditional), ("--init-from", bool(options.init_from)), ("--augment ada", options.augment != "none")):
        if given:
            raise ConfigError(f"{flag} is not supported by {family.name}: its domains are its two datasets")
    _model_params(family, options, channels=None, num_classes=0)
    store = open_store(settings=store_settings)
    pair = load_domains(options.dataset, options.dataset_b, options.image_size, options.channels or None, options.split)
    per_worker = options.batch_size // options.num_workers
    for flag, domain in (("--dataset", pair.a), ("--dataset-b", pair.b)):
        if len(domain) // options.num_workers < per_worker:
            raise ConfigError(f"--batch-size {options.batch_size} is larger than the {len(domain)} training images of {flag} allow with {options.num_workers} workers")
    params = _model_params(family, options, channels=pair.channels, num_classes=0)
    params.update(domain_a=options.dataset, domain_b=options.dataset_b)
    _check_same_run(store, options.run, options.model, params, pair.id)
    return TrainPlan(options, store_settings, store, pair, params)


# The hyperparameters the trainer sets from the dataset and its own flags, not from --model-param.
_FROM_DATA_FLAGS = {"image_size": "--image-size", "channels": "--channels (or the dataset)", "num_classes": "--conditional (and the dataset's labels)"}


def _family(name: str) -> ModelFamily:
    try:
        return get_family(name)
    except ModelConfigError as exc:
        raise ConfigError(f"--model {name!r}: {exc}") from None


def _model_params(family: ModelFamily, options: TrainOptions, *, channels: int | None, num_classes: int | None) -> dict:
    """The family's validated hyperparameters from --model-param and the data; errors name the flag to change."""
    settable = family.settable()
    for key in options.model_params:
        if key not in settable:
            where = f"; it comes from {_FROM_DATA_FLAGS[key]}" if key in _FROM_DATA_FLAGS else ""
            raise ConfigError(f"--model-param {key}: {family.name} has no such settable hyperparameter{where}; use one of {', '.join(settable)}")
    from_data = {"image_size": options.image_size, "channels": channels, "num_classes": num_classes}
    data = {key: value for key, value in from_data.items() if value is not None and key in {p.name for p in family.params if p.from_data}}
    try:
        return family.validate({**options.model_params, **data})
    except HyperparameterError as exc:
        flag = _FROM_DATA_FLAGS.get(exc.param, f"--model-param {exc.param}")
        raise ConfigError(f"{flag}: {exc}") from None
    except ModelConfigError as exc:
        raise ConfigError(f"--model {family.name}: {exc}") from None


def _run_info(store: ArtifactStore, run: str) -> dict[str, Any]:
    """The run.json of a run being resumed; {} for a new run."""
    try:
        return store.get_json(run_info_key(run))
    except ObjectNotFoundError:
        return {}


def _check_same_run(store: ArtifactStore, run: str, architecture: str, params: dict[str, Any], dataset_id: str, init_from: dict | None = None) -> None:
    """Resuming is by run id; resuming with another model or dataset would load weights that do not fit."""
    before = _run_info(store, run)
    if not before:
        return
    if before.get("architecture") != architecture or before.get("architecture_params") != params:
        raise ConfigError(f"run {run!r} already exists in {store.url} with architecture {before.get('architecture')} {before.get('architecture_params')}; "
                          f"resume it with the same --model and --model-param flags or choose a new --run")
    if before.get("dataset", {}).get("id") != dataset_id:
        raise ConfigError(f"run {run!r} already exists in {store.url} trained on dataset {before.get('dataset', {}).get('id')}, not {dataset_id}; choose a new --run")
    started = _started_with(before.get("init_from"))
    if _without_class_start(started) != _without_class_start(init_from):
        said = f"--init-from {started['run']}@{started['step']}" if started else "no --init-from"
        if started and "new_class_init" in started:
            said += f" --new-class-init {started['new_class_init']}"
        raise ConfigError(f"run {run!r} already exists in {store.url} and was started with {said}; resume it with the same flags or choose a new --run")


def _without_class_start(record: dict | None) -> dict | None:
    """An init_from record without the classes `nearest` matched: a resume loads the run's own snapshot, so a
    re-scoring that matched otherwise (on other hardware, say) changes nothing and must not refuse the resume."""
    return {k: v for k, v in record.items() if k != "class_start"} if record else record


def _started_with(recorded: dict | None) -> dict | None:
    """A run.json's init_from as this version writes it: runs recorded before --new-class-init started new classes at random, its default."""
    if recorded and recorded.get("reinitialised") and "new_class_init" not in recorded:
        return {**recorded, "new_class_init": "random"}
    return recorded


def connect_ray(options: TrainOptions, worker_logs: bool = True) -> None:
    """Joins the cluster at --ray-address, or starts a local one; then checks it has room for the workers.

    worker_logs=False keeps the workers' log lines off this console (the progress bar says what matters).
    """
    address = options.ray_address or os.environ.get("RAY_ADDRESS", "local")
    if address == "local":  # a local cluster has this machine's GPUs: refuse before starting Ray (trainer/device.py)
        check_gpus(options.use_gpu, options.num_workers)
    if address == "local" and "ray" not in sys.modules:
        # Ray's ports listen on the node's address, not loopback (Ray resolves 127.0.0.1 to it), so the cluster
        # takes a fresh token: only this process tree (which inherits the environment) can submit work to it.
        # Before Ray is imported: it reads RAY_AUTH_MODE once, at import, and a driver that read "disabled"
        # cannot talk to the token-mode GCS it starts.
        enable_ray_token_auth(os.environ)
    import ray

    if not ray.is_initialized():
        if address == "local":
            # Ray runs workers at nice 15 by default, for clusters where they share nodes with more important
            # daemons; here training is the job, and at nice 15 it would lose the CPUs to any busy neighbour.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=worker_logs, logging_level=logging.WARNING,
                     runtime_env={"worker_process_setup_hook": "trainer.ray_hooks.quiet_without_dashboard"})
        else:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"--ray-address {address!r}: cannot join the Ray cluster ({exc}); use 'local' to start one here") from None
    total = ray.cluster_resources().get("CPU", 0)
    wanted = options.num_workers * options.cpus_per_worker
    if wanted > total:
        raise ConfigError(f"--num-workers {options.num_workers} × --cpus-per-worker {options.cpus_per_worker} needs {wanted} CPUs; "
                          f"the Ray cluster has {total:g} CPUs. Lower --num-workers or add nodes")
    check_gpus(options.use_gpu, options.num_workers, ray.cluster_resources().get("GPU", 0))


def enable_ray_token_auth(env) -> None:
    """Token authentication for a local cluster unless RAY_AUTH_MODE says otherwise; the token is a registered secret."""
    if "RAY_AUTH_MODE" not in env:
        env["RAY_AUTH_MODE"] = "token"
        env.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    register_secrets([env.get("RAY_AUTH_TOKEN", "")])


def train(p: TrainPlan, show_progress: bool = True) -> TrainOutcome:
    """Writes run.json and trains on the connected Ray cluster until --steps; resumes the run if it has a checkpoint."""
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    from trainer.loop import train_worker
    from trainer.progress import ProgressView
    from trainer.tabular_loop import train_table_worker
    from trainer.translation_loop import train_translation_worker

    opts = p.options
    p.store.put_json(run_info_key(opts.run), p.run_json())
    fs, storage_path = p.store.pyarrow_filesystem(run_prefix(opts.run))
    progress = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
    config = {
        "options": opts.to_json(),
        "architecture_params": p.architecture_params,
        "dataset": {"ref": ray.put(_training_data(p)), "id": p.dataset.id},
        # The resolved URL: workers run in Ray's session folder, where a relative path means another place.
        # No credentials: Ray records this config in its run state and serves it from its API; workers read
        # the keys from their own environment or *_FILE mounts, as the driver does.
        "store": {"url": p.store.url, "settings": {**public_fields(p.store_settings), "store": p.store.url}},
        "progress": progress,
    }
    if isinstance(p.dataset, DomainPair):
        config["dataset"]["ref_b"] = ray.put((p.dataset.b.images, None))
        config["grid_inputs"] = (p.dataset.a.images[:8], p.dataset.b.images[:8])
    if p.privacy is not None:
        config["privacy"] = p.privacy.to_json()
    if p.table is not None:
        config["transformer"] = p.table.transformer_json
        config["snapshot_files"] = {TRANSFORMER: p.table.transformer_json.encode()}
    tracking = mlflow_tracking.worker_config()
    if tracking is not None:  # rank 0 logs to MLflow; credentials stay in the workers' environment, never in Ray's config
        config["mlflow"] = tracking
    if p.init is not None:  # the source's checked weights, as safetensors bytes: the workers load them on a fresh start
        config["init"] = {"weights": ray.put(p.init.weights), "kept_fresh": p.init.kept_fresh}
    trainer = TorchTrainer(
        train_table_worker if p.table is not None else train_translation_worker if isinstance(p.dataset, DomainPair) else train_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend=backend(opts.use_gpu)),
        scaling_config=ray.train.ScalingConfig(num_workers=opts.num_workers, use_gpu=opts.use_gpu, resources_per_worker={"CPU": opts.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=TRAIN_STATE,  # Ray keeps the run's checkpoints in runs/<run>/train_state/
            storage_path=storage_path,
            storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    view = ProgressView(progress, opts.run, opts.steps, enabled=show_progress)
    watcher = threading.Thread(target=view.follow, name="train-progress", daemon=True)
    started = time.monotonic()
    watcher.start()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrainingFailedError(f"run {opts.run!r} failed after {opts.max_failures} restarts: {_short(exc)}; "
                                  f"run the same command again to resume from the last checkpoint") from None
    finally:
        view.stop()
        watcher.join(10)
        try:
            progress.shutdown()
        except Exception:  # noqa: BLE001 - the queue actor may be gone with a failed run
            pass
    step = int((result.metrics or {}).get("step", view.step))
    return TrainOutcome(opts.run, step, view.published, view.failed, view.metrics_port, time.monotonic() - started, view.start_steps)


def _training_data(p: TrainPlan):
    """What the workers train on: encoded rows, (images, labels), or domain A's images (domain B's go in a second object)."""
    if p.table is not None:
        return p.table.encoded
    if isinstance(p.dataset, DomainPair):
        return p.dataset.a.images, None
    return p.dataset.images, p.dataset.labels


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:500] if text else type(exc).__name__
