"""The peer a backend team compares a model server with: the same DCGAN in NVIDIA Triton (through PyTriton), dynamic batching.

    PYTHONPATH=DIR LD_LIBRARY_PATH=<python's libdir> .venv/bin/python benchmarks/triton_peer.py --form channels_last

Needs `nvidia-pytriton` (its wheel bundles `tritonserver`), installed for the benchmark only beside the venv:
`.venv/bin/pip install --no-deps --target DIR -r benchmarks/triton-peer.txt`, then PYTHONPATH=DIR. Triton's
Python-backend stub must load this interpreter's own libpython, so its directory goes first on LD_LIBRARY_PATH
(benchmarks/generator.py does that), and the stub needs numpy<2 (`--stub-env`, a venv: see triton-peer.txt;
with numpy 2 every answer has the right shape and no bytes, which the benchmark's pixel check reports). The model has the same weights as the benchmark's snapshot, in the form the
service serves (`--form`), draws each sample's latent from its seed as ganworks does, and answers UINT8
[64, 64, 3] per sample: a request's input is `seed`, UINT64 [1] per sample (PyTriton cannot declare a scalar).
Prints `port <grpc port>` once Triton serves, then serves until stdin closes.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from generator import MODEL, THREADS  # noqa: E402 - the same model and threads as the main benchmark


def build(form: str, max_batch_size: int):
    """The benchmark's model (torch.manual_seed(0), as benchmarks/generator.py publishes it), in the service's form."""
    import torch

    from ganworks.models import build_generator
    from generator_service.fastpath import FORMS, FormPlan, graph_buckets

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    generator = build_generator("dcgan", **MODEL).eval()
    plan = FormPlan(entries=("",), device=torch.device("cpu"), buckets=graph_buckets(max_batch_size))
    return FORMS[form](generator, plan) if form != "eager" else generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--form", default="eager", help="eager or a fast-path form name (generator_service/fastpath.py)")
    p.add_argument("--stub-env", default="", help="a venv (numpy<2, pyzmq) for Triton's Python-backend stub; without it the stub uses this interpreter's packages")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    a = p.parse_args()

    import numpy as np
    import torch
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from ganworks.images import to_uint8
    from ganworks.models import get_family

    _let_the_stub_import_pytritons_packages()
    if a.stub_env:
        _give_the_stub_its_own_python(a.stub_env)
    family, generator = get_family("dcgan"), build(a.form, a.max_batch_size)

    @batch
    def infer(seed: np.ndarray) -> dict[str, np.ndarray]:
        z = torch.from_numpy(np.concatenate([family.seeded_latents(MODEL, int(s), 0, 1) for s in seed[:, 0]]))
        with torch.inference_mode():
            images = family.generate(generator, z, None, torch.ones(len(z)))
        return {"images": to_uint8(images)}

    config = TritonConfig(grpc_port=_free_port(), http_port=_free_port(), metrics_port=_free_port(), log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="bench", infer_func=infer,
            inputs=[Tensor(name="seed", dtype=np.uint64, shape=(1,))],
            outputs=[Tensor(name="images", dtype=np.uint8, shape=(MODEL["image_size"], MODEL["image_size"], MODEL["channels"]))],
            config=ModelConfig(max_batch_size=a.max_batch_size, batcher=DynamicBatcher(max_queue_delay_microseconds=int(a.max_queue_delay_ms * 1000))),
            strict=True,
        )
        triton.run()
        print(f"port {config.grpc_port}", flush=True)
        sys.stdin.read()  # serve until the benchmark closes our stdin


def _let_the_stub_import_pytritons_packages() -> None:
    """Triton's Python-backend stub embeds Python with an isolated configuration (PYTHONPATH ignored), so the
    proxy model PyTriton hands it cannot import pyzmq from the folder it was installed in: the proxy's model.py
    gets that folder appended to sys.path first (after the interpreter's own site-packages, which win)."""
    import pytriton
    from pytriton.models import model as pytriton_model

    folder = os.path.dirname(os.path.dirname(os.path.abspath(pytriton.__file__)))
    original = pytriton_model.Model.get_proxy_model_files

    def with_path(self):
        files = original(self)
        key = f"file:{self.model_version}/model.py"
        files[key] = f"import sys; sys.path.append({folder!r})\n".encode() + files[key]
        return files

    pytriton_model.Model.get_proxy_model_files = with_path


def _give_the_stub_its_own_python(stub_env: str) -> None:
    """Runs Triton's Python-backend stub on `stub_env`, a venv with numpy<2 and pyzmq (see the module docstring).

    PyTriton puts `sys.exec_prefix/bin` first on the stub's PATH, and the embedded interpreter takes its packages
    from the venv of the `python3` it finds there: ours has numpy 2, with which the stub (built against numpy 1)
    answers every output with the right shape and no bytes. Only the stub changes; the model runs here.
    """
    import pathlib

    from pytriton.server import triton_server

    triton_server.get_triton_python_backend_python_env = lambda: pathlib.Path(stub_env)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
