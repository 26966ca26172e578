"""The CUDA paths against the CPU's: snapshots move between devices, served pixels and Inception features do not
depend on the device, and NCCL training publishes. Marked `gpu`: skipped with the reason where no CUDA device is visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganworks.checkpoint import load_snapshot, publish_snapshot
from ganworks.models import get_family
from tests.generator.conftest import serve  # noqa: F401 - the fixture, shared with the generator tests

pytestmark = pytest.mark.gpu

DCGAN = get_family("dcgan")
DCGAN_PARAMS = DCGAN.validate({"image_size": 32, "channels": 3, "latent_dim": 32, "width": 16, "num_classes": 10})
SG2 = get_family("stylegan2")
SG2_PARAMS = SG2.validate({"image_size": 32, "channels": 3, "num_classes": 4, "latent_dim": 32, "w_dim": 32, "channel_base": 1024, "channel_max": 64})
FAMILIES = {"dcgan": (DCGAN, DCGAN_PARAMS), "stylegan2": (SG2, SG2_PARAMS)}


def _train_and_publish(store, run: str, family_name: str, device: str, steps: int = 3) -> None:
    """A few optimiser steps on `device` (so the weights are ones that device wrote), then a published snapshot."""
    family, params = FAMILIES[family_name]
    torch.manual_seed(0)
    G = family.build_generator(params).to(device)
    opt = torch.optim.Adam(G.parameters(), lr=1e-3)
    for step in range(steps):
        z = torch.randn(8, params["latent_dim"], device=device)
        labels = torch.randint(0, params["num_classes"], (8,), device=device)
        loss = G(z, labels).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    publish_snapshot(store, run=run, step=steps, generator_state={k: v.detach().cpu() for k, v in G.state_dict().items()},
                     architecture=family_name, architecture_params=params)


def _served(server, run: str, seeds: tuple[int, ...] = (0, 1, 7), count: int = 5) -> np.ndarray:
    with server.client() as client:
        return np.concatenate([client.generate(run, count, seed=seed, output="uint8").images for seed in seeds]).astype(int)


@pytest.mark.parametrize("trained_on", ["cuda", "cpu"])
@pytest.mark.parametrize("family_name", ["dcgan", "stylegan2"])
def test_a_snapshot_trained_on_one_device_serves_the_same_pixels_within_one_step_on_the_other(local_store, serve, trained_on, family_name):  # noqa: F811
    _train_and_publish(local_store, "r", family_name, trained_on)
    on_cpu = serve(local_store, ["r"], device="cpu", fast_path=False)
    on_cuda = serve(local_store, ["r"], device="cuda", fast_path=False)
    assert np.abs(_served(on_cuda, "r") - _served(on_cpu, "r")).max() <= 1


@pytest.mark.parametrize("family_name", ["dcgan", "stylegan2"])
def test_cuda_with_its_fastest_form_and_cpu_serve_the_same_image_for_the_same_seed_within_one_step(local_store, serve, family_name):  # noqa: F811
    _train_and_publish(local_store, "r", family_name, "cuda")
    on_cpu = serve(local_store, ["r"], device="cpu", fast_path=False)
    on_cuda = serve(local_store, ["r"], device="cuda", fast_path=True, max_batch_size=16)
    # Alone, mixed with others (buckets 1..16, CUDA graphs pad inside), and truncated.
    assert np.abs(_served(on_cuda, "r", count=1) - _served(on_cpu, "r", count=1)).max() <= 1
    assert np.abs(_served(on_cuda, "r", count=13) - _served(on_cpu, "r", count=13)).max() <= 1
    with on_cuda.client() as a, on_cpu.client() as b:
        ta = a.generate("r", 6, seed=3, truncation=0.5, output="uint8").images.astype(int)
        tb = b.generate("r", 6, seed=3, truncation=0.5, output="uint8").images.astype(int)
    assert np.abs(ta - tb).max() <= 1


def test_every_cuda_form_that_is_served_keeps_pixels_within_one_step_of_the_cpu_at_batch_1_and_at_max_batch(local_store):
    from generator_service import fastpath

    _train_and_publish(local_store, "r", "stylegan2", "cuda")
    generator = load_snapshot(local_store, "r", device="cuda").generator
    modules, trials = fastpath.measure_forms(generator, SG2, SG2_PARAMS, batch=32, device=torch.device("cuda"), forms=fastpath.forms_for(torch.device("cuda"), compile=False))
    assert "eager" in modules and "cuda_graphs" in modules, [(t.name, t.reason) for t in trials]
    cpu = load_snapshot(local_store, "r", device="cpu").generator
    for n in (1, 5, 32):
        z, labels = torch.from_numpy(SG2.seeded_latents(SG2_PARAMS, 9, 0, n)), torch.from_numpy(SG2.seeded_labels(SG2_PARAMS, 9, 0, n))
        with torch.inference_mode():
            expected = _pixels(SG2.generate(cpu, z, labels, torch.ones(n)))
            for name, module in modules.items():
                got = _pixels(SG2.generate(module, z.cuda(), labels.cuda(), torch.ones(n, device="cuda")))
                assert np.abs(got - expected).max() <= 1, (name, n)


def _pixels(images: torch.Tensor) -> np.ndarray:
    from ganworks.images import to_uint8

    return to_uint8(images).astype(int)


def test_cuda_inception_features_equal_the_cpus_within_1e_4_relative():
    from evaluator_service.features import Extractor
    from evaluator_service.features import inception

    torch.manual_seed(0)
    net = inception.FIDInceptionV3().eval().requires_grad_(False)
    for module in net.modules():  # trained-looking batch norm statistics, so features are not all alike
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)

    def features(device: str, precision: str = "fp32") -> np.ndarray:
        extractor = Extractor(inception.EXTRACTOR_ID, net, inception.INPUT_SIZE, 3, inception.FEATURE_DIM, inception.NUM_LOGITS, {}, precision=precision)
        return extractor.to(torch.device(device)).extract(images, "legacy-pytorch", batch_size=5)[0]

    cpu, cuda = features("cpu"), features("cuda")
    assert np.abs(cuda - cpu).max() <= 1e-4 * np.abs(cpu).max()
    fp16 = features("cuda", "fp16")  # allowed when asked: its difference is what the report states
    assert np.abs(fp16 - cpu).max() > 0


@pytest.mark.ray
def test_nccl_training_with_one_worker_publishes_a_snapshot_that_serves_on_cpu(ray_cluster, tmp_path):
    from ganworks.checkpoint import list_snapshots, read_latest
    from ganworks.settings import StoreSettings
    from ganworks.store import open_store
    from tests.trainer.helpers import train

    outcome = train(StoreSettings(store=str(tmp_path / "store")), "nccl", steps=3, snapshot_every=3, num_workers=1, use_gpu=True)
    store = open_store(str(tmp_path / "store"))
    assert outcome.step == 3 and list_snapshots(store, "nccl") == [3] and read_latest(store, "nccl") == 3
    assert store.get_json("runs/nccl/run.json")["options"]["use_gpu"] is True
    snapshot = load_snapshot(store, "nccl", device="cpu")
    with torch.inference_mode():
        out = DCGAN.generate(snapshot.generator, torch.randn(4, snapshot.manifest.latent_dim), torch.arange(4), torch.ones(4))
    assert torch.isfinite(out).all()
