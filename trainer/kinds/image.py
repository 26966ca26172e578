"""Image runs (dcgan, stylegan2): noise to images. The plan (dataset, --conditional, --init-from, privacy) and a worker's GAN step."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ganworks.data import load_dataset
from ganworks.errors import ConfigError
from ganworks.models import ModelFamily
from ganworks.settings import StoreSettings
from ganworks.store import ArtifactStore, open_store
from trainer import transfer
from trainer.augment import AdaptiveAugment
from trainer.config import TrainOptions
from trainer.device import autocast as device_autocast
from trainer.losses import g_regularisers_for, get_loss, regularisers_for
from trainer.planning import TrainPlan, check_enough, check_same_run, choose_loss, model_params, plan_privacy, start_of
from trainer.privacy import PoissonBatches, PrivacyPlan, make_private
from trainer.publisher import SampleGrid
from trainer.step import GANStep, Networks, StepResult, data_parallel
from trainer.worker import RealBatches, build_networks, reseed_unless_same_world


DEFAULT_LOSS = "hinge"


def plan(options: TrainOptions, store_settings: StoreSettings, family: ModelFamily, store: ArtifactStore | None, began: dict | None, source: Any) -> TrainPlan:
    choose_loss(options, family, DEFAULT_LOSS)
    if options.dp_transformer_epsilon:
        raise ConfigError(f"--dp-transformer-epsilon is for tables (--model ctgan), whose fitted transformer is published; {family.name} has none, "
                          "and --dp-epsilon covers all it publishes")
    if options.dataset_b:
        raise ConfigError(f"--dataset-b is domain B of a translation model (--model cyclegan); {family.name} trains on --dataset alone")
    model_params(family, options, channels=None, num_classes=None)  # before the dataset: a wrong size or model flag fails fast
    if store is None:
        store = open_store(settings=store_settings)  # reaches the endpoint: an unreachable store fails here
        began, source = start_of(store, options)
    if source is not None and source.architecture == family.name:
        options.model_params = {**transfer.source_params(family, source), **options.model_params}
    dataset = load_dataset(options.dataset, image_size=options.image_size, channels=options.channels or None, split=options.split)
    if options.conditional and dataset.labels is None:
        raise ConfigError(f"--conditional needs a dataset with labels; {options.dataset!r} has none (an image folder gets them from class subfolders)")
    check_enough(options, len(dataset), "images")
    params = model_params(family, options, channels=dataset.channels, num_classes=dataset.num_classes if options.conditional else 0)
    init = None
    if source is not None:  # no --new-class-init: a resumed run goes on as it began, a new one takes the default
        new_class_init = options.new_class_init or (began or {}).get("new_class_init")
        init = transfer.check_source(store, options.init_from, source, family, params, options.freeze_d_blocks, new_class_init, dataset,
                                     recorded_start=(began or {}).get("class_start"))
        if any(init.reinitialised.values()):
            options.new_class_init = init.new_class_init
    check_same_run(store, options.run, options.model, params, dataset.id, init.describe() if init else None)
    privacy = plan_privacy(store, options, family, params, len(dataset))
    record = {"spec": options.dataset, "id": dataset.id, "image_size": dataset.image_size, "channels": dataset.channels, "num_classes": dataset.num_classes,
              "class_names": list(dataset.class_names), "split": options.split}
    return TrainPlan(options, store_settings, store, dataset, params, record, kind="image", init=init, privacy=privacy)


def worker_config(p: TrainPlan, put: Callable[[Any], Any]) -> dict[str, Any]:
    return {"dataset": {"ref": put((p.dataset.images, p.dataset.labels))}}


class Run:
    """G, D and G_ema with this worker's noise stream; each step a GAN step on this worker's share of the images
    (or, with --dp-epsilon, its Poisson sample), then G_ema follows G."""

    unit = "images"

    def __init__(self, config: dict, opts: TrainOptions, family: ModelFamily, params: dict, rank: int, world: int, device: torch.device,
                 privacy: PrivacyPlan | None):
        self.opts, self.family, self.params, self.rank, self.world, self.device, self.privacy = opts, family, params, rank, world, device, privacy
        self.per_worker = opts.batch_size // world
        conditional = params.get("num_classes", 0) > 0
        if privacy is not None:  # a Poisson sample of the data each step, as the accountant assumes
            self.real_batches = PoissonBatches.of_images(config["dataset"]["ref"], conditional, privacy.sample_rate, rank, world, opts.seed, device)
        else:
            self.real_batches = RealBatches(config["dataset"]["ref"], conditional, self.per_worker, rank, world, opts.seed, device)
        self.G, self.D, self.G_ema, self.g_opt, self.d_opt, self.noise = build_networks(family, params, opts, rank, device)
        if opts.freeze_d_blocks:
            transfer.freeze_blocks(family, self.D, opts.freeze_d_blocks)
        self.published = self.G_ema
        self._step_state: dict[str, float] = {}

    def resume(self, meta: dict, rng: dict[int, torch.Tensor], rank_states: dict[int, dict[str, torch.Tensor]], step: int) -> None:
        self._step_state = meta.get("step_state", {})  # augmentation p, path-length mean
        reseed_unless_same_world(self.noise, meta, rng, self.rank, self.world, self.opts.seed, step)

    def start(self) -> None:
        """The DDP (or DP-SGD) wrappers and the step, after any resume."""
        opts, device = self.opts, self.device
        autocast = device_autocast(device, opts.mixed_precision)
        dp_opt = None
        if self.privacy is not None:  # DP-SGD: per-sample gradients of D, clipped and noised; d_opt stays what the checkpoint saves
            D_ddp, dp_opt = make_private(self.D, self.d_opt, self.privacy, self.per_worker, self.world, opts.seed, device)
        else:
            D_ddp = data_parallel(self.D)
        self.nets = Networks(self.G, self.D, self.G_ema, data_parallel(self.G), D_ddp, self.g_opt, self.d_opt)
        # The loss, its regularisers on D and G (trainer/losses.py), and the augmentation of what D sees (trainer/augment.py).
        augment = AdaptiveAugment(self.params.get("channels", 1), opts.augment_target, opts.augment_speed_images) if opts.augment == "ada" else None
        self.gan_step = GANStep(self.nets, self.family, self.params, get_loss(opts.loss), regularisers_for(opts), self.noise, device, autocast, self.per_worker,
                                g_regularisers=g_regularisers_for(opts), augment=augment, global_batch=opts.batch_size, private=dp_opt, world=self.world)
        self.gan_step.load_state(self._step_state)

    def __call__(self, step: int) -> StepResult:
        return self.gan_step(step, *self.real_batches.at(step))

    def after_step(self, images_seen: int) -> None:
        self.gan_step.update_ema(self.opts.batch_size, images_seen, self.opts.ema_half_life_images, self.opts.ema_rampup)

    def state(self) -> dict[str, float]:
        return self.gan_step.state()

    def rank_state(self) -> dict[str, torch.Tensor] | None:
        return None

    def sample_grid(self, config: dict) -> SampleGrid:
        return SampleGrid(self.opts.model, self.params, self.opts.sample_grid_seed)
