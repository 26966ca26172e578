"""What fixed seeds give for each kind of run (image, table, translation): pixels, rows, and one training step's losses.

`python -m tests.core.behaviour_freeze` records them in behaviour_freeze.json; test_behaviour_freeze.py compares.
Recorded before the kind of run became a seam (issue #32), so a move of code that changes what users get fails.
"""

from __future__ import annotations

import contextlib
import json
import pathlib

import numpy as np
import torch
import torch.distributed as dist

from ganworks.models import get_family

FIXTURE = pathlib.Path(__file__).with_name("behaviour_freeze.json")


def _picks(tensor: torch.Tensor, count: int = 8) -> list[float]:
    """A sum and `count` spread-out elements: enough to notice any change, small enough to read."""
    flat = tensor.detach().double().flatten()
    index = torch.linspace(0, len(flat) - 1, count).long()
    return [round(float(flat.sum()), 6)] + [round(float(v), 6) for v in flat[index]]


def image() -> dict:
    family = get_family("dcgan")
    params = family.validate({"image_size": 16, "channels": 1, "num_classes": 3, "width": 8, "latent_dim": 8})
    torch.manual_seed(0)
    G = family.build_generator(params).eval()
    z = torch.from_numpy(family.seeded_latents(params, 7, 0, 4))
    labels = torch.from_numpy(family.seeded_labels(params, 7, 0, 4))
    with torch.no_grad():
        pixels = family.generate(G, z, labels, torch.tensor([1.0, 1.0, 0.7, 0.5]))
    return {"pixels": _picks(pixels, 12)}


def image_step() -> dict:
    """One DCGAN training step (hinge, and WGAN-GP) from fixed weights, noise and reals: its D and G losses."""
    from trainer.ema import make_ema
    from trainer.losses import get_loss, regularisers_for
    from trainer.config import TrainOptions
    from trainer.step import GANStep, Networks, data_parallel

    family = get_family("dcgan")
    params = family.validate({"image_size": 16, "channels": 1, "num_classes": 3, "width": 8, "latent_dim": 8})
    out = {}
    for loss in ("hinge", "wgan-gp", "non-saturating"):
        torch.manual_seed(0)
        G, D = family.build_generator(params), family.build_discriminator(params)
        nets = Networks(G, D, make_ema(G), data_parallel(G), data_parallel(D), torch.optim.Adam(G.parameters(), lr=1e-3), torch.optim.Adam(D.parameters(), lr=1e-3))
        opts = TrainOptions(run="freeze", dataset="digits", loss=loss)
        step = GANStep(nets, family, params, get_loss(loss), regularisers_for(opts), torch.Generator().manual_seed(1), torch.device("cpu"),
                       contextlib.nullcontext(), batch_size=4)
        real = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
        results = [step(i, real, torch.tensor([0, 1, 2, 0])) for i in range(2)]
        out[loss] = [[round(float(r.loss_d), 5), round(float(r.loss_g), 5)] for r in results]
    return out


def _table():
    from ganworks.tabular.data import Column, Schema, TabularDataset

    rng = np.random.default_rng(0)
    n = 120
    default = np.where(rng.random(n) < 0.1, "Yes", "No").astype(object)
    balance = np.where(default == "Yes", rng.normal(1800, 100, n), rng.normal(800, 200, n))
    columns = {"default": default, "student": rng.random(n) < 0.3, "balance": balance}
    schema = Schema((Column("default", "categorical"), Column("student", "boolean"), Column("balance", "continuous")), target="default")
    return TabularDataset(columns=columns, schema=schema, id="tiny", source="test")


def table() -> dict:
    """A CTGAN fitted in one process for two epochs (its WGAN-GP steps with pac), then rows of a fixed seed."""
    from trainer.ctgan import fit

    model = fit(_table(), epochs=2, batch_size=40, seed=0, latent_dim=8, g_width=16, d_width=16, pac=4, max_modes=3)
    rows = model.sample(6, seed=3)
    return {"default": [str(v) for v in rows["default"]], "student": [bool(v) for v in rows["student"]],
            "balance": [round(float(v), 3) for v in rows["balance"]]}


def translation() -> dict:
    """A fresh CycleGAN pair's translations of fixed images, and one training step's losses."""
    from trainer.ema import make_ema
    from trainer.step import Networks, data_parallel
    from trainer.translation import CycleStep

    family = get_family("cyclegan")
    params = family.validate({"image_size": 16, "channels": 1, "width": 4, "blocks": 1, "d_width": 4, "d_layers": 2, "pool_size": 2})
    torch.manual_seed(0)
    G, D = family.build_generator(params), family.build_discriminator(params)
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        a_to_b = family.translate(G.eval(), images, "a_to_b")
    G.train()
    nets = Networks(G, D, make_ema(G), data_parallel(G), data_parallel(D), torch.optim.Adam(G.parameters(), lr=2e-4), torch.optim.Adam(D.parameters(), lr=2e-4))
    step = CycleStep(nets, params, torch.Generator().manual_seed(1))
    real_b = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(6)) * 2 - 1
    results = [step(images, real_b) for _ in range(2)]
    return {"a_to_b": _picks(a_to_b, 12), "step": [[round(float(r.loss_d), 5), round(float(r.loss_g), 5)] for r in results]}


def record() -> dict:
    return {"image": image(), "image_step": image_step(), "table": table(), "translation": translation()}


if __name__ == "__main__":
    from tests.s3server import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    FIXTURE.write_text(json.dumps(record(), indent=1) + "\n")
    print(FIXTURE.read_text())
