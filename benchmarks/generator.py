"""Generator service speed on a 64×64 RGB DCGAN: bare model vs the batching service, latency at half load, memory.

    .venv/bin/python benchmarks/generator.py [--seconds 15] [--requests 100000] [--rayserve-path DIR] [--triton-path DIR]

(a) raw model at max_batch_size, (a1) raw at batch 1, (af) the fastest bare form the service's fast path
picks, at max_batch_size, (b) the service at saturation with 64 concurrent single-sample clients in a separate
load process, (c) the same with max_batch_size 1, (r) the same model behind Ray Serve's @serve.batch under the
same 64-client load over HTTP (benchmarks/rayserve_peer.py; needs ray[serve] on --rayserve-path, installed for
the benchmark only); (o) the service's Open Inference Protocol endpoint under the same load from tritonclient's
gRPC client, (t) the same model in NVIDIA Triton (PyTriton, dynamic batching; benchmarks/triton_peer.py, needs
nvidia-pytriton on --triton-path) loaded by the same tritonclient client, with the pixels for a seed checked
identical across the native call, ganworks' OIP and Triton; then p50/p99 at half of (b)'s rate against
max_queue_delay + 2 × one full batch, and the server's RSS after --requests calls vs after warm-up. Ends with
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

from orchestration.processes import terminate  # noqa: E402

MODEL = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}
THREADS = 2


# -- the bare model ------------------------------------------------------------------------------------------

def raw_throughput(batch: int, seconds: float, fast: bool = False) -> float:
    """Samples/s of the bare model: eager, or (fast) the form the service's fast path picks for it."""
    import torch

    from ganworks.models import build_generator, get_family
    from generator_service.fastpath import fastest_form

    torch.set_num_threads(THREADS)
    generator = build_generator("dcgan", **MODEL).eval()
    if fast:
        family = get_family("dcgan")
        generator, form, _ = fastest_form(generator, family, family.validate(MODEL), batch=batch, device=torch.device("cpu"))
        print(f"     fast path picks the {form} form", flush=True)
    z = torch.randn(batch, MODEL["latent_dim"])
    with torch.inference_mode():
        for _ in range(3):
            generator(z)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            generator(z)
            done += batch
    return done / (time.perf_counter() - start)


# -- the load generator (runs in its own process) ------------------------------------------------------------

