"""The Ray wiring: check everything before training starts (each kind plans its own run), write run.json, run TorchTrainer, show progress."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
import threading
import time

from ganworks import mlflow_tracking
from ganworks.errors import ConfigError, GanworksError
from ganworks.layout import TRAIN_STATE, check_run_id, run_info_key, run_prefix
from ganworks.settings import StoreSettings, public_fields
from ganworks.store import open_store
from ganworks.telemetry import register_secrets
from trainer.config import TrainOptions
from trainer.device import backend, check_gpus
from trainer.kinds import KINDS
from trainer.planning import TrainPlan, family_of, start_of

__all__ = ["TrainOutcome", "TrainPlan", "TrainingFailedError", "connect_ray", "enable_ray_token_auth", "plan", "train"]


class TrainingFailedError(GanworksError):
    """The workers failed more often than --max-failures allows."""


@dataclasses.dataclass
class TrainOutcome:
    run: str
    step: int
    published: list[int]
    publish_failed: list[int]
    metrics_port: int | None
    seconds: float
    start_steps: list[int]  # the step each worker group started from: [0] fresh, [0, 40] after one restart


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
        began, source = start_of(store, options)
        options.model = source.architecture
    family = family_of(options.model)
    return KINDS[family.kind].plan(options, store_settings, family, store, began, source)


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

    opts = p.options
    p.store.put_json(run_info_key(opts.run), p.run_json())
    fs, storage_path = p.store.pyarrow_filesystem(run_prefix(opts.run))
    progress = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
    config = {
        "options": opts.to_json(),
        "architecture_params": p.architecture_params,
        "dataset": {"id": p.dataset.id},
        # The resolved URL: workers run in Ray's session folder, where a relative path means another place.
        # No credentials: Ray records this config in its run state and serves it from its API; workers read
        # the keys from their own environment or *_FILE mounts, as the driver does.
        "store": {"url": p.store.url, "settings": {**public_fields(p.store_settings), "store": p.store.url}},
        "progress": progress,
    }
    # What the kind trains on, through Ray's object store ("ref", and a translation's "ref_b"), and what its workers need besides.
    kind_config = KINDS[p.kind].worker_config(p, ray.put)
    config["dataset"].update(kind_config.pop("dataset"))
    config.update(kind_config)
    if p.privacy is not None:
        config["privacy"] = p.privacy.to_json()
    tracking = mlflow_tracking.worker_config()
    if tracking is not None:  # rank 0 logs to MLflow; credentials stay in the workers' environment, never in Ray's config
        config["mlflow"] = tracking
    if p.init is not None:  # the source's checked weights, as safetensors bytes: the workers load them on a fresh start
        config["init"] = {"weights": ray.put(p.init.weights), "kept_fresh": p.init.kept_fresh}
    trainer = TorchTrainer(
        train_worker,
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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:500] if text else type(exc).__name__
