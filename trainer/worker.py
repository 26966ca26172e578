"""A worker's parts that more than one kind of run uses: its start, its networks and optimizers, its share of an image set.

Ray is imported where a worker uses it, not here: the driver imports the kinds, and must set Ray's auth mode before Ray is imported.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from ganworks.images import from_uint8
from ganworks.models import ModelFamily, get_family
from ganworks.telemetry import setup_worker_logging
from trainer.config import TrainOptions
from trainer.ema import make_ema


def worker_start(config: dict) -> tuple[TrainOptions, ModelFamily, dict, int, int, torch.device]:
    """What every worker starts with: its options, family and hyperparameters, rank, world size and device."""
    import ray.train
    import ray.train.torch

    opts = TrainOptions(**config["options"])
    setup_worker_logging()
    torch.set_num_threads(opts.cpus_per_worker)
    context = ray.train.get_context()
    return opts, get_family(opts.model), config["architecture_params"], context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device()


def build_networks(family: ModelFamily, params: dict, opts: TrainOptions, rank: int, device: torch.device):
    """G, D, G_ema, their Adam optimizers and this worker's noise stream; the same initial weights on every rank (DDP also broadcasts rank 0's)."""
    torch.manual_seed(opts.seed)
    G = family.build_generator(params).to(device)
    D = family.build_discriminator(params).to(device)
    g_opt = torch.optim.Adam(G.parameters(), lr=opts.g_lr, betas=(opts.beta1, opts.beta2))
    d_opt = torch.optim.Adam(D.parameters(), lr=opts.d_lr, betas=(opts.beta1, opts.beta2))
    return G, D, make_ema(G), g_opt, d_opt, torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + rank)


def same_world(meta: dict, rng: dict[int, torch.Tensor], rank: int, world: int) -> bool:
    """The checkpoint was written by as many workers as now run, so this rank's saved noise stream is its own."""
    return meta.get("world_size") == world and rank in rng


def reseed_unless_same_world(noise: torch.Generator, meta: dict, rng: dict[int, torch.Tensor], rank: int, world: int, seed: int, step: int) -> None:
    """This rank's saved noise stream; with a different number of workers, a fresh but reproducible one."""
    if same_world(meta, rng, rank, world):
        noise.set_state(rng[rank])
    else:
        noise.manual_seed(seed * 1000 + rank + 7919 * step)


class RealBatches:
    """This worker's share of each epoch's shuffle; the shuffle depends on (seed, epoch) only, so a resumed run picks up mid-epoch exactly."""

    def __init__(self, dataset_ref, conditional: bool, per_worker: int, rank: int, world: int, seed: int, device: torch.device):
        import ray

        images_u8, labels_np = ray.get(dataset_ref)
        self.images = from_uint8(images_u8).to(device)
        self.labels = torch.from_numpy(labels_np.copy()).to(device) if conditional else None
        self.sampler = DistributedSampler(range(len(self.images)), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.per_worker, self.device = per_worker, device
        self.per_epoch = len(self.sampler) // per_worker
        self._order: dict[int, torch.Tensor] = {}

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch not in self._order:
            self.sampler.set_epoch(epoch)
            self._order.clear()
            self._order[epoch] = torch.tensor(list(self.sampler), device=self.device)
        index = self._order[epoch][offset * self.per_worker : (offset + 1) * self.per_worker]
        return self.images[index], (self.labels[index] if self.labels is not None else None)