def wait_serving(address: str, deadline: float) -> bool:
    """Polls the service's gRPC health until it says SERVING (its warm-up is done) or the deadline passes."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            try:
                if health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    return False


async def _closed_loop(address: str, concurrency: int, seconds: float, max_calls: int, model: str = "bench") -> dict:
    """`concurrency` clients, each asking for one sample, the next as soon as the last is answered."""
    import grpc

    from ganworks.api import generator_pb2 as pb
    from ganworks.api import generator_pb2_grpc as pb_grpc

    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GeneratorStub(channel)
        stop_at = time.monotonic() + seconds

        async def client(k: int) -> None:
            i = 0
            while time.monotonic() < stop_at and len(latencies) < max_calls:
                start = time.monotonic()
                try:
                    await stub.Generate(pb.GenerateRequest(model=model, num_samples=1, seed=k * 1_000_000 + i, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=60)
                    latencies.append(time.monotonic() - start)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                i += 1

        began = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        elapsed = time.monotonic() - began
    return {"calls": len(latencies), "seconds": elapsed, "errors": errors, "latencies": latencies}


async def _open_loop(address: str, rate: float, seconds: float) -> dict:
    """Single-sample calls arriving at a fixed rate, whatever the answers do (latency as a user sees it)."""
    import grpc

    from ganworks.api import generator_pb2 as pb
    from ganworks.api import generator_pb2_grpc as pb_grpc

    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GeneratorStub(channel)

        async def one(i: int) -> None:
            start = time.monotonic()
            try:
                await stub.Generate(pb.GenerateRequest(model="bench", num_samples=1, seed=i, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=60)
                latencies.append(time.monotonic() - start)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        tasks, began, i = [], time.monotonic(), 0
        while time.monotonic() - began < seconds:
            due = began + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - began
    return {"calls": len(latencies), "seconds": elapsed, "errors": errors, "latencies": latencies}


async def _tritonclient_closed_loop(address: str, concurrency: int, seconds: float, per_sample_shape: list[int]) -> dict:
    """The same closed loop through tritonclient's gRPC client: ganworks' OIP (seed [1]) or Triton (seed [1, 1])."""
    import numpy as np
    import tritonclient.grpc.aio as tc

    latencies: list[float] = []
    errors: dict[str, int] = {}
    client = tc.InferenceServerClient(address)
    stop_at = time.monotonic() + seconds
    outputs = [tc.InferRequestedOutput("images")]

    async def one_client(k: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            seed = tc.InferInput("seed", per_sample_shape, "UINT64")
            seed.set_data_from_numpy(np.full(per_sample_shape, k * 1_000_000 + i, dtype=np.uint64))
            start = time.monotonic()
            try:
                await client.infer("bench", [seed], outputs=outputs, client_timeout=60)
                latencies.append(time.monotonic() - start)
            except Exception as exc:  # noqa: BLE001 - counted, as the native loop counts its errors
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            i += 1

    began = time.monotonic()
    await asyncio.gather(*(one_client(k) for k in range(concurrency)))
    elapsed = time.monotonic() - began
    await client.close()
    return {"calls": len(latencies), "seconds": elapsed, "errors": errors, "latencies": latencies}


def _tritonclient_pixels(address: str, seeds: list[int], per_sample_shape: list[int]) -> dict:
    """sha256 of the UINT8 images tritonclient gets for each seed (one call per seed)."""
    import hashlib

    import numpy as np
    import tritonclient.grpc as tc

    client, hashes = tc.InferenceServerClient(address), {}
    for s in seeds:
        seed = tc.InferInput("seed", per_sample_shape, "UINT64")
        seed.set_data_from_numpy(np.full(per_sample_shape, s, dtype=np.uint64))
        response = client.infer("bench", [seed], outputs=[tc.InferRequestedOutput("images")])
        raw = response.get_response().raw_output_contents
        if not raw or not raw[0]:  # seen with PyTriton 0.7.0 on this machine: the right shape, no bytes
            hashes[str(s)] = f"no pixels: the answer's images output holds {len(raw[0]) if raw else 0} bytes"
            continue
        images = response.as_numpy("images")
        hashes[str(s)] = hashlib.sha256(np.ascontiguousarray(images.reshape(-1, *images.shape[-3:])).tobytes()).hexdigest()
    return hashes


def load_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address")
    p.add_argument("--mode", choices=["closed", "open", "tritonclient", "pixels"])
    p.add_argument("--shape", default="1", help="tritonclient modes: the seed input's shape per request (ganworks OIP: 1; Triton: 1,1)")
    p.add_argument("--seeds", default="7,123456789", help="pixels mode: the seeds to fetch")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--seconds", type=float)
    p.add_argument("--max-calls", type=int, default=10**12)
    a = p.parse_args(argv)
    shape = [int(d) for d in a.shape.split(",")]
    if a.mode == "tritonclient":
        result = asyncio.run(_tritonclient_closed_loop(a.address, a.concurrency, a.seconds, shape))
    elif a.mode == "pixels":
        result = _tritonclient_pixels(a.address, [int(s) for s in a.seeds.split(",")], shape)
    elif a.mode == "closed":
        result = asyncio.run(_closed_loop(a.address, a.concurrency, a.seconds, a.max_calls))
    else:
        result = asyncio.run(_open_loop(a.address, a.rate, a.seconds))
    print(json.dumps(result))


def run_load(address: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "_load", "--address", address, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the service ---------------------------------------------------------------------------------------------

class Service:
    """`ganworks generator serve` in a subprocess, serving one published snapshot of MODEL."""

    def __init__(self, store_url: str, max_batch_size: int, max_queue_delay_ms: float):
        exe = os.path.join(os.path.dirname(sys.executable), "ganworks")
        cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "ganworks.cli"]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="generator-bench-", suffix=".log")
        self.process = subprocess.Popen(
            [*cmd, "--log-level", "INFO", "generator", "serve", "--runs", "bench", "--store", store_url, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1",
             "--max-batch-size", str(max_batch_size), "--max-queue-delay-ms", str(max_queue_delay_ms), "--torch-threads", str(THREADS)],
            stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": ROOT},
        )
        match = re.search(r"listening on [\d.]+:(\d+)", self.process.stdout.readline())
        if not match:
            self.stop()
            raise SystemExit("the generator service did not start")
        self.address = f"127.0.0.1:{match.group(1)}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        if not wait_serving(self.address, time.monotonic() + 120):
            raise SystemExit("the generator service never became ready")

    def form(self) -> str:
        """The form the fast path chose for the snapshot (from the service's log), "eager" when none was logged."""
        self.log.seek(0)
        match = re.search(r"serves its (\w+) form", self.log.read())
        return match.group(1) if match else "eager"

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

    def stop(self) -> None:
        terminate(self.process, 30)
        self.process.stdout.close()
        self.log.close()


class TritonPeer:
    """benchmarks/triton_peer.py in its own process (PyTriton starts tritonserver), with nvidia-pytriton on `path`."""

    def __init__(self, path: str, form: str, max_batch_size: int, max_queue_delay_ms: float):
        import sysconfig

        # Triton's Python-backend stub must load this interpreter's libpython, not the system's; then PyTriton's own libraries.
        libraries = [sysconfig.get_config_var("LIBDIR"), os.path.join(path, "nvidia_pytriton.libs"), os.environ.get("LD_LIBRARY_PATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, path]), "OMP_NUM_THREADS": str(THREADS), "LD_LIBRARY_PATH": ":".join(p for p in libraries if p)}
        self.log = tempfile.NamedTemporaryFile("w+", prefix="triton-bench-", suffix=".log")
        stub_env = os.path.join(path, "stub-venv")  # numpy<2 for Triton's Python-backend stub (benchmarks/triton-peer.txt says how)
        self.process = subprocess.Popen([sys.executable, os.path.join(ROOT, "benchmarks", "triton_peer.py"), "--form", form, "--max-batch-size", str(max_batch_size),
                                         *(["--stub-env", stub_env] if os.path.isdir(stub_env) else []),
                                         "--max-queue-delay-ms", str(max_queue_delay_ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT)
        self.address = None
        for line in self.process.stdout:  # tritonserver's own log shares stdout; our line is "port N"
            match = re.fullmatch(r"port (\d+)\s*", line)
            if match:
                self.address = f"127.0.0.1:{match.group(1)}"
                break
        if self.address is None:
            self.log.seek(0)
            tail = self.log.read().strip().splitlines()[-3:]
            self.stop()
            raise RuntimeError(f"the Triton peer did not start: {tail}")

    def stop(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()  # the peer serves until its stdin closes
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            terminate(self.process, 10)
        self.process.stdout.close()
        self.log.close()


def start_triton(args, form: str) -> "TritonPeer | None":
    if not args.triton_path:
        return None
    try:
        peer = TritonPeer(args.triton_path, form, args.max_batch_size, args.max_queue_delay_ms)
    except RuntimeError as exc:
        print(f"     Triton peer failed: {exc}", flush=True)
        return None
    run_load(peer.address, "--mode", "tritonclient", "--shape", "1,1", "--concurrency", str(args.concurrency), "--seconds", "3")  # warm-up
    return peer


def triton_phase(peer: "TritonPeer", args) -> dict:
    return run_load(peer.address, "--mode", "tritonclient", "--shape", "1,1", "--concurrency", str(args.concurrency), "--seconds", str(args.seconds))


def rayserve_throughput(args) -> float | None:
    """The Ray Serve peer's saturated samples/s (benchmarks/rayserve_peer.py in a process with ray[serve] on its path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, args.rayserve_path]), "OMP_NUM_THREADS": str(THREADS), "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "rayserve_peer.py"), "--seconds", str(args.seconds), "--concurrency", str(args.concurrency),
               "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-ms", str(args.max_queue_delay_ms)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        print(f"     Ray Serve peer failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"     Ray Serve: {result['calls']} calls, errors={result['errors']}", flush=True)
    return result["samples_per_s"]


PIXEL_SEEDS = [7, 123456789]


def native_pixels(address: str, seeds: list[int]) -> dict:
    """sha256 of the uint8 image Generate gives for each seed (its sample 0), as the pixels mode hashes tritonclient's."""
    import hashlib

    from ganworks.generator_client import GeneratorClient

    with GeneratorClient(address) as client:
        return {str(s): hashlib.sha256(client.generate("bench", 1, seed=s, output="uint8").images.tobytes()).hexdigest() for s in seeds}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each throughput/latency phase (default 15)")
    parser.add_argument("--requests", type=int, default=100_000, help="calls served before the second memory reading (default 100000)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rayserve-path", default=os.environ.get("GANWORKS_BENCH_RAYSERVE_PATH", ""), help="folder holding ray[serve]'s extra packages (pip install --no-deps --target DIR -r benchmarks/rayserve-peer.txt); without it the Ray Serve peer is skipped")
    parser.add_argument("--triton-path", default=os.environ.get("GANWORKS_BENCH_TRITON_PATH", ""), help="folder holding nvidia-pytriton and its extra packages (pip install --no-deps --target DIR -r benchmarks/triton-peer.txt); without it the Triton peer is skipped")
    args = parser.parse_args()
    # Spinning OpenMP threads collapse small-batch speed when other processes share the cores (measured 6 vs
    # 51 samples/s at batch 1 under a load of 6 on 2 cores); passive waiting is set for the bare model and the
    # service alike, unless the environment chooses (OMP_WAIT_POLICY=ACTIVE on a machine of its own).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    from ganworks.checkpoint import publish_snapshot
    from ganworks.models import build_generator
    from ganworks.store import open_store

    # The bare model is measured before and after the service phases and averaged: on a shared machine the
    # load of others drifts, and the ratios should compare like with like.
    raw_runs = [raw_throughput(args.max_batch_size, args.seconds / 2)]
    raw1_runs = [raw_throughput(1, args.seconds / 2)]
    print(f"(a)  raw model, batch {args.max_batch_size}: {raw_runs[0]:.0f} samples/s (first reading)", flush=True)
    print(f"(a1) raw model, batch 1: {raw1_runs[0]:.0f} samples/s (first reading)", flush=True)
    fast_runs = [raw_throughput(args.max_batch_size, args.seconds / 2, fast=True)]
    print(f"(af) fastest bare form, batch {args.max_batch_size}: {fast_runs[0]:.0f} samples/s (first reading)", flush=True)
    rayserve = rayserve_throughput(args) if args.rayserve_path else None
    print(f"(r)  Ray Serve @serve.batch, {args.concurrency} HTTP clients: {rayserve if rayserve is None else round(rayserve)} samples/s", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        store_url = f"file://{folder}"
        torch.manual_seed(0)
        publish_snapshot(open_store(store_url), run="bench", step=1, generator_state=build_generator("dcgan", **MODEL).state_dict(), architecture="dcgan", architecture_params=MODEL)

        unbatched_service = Service(store_url, 1, args.max_queue_delay_ms)
        try:
            run_load(unbatched_service.address, "--mode", "closed", "--concurrency", str(args.concurrency), "--seconds", "3")
            c = run_load(unbatched_service.address, "--mode", "closed", "--concurrency", str(args.concurrency), "--seconds", str(args.seconds))
        finally:
            unbatched_service.stop()
        unbatched = c["calls"] / c["seconds"]
        print(f"(c)  service, max_batch_size 1: {unbatched:.0f} samples/s errors={c['errors']}", flush=True)

        service, peer = Service(store_url, args.max_batch_size, args.max_queue_delay_ms), None
        try:
            warm = run_load(service.address, "--mode", "closed", "--concurrency", str(args.concurrency), "--seconds", "3")
            rss_warm = service.rss_mb()
            served = warm["calls"]
            form = service.form()
            peer = start_triton(args, form)  # beside the idle service: its phases and ours interleave (T, B, O, T)
            t_runs = [triton_phase(peer, args)] if peer else []
            b = run_load(service.address, "--mode", "closed", "--concurrency", str(args.concurrency), "--seconds", str(args.seconds))
            served += b["calls"]
            batched = b["calls"] / b["seconds"]
            print(f"(b)  service, {args.concurrency} single-sample clients: {batched:.0f} samples/s errors={b['errors']}", flush=True)
            b_p50, b_p99 = percentile(b["latencies"], 0.5) * 1000, percentile(b["latencies"], 0.99) * 1000
            o = run_load(service.address, "--mode", "tritonclient", "--concurrency", str(args.concurrency), "--seconds", str(args.seconds))
            served += o["calls"]
            oip = o["calls"] / o["seconds"]
            o_p50, o_p99 = percentile(o["latencies"], 0.5) * 1000, percentile(o["latencies"], 0.99) * 1000
            print(f"(o)  service's Open Inference Protocol, {args.concurrency} tritonclient gRPC clients: {oip:.0f} samples/s (p50 {o_p50:.0f} ms, p99 {o_p99:.0f} ms) errors={o['errors']}", flush=True)
            pixels = {"oip": run_load(service.address, "--mode", "pixels"), "native": native_pixels(service.address, PIXEL_SEEDS)}
            if peer:
                try:
                    t_runs.append(triton_phase(peer, args))
                    pixels["triton"] = run_load(peer.address, "--mode", "pixels", "--shape", "1,1")
                finally:
                    peer.stop()
            half = run_load(service.address, "--mode", "open", "--rate", str(batched / 2), "--seconds", str(args.seconds))
            served += half["calls"]
            p50, p99 = percentile(half["latencies"], 0.5) * 1000, percentile(half["latencies"], 0.99) * 1000
            budget = args.max_queue_delay_ms + 2 * 1000 * args.max_batch_size / raw_runs[0]
            print(f"     at half rate ({batched / 2:.0f}/s): p50 {p50:.1f} ms, p99 {p99:.1f} ms (budget {budget:.1f} ms) errors={half['errors']}", flush=True)
            while served < args.requests:
                more = run_load(service.address, "--mode", "closed", "--concurrency", str(args.concurrency), "--seconds", "600", "--max-calls", str(args.requests - served))
                served += more["calls"]
                print(f"     {served} calls served, RSS {service.rss_mb():.0f} MB", flush=True)
            rss_end = service.rss_mb()
        finally:
            service.stop()
            if peer:
                peer.stop()

    triton = t_p50 = t_p99 = None
    if t_runs:
        triton = sum(r["calls"] for r in t_runs) / sum(r["seconds"] for r in t_runs)
        latencies = [x for r in t_runs for x in r["latencies"]]
        t_p50, t_p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        readings = ", ".join(f"{r['calls'] / r['seconds']:.0f}" for r in t_runs)
        print(f"(t)  Triton (PyTriton, dynamic batching, {form} form), {args.concurrency} tritonclient gRPC clients: {triton:.0f} samples/s "
              f"(readings {readings}, before and after ours; p50 {t_p50:.0f} ms, p99 {t_p99:.0f} ms) errors={[r['errors'] for r in t_runs]}", flush=True)
    identical = all(hashes == pixels["native"] for hashes in pixels.values())
    print(f"     pixels for seeds {PIXEL_SEEDS} identical across {', '.join(pixels)}: {identical}", flush=True)
    if triton and pixels.get("triton") != pixels["native"]:
        print(f"     Triton's answers are not the same images ({pixels['triton']}): its rate is not comparable, no ratios are given", flush=True)
        triton_measured, triton = triton, None
    else:
        triton_measured = triton

    raw_runs.append(raw_throughput(args.max_batch_size, args.seconds / 2))
    raw1_runs.append(raw_throughput(1, args.seconds / 2))
    fast_runs.append(raw_throughput(args.max_batch_size, args.seconds / 2, fast=True))
    raw, raw1, fast_raw = sum(raw_runs) / 2, sum(raw1_runs) / 2, sum(fast_runs) / 2
    print(f"(af) fastest bare form, batch {args.max_batch_size}: {fast_raw:.0f} samples/s (readings {fast_runs[0]:.0f}, {fast_runs[1]:.0f})")
    print(f"(a)  raw model, batch {args.max_batch_size}: {raw:.0f} samples/s (readings {raw_runs[0]:.0f}, {raw_runs[1]:.0f})")
    print(f"(a1) raw model, batch 1: {raw1:.0f} samples/s (readings {raw1_runs[0]:.0f}, {raw1_runs[1]:.0f}); batching gains {raw / raw1:.2f}x")
    efficiency = (batched / unbatched) / (raw / raw1)
    print(f"service/raw {batched / raw:.2f} (target >= 0.6); batching efficiency {efficiency:.2f} (target >= 0.8); RSS {rss_warm:.0f} -> {rss_end:.0f} MB after {served} calls")
    print(f"service/fastest bare form {batched / fast_raw:.2f} (target >= 0.85)" + (f"; service/Ray Serve {batched / rayserve:.2f} (target >= 2)" if rayserve else "; Ray Serve peer not measured (no --rayserve-path, or it failed: see above)"))
    if triton:
        print(f"OIP/Triton {oip / triton:.2f} (target >= 1.1), native/Triton {batched / triton:.2f} (target >= 1.25); p99 native {b_p99:.0f}, OIP {o_p99:.0f}, Triton {t_p99:.0f} ms")
    print(json.dumps({
        "triton_samples_per_s": round(triton, 1) if triton else None, "triton_measured_samples_per_s": round(triton_measured, 1) if triton_measured else None,
        "oip_samples_per_s": round(oip, 1),
        "oip_over_triton": round(oip / triton, 3) if triton else None, "native_over_triton": round(batched / triton, 3) if triton else None,
        "native_p50_p99_ms": [round(b_p50, 1), round(b_p99, 1)], "oip_p50_p99_ms": [round(o_p50, 1), round(o_p99, 1)],
        "triton_p50_p99_ms": [round(t_p50, 1), round(t_p99, 1)] if t_p50 is not None else None, "pixels_identical": identical, "served_form": form,
        "fast_raw_samples_per_s": round(fast_raw, 1), "service_over_fast_raw": round(batched / fast_raw, 3),
        "rayserve_samples_per_s": round(rayserve, 1) if rayserve else None, "service_over_rayserve": round(batched / rayserve, 3) if rayserve else None,
        "raw_samples_per_s": round(raw, 1), "raw_batch1_samples_per_s": round(raw1, 1), "service_samples_per_s": round(batched, 1),
        "unbatched_samples_per_s": round(unbatched, 1), "service_over_raw": round(batched / raw, 3), "batching_efficiency": round(efficiency, 3),
        "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "p99_budget_ms": round(budget, 2), "rss_growth_mb": round(rss_end - rss_warm, 1),
        "requests": served, "seconds_per_phase": args.seconds, "max_batch_size": args.max_batch_size, "max_queue_delay_ms": args.max_queue_delay_ms,
        "concurrency": args.concurrency, "torch_threads": THREADS, "cpu_count": os.cpu_count(), "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "load_average_1m": round(os.getloadavg()[0], 2),
        **provenance(),
    }))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        load_main(sys.argv[2:])
    else:
        main()
