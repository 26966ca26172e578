"""Translation runs (cyclegan): images of domain A to domain B and back, learned from two unpaired image sets.
The plan (--dataset is domain A, --dataset-b domain B) and a worker's CycleGAN step.

Each domain is shuffled per epoch by its own seed, so the A and B images of a step are an unrelated draw. The
snapshot is the EMA of the generator pair (both directions). Each worker's history pools go into the resume
checkpoint with its noise stream, so a resumed run shows D the same past fakes it would have seen.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ganworks.data import load_domains
from ganworks.errors import ConfigError
from ganworks.images import from_uint8, grid_png, to_uint8
from ganworks.models import ModelFamily, get_family
from ganworks.settings import StoreSettings
from ganworks.store import ArtifactStore, open_store
from trainer.config import TrainOptions
from trainer.ema import ema_beta, update_ema
from trainer.losses import get_loss
from trainer.planning import TrainPlan, check_enough, check_same_run, choose_loss, model_params
from trainer.privacy import PrivacyPlan, SUPPORTED, require_opacus
from trainer.step import Networks, StepResult, data_parallel
from trainer.translation import CycleStep, lr_factor
from trainer.worker import RealBatches, build_networks, same_world


DEFAULT_LOSS = "lsgan"  # CycleGAN's


def plan(options: TrainOptions, store_settings: StoreSettings, family: ModelFamily, store: ArtifactStore | None, began: dict | None, source: Any) -> TrainPlan:
    """Two unpaired image sets, --dataset (domain A) and --dataset-b (domain B)."""
    if options.dp_epsilon:
        require_opacus()
        raise ConfigError(f"--dp-epsilon: private training of the translation family {family.name} is not available yet (its two "
                          f"discriminators see both domains' real images); train an image family privately ({SUPPORTED})")
    if options.dp_transformer_epsilon:
        raise ConfigError(f"--dp-transformer-epsilon is for tables (--model ctgan), whose fitted transformer is published; {family.name} has none, "
                          "and --dp-epsilon covers all it publishes")
    choose_loss(options, family, DEFAULT_LOSS)
    if not options.dataset_b:
        raise ConfigError(f"--model {family.name} learns to translate between two image sets: give domain A as --dataset and domain B as --dataset-b "
                          "(e.g. --dataset fashion-mnist:sneaker --dataset-b fashion-mnist:ankle-boot)")
    for flag, given in (("--conditional", options.conditional), ("--init-from", bool(options.init_from)), ("--augment ada", options.augment != "none")):
        if given:
            raise ConfigError(f"{flag} is not supported by {family.name}: its domains are its two datasets")
    model_params(family, options, channels=None, num_classes=0)
    store = open_store(settings=store_settings)
    pair = load_domains(options.dataset, options.dataset_b, options.image_size, options.channels or None, options.split)
    for flag, domain in (("--dataset", pair.a), ("--dataset-b", pair.b)):
        check_enough(options, len(domain), f"images of {flag}")
    params = model_params(family, options, channels=pair.channels, num_classes=0)
    params.update(domain_a=options.dataset, domain_b=options.dataset_b)
    check_same_run(store, options.run, options.model, params, pair.id)
    record = {"kind": "domains", "id": pair.id, "image_size": pair.image_size, "channels": pair.channels, "num_classes": 0, "split": options.split,
              "domain_a": {"spec": options.dataset, "id": pair.a.id, "images": len(pair.a)},
              "domain_b": {"spec": options.dataset_b, "id": pair.b.id, "images": len(pair.b)}}
    return TrainPlan(options, store_settings, store, pair, params, record, kind="translation")


def worker_config(p: TrainPlan, put: Callable[[Any], Any]) -> dict[str, Any]:
    return {"dataset": {"ref": put((p.dataset.a.images, None)), "ref_b": put((p.dataset.b.images, None))},
            "grid_inputs": (p.dataset.a.images[:8], p.dataset.b.images[:8])}


class TranslationGrid:
    """Fixed real images, so grids of successive snapshots compare: rows A, A→B, B, B→A (`inputs`: uint8 N×H×W×C of A and of B)."""

    def __init__(self, architecture: str, params: dict[str, Any], inputs: tuple[Any, Any], per_row: int = 8):
        self.family = get_family(architecture)
        self.params = self.family.validate(params)
        self.columns = per_row
        self.inputs = [from_uint8(x[:per_row]) for x in inputs]

    @torch.no_grad()
    def render(self, state: dict[str, torch.Tensor]) -> bytes:
        generator = self.family.build_generator(self.params)
        generator.load_state_dict(state)
        a, b = self.inputs
        images = torch.cat([a, self.family.translate(generator.eval(), a, "a_to_b"), b, self.family.translate(generator.eval(), b, "b_to_a")])
        return grid_png(to_uint8(images), columns=self.columns, scale=2)


class Run:
    """The generator pair, the discriminator pair and G_ema; each step a CycleGAN step on one unrelated draw of A and of B."""

    unit = "images of each domain"

    def __init__(self, config: dict, opts: TrainOptions, family: ModelFamily, params: dict, rank: int, world: int, device: torch.device,
                 privacy: PrivacyPlan | None):
        self.opts, self.params, self.rank, self.world, self.device = opts, params, rank, world, device
        per_worker = opts.batch_size // world
        self.domain_a = RealBatches(config["dataset"]["ref"], False, per_worker, rank, world, opts.seed, device)
        self.domain_b = RealBatches(config["dataset"]["ref_b"], False, per_worker, rank, world, opts.seed + 1, device)
        self.G, self.D, self.G_ema, self.g_opt, self.d_opt, self.noise = build_networks(family, params, opts, rank, device)
        self.published = self.G_ema
        self._pools: dict[str, torch.Tensor] = {}

    def resume(self, meta: dict, rng: dict[int, torch.Tensor], rank_states: dict[int, dict[str, torch.Tensor]], step: int) -> None:
        if same_world(meta, rng, self.rank, self.world):
            self.noise.set_state(rng[self.rank])
            self._pools = rank_states.get(self.rank, {})

    def start(self) -> None:
        self.nets = Networks(self.G, self.D, self.G_ema, data_parallel(self.G), data_parallel(self.D), self.g_opt, self.d_opt)
        self.cycle = CycleStep(self.nets, self.params, self.noise, get_loss(self.opts.loss))
        if self._pools:
            self.cycle.load_pools(self._pools, self.device)

    def __call__(self, step: int) -> StepResult:
        self.cycle.set_lr(lr_factor(step, self.opts.steps, self.params["decay_start"]), self.opts.g_lr, self.opts.d_lr)
        return self.cycle(self.domain_a.at(step)[0], self.domain_b.at(step)[0])

    def after_step(self, images_seen: int) -> None:
        opts = self.opts
        update_ema(self.G_ema, self.G, ema_beta(opts.batch_size, images_seen, opts.ema_half_life_images, opts.ema_rampup))

    def state(self) -> dict[str, float]:
        return {}

    def rank_state(self) -> dict[str, torch.Tensor] | None:
        image_shape = (self.params["channels"], self.params["image_size"], self.params["image_size"])
        return self.cycle.pool_state(image_shape)

    def sample_grid(self, config: dict) -> TranslationGrid:
        return TranslationGrid(self.opts.model, self.params, config["grid_inputs"])
