"""The peer a user would otherwise pick: the same DCGAN behind Ray Serve with @serve.batch, loaded over HTTP.

    PYTHONPATH=DIR .venv/bin/python benchmarks/rayserve_peer.py --seconds 15 --concurrency 64

Needs `ray[serve]`'s extra packages, installed for the benchmark only beside the venv's own ray (same version):
`.venv/bin/pip install --no-deps --target DIR -r benchmarks/rayserve-peer.txt`, then PYTHONPATH=DIR.
The deployment draws each sample's latent from its seed as ganworks does, runs batches of up to 64 with a
5 ms wait, and answers raw uint8 pixels; `concurrency` aiohttp clients in a second process each ask for one
sample at a time. Prints one JSON line: samples_per_s, calls, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

from generator import MODEL, THREADS  # noqa: E402 - the same model and threads as the main benchmark


async def _http_closed_loop(url: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    done, errors = 0, {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        stop_at = time.monotonic() + seconds

        async def client(k: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop_at:
                try:
                    async with session.get(url, params={"seed": str(k * 1_000_000 + i)}, timeout=aiohttp.ClientTimeout(total=60)) as response:
                        await response.read()
                        if response.status == 200:
                            done += 1
                        else:
                            errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                i += 1

        began = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        return {"calls": done, "seconds": time.monotonic() - began, "errors": errors}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_measure(seconds: float, concurrency: int, max_batch_size: int, wait_ms: float) -> dict:
    import ray
    from ray import serve
    from starlette.responses import Response

    @serve.deployment(max_ongoing_requests=4 * concurrency, ray_actor_options={"num_cpus": 0})
    class DCGAN:
        def __init__(self) -> None:
            import torch

            from ganworks.models import build_generator

            torch.set_num_threads(THREADS)
            torch.manual_seed(0)
            self.generator = build_generator("dcgan", **MODEL).eval()

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_ms / 1000)
        async def generate(self, seeds: list[int]) -> list[bytes]:
            import numpy as np
            import torch

            from ganworks.images import to_uint8
            from ganworks.models import get_family

            family = get_family("dcgan")
            z = torch.from_numpy(np.concatenate([family.seeded_latents(MODEL, seed, 0, 1) for seed in seeds]))
            with torch.inference_mode():
                pixels = to_uint8(self.generator(z))
            return [p.tobytes() for p in pixels]

        async def __call__(self, request) -> Response:
            return Response(await self.generate(int(request.query_params["seed"])), media_type="application/octet-stream")

    port = _free_port()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)  # workers inherit PYTHONPATH (ray[serve]'s folder)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(DCGAN.bind(), route_prefix="/")
        url = f"http://127.0.0.1:{port}/"
        load = [sys.executable, os.path.abspath(__file__), "_load", url, str(concurrency)]
        subprocess.run([*load, "3"], capture_output=True, text=True, check=True)  # warm-up
        out = subprocess.run([*load, str(seconds)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"samples_per_s": round(result["calls"] / result["seconds"], 1), "calls": result["calls"], "errors": result["errors"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        url, concurrency, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(_http_closed_loop(url, concurrency, seconds))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    a = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    print(json.dumps({**serve_and_measure(a.seconds, a.concurrency, a.max_batch_size, a.max_queue_delay_ms), **provenance()}))


if __name__ == "__main__":
    main()
