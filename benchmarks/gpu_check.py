"""`make gpu-check`: what the CUDA paths do on this card, in one command, in a few minutes, without the network.

    .venv/bin/python benchmarks/gpu_check.py [--out benchmarks/results] [--skip trainer,tests]

Measures, on CUDA device 0:
  trainer      images/s of the real trainer (Ray, 1 worker, NCCL, bf16 autocast) for DCGAN and StyleGAN2 on digits
  modconv      modconv_speedup: StyleGAN2's grouped modulated convolution vs a per-sample loop of plain convs, batch 32
  generator    every fast-path form of a 64×64 RGB DCGAN (pixel drift from CPU eager fp32, samples/s at batch 64), the
               fastest bare form, the form `ganworks generator serve` picked, its samples/s under 64 single-sample
               clients, service_over_fast_raw, p50/p99 latency
  evaluator    Inception images/s (fp32, TF32 off; tf32 and fp16 with their feature differences), the time of a
               10k-vs-10k FID, and the max feature difference CUDA vs CPU
  tests        the `gpu`-marked tests (tests/gpu)
Prints a table and writes one JSON (benchmarks/results/gpu-check-<UTC time>.json), rewritten after every section so
a run cut short keeps what it measured. The Inception network has random weights (speed and device agreement do not
depend on them; the published weights are not fetched). Without CUDA: says so, writes {"device": "cpu", "skipped":
true, ...} and exits 0 at once. Exit 1 when a section failed or a gpu test did not pass.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

SECTIONS = ("modconv", "generator", "evaluator", "trainer", "tests")
SERVE_MODEL = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}
NO_CUDA = ("no CUDA device: torch.cuda.is_available() is False (a CPU build of torch, no NVIDIA driver, or CUDA_VISIBLE_DEVICES "
           "hides the cards); nothing was measured. On a GPU machine install a CUDA build of torch, e.g. "
           "`make clean venv` where PyPI gives the CUDA build (Linux x86_64), then run make gpu-check")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_cuda(fn, repeats: int, device: str, warmup: int = 3) -> float:
    """Median seconds of fn() (the device synchronised around each run)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# -- modulated convolution -----------------------------------------------------------------------------------

def modconv_section(args) -> dict:
    import torch
    import torch.nn.functional as F

    from ganworks.models.stylegan2 import modulated_conv2d

    torch.manual_seed(0)
    n, channels, size = 32, 256, 32
    dev = args.device
    if dev == "cpu":  # the script's own smoke run: a narrower layer
        channels, size = 32, 16
    x = torch.randn(n, channels, size, size, device=dev)
    weight = torch.randn(channels, channels, 3, 3, device=dev) / (channels * 9) ** 0.5
    styles = torch.randn(n, channels, device=dev)

    def loop():
        outs = []
        for i in range(n):  # the per-sample form: each sample's own modulated, demodulated weight, one plain conv
            w = weight * styles[i].reshape(1, -1, 1, 1)
            w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            outs.append(F.conv2d(x[i : i + 1], w, padding=1))
        return torch.cat(outs)

    out = {"batch": n, "channels": channels, "size": size}
    with torch.inference_mode():
        reference = loop()
        for precision, ctx in (("fp32", None), ("bf16", torch.bfloat16)):
            autocast = torch.autocast(x.device.type, dtype=ctx) if ctx is not None else torch.autocast(x.device.type, enabled=False)
            with autocast:
                looped = _timed_cuda(loop, 20, dev)
                grouped = _timed_cuda(lambda: modulated_conv2d(x, weight, styles, form="grouped"), 20, dev)
                scaled = _timed_cuda(lambda: modulated_conv2d(x, weight, styles, form="scaled"), 20, dev)
                diff = float((modulated_conv2d(x, weight, styles, form="grouped").float() - reference).abs().max())
            suffix = "" if precision == "fp32" else "_bf16"
            out[f"modconv_speedup{suffix}"] = looped / grouped
            out[f"scaled_over_loop{suffix}"] = looped / scaled
            out[f"loop_ms{suffix}"], out[f"grouped_ms{suffix}"], out[f"scaled_ms{suffix}"] = looped * 1e3, grouped * 1e3, scaled * 1e3
            out[f"grouped_max_abs_difference{suffix}"] = diff
    return out


# -- generator -----------------------------------------------------------------------------------------------

async def _closed_loop(address: str, concurrency: int, seconds: float) -> dict:
    """The generator benchmark's closed loop of single-sample clients, against the check's model."""
    from generator import _closed_loop as closed_loop  # benchmarks/generator.py, beside this script

    return await closed_loop(address, concurrency, seconds, max_calls=10**9, model="gpu")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _bare_samples_per_s(module, family, params, batch: int, seconds: float, device: str) -> float:
    import torch

    z = torch.from_numpy(family.seeded_latents(params, 1, 0, batch)).to(device)
    psi = torch.ones(batch, device=device)
    with torch.inference_mode():
        for _ in range(3):
            family.generate(module, z, None, psi)
        _sync(device)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            out = family.generate(module, z, None, psi)
            out.cpu()  # what the service does with every batch
            done += batch
    return done / (time.perf_counter() - start)


def _wait_serving(address: str, deadline: float) -> None:
    """Until the service's health says SERVING (its warm-up ran every batch shape through the picked form)."""
    from generator import wait_serving  # benchmarks/generator.py, beside this script

    if not wait_serving(address, deadline):
        raise RuntimeError("the generator service never became ready")


def generator_section(args) -> dict:
    import torch

    from ganworks.checkpoint import publish_snapshot
    from ganworks.models import build_generator, get_family
    from ganworks.store import open_store
    from generator_service import fastpath

    family, batch = get_family("dcgan"), 64
    params = family.validate(SERVE_MODEL)
    torch.manual_seed(0)
    cpu_generator = build_generator("dcgan", **SERVE_MODEL).eval()
    generator = build_generator("dcgan", **SERVE_MODEL).eval()
    generator.load_state_dict(cpu_generator.state_dict())
    generator = generator.to(args.device)
    device = torch.device(args.device)
    modules, trials = fastpath.measure_forms(generator, family, params, batch=batch, device=device, forms=fastpath.forms_for(device, compile=True))
    forms = {t.name: {"drift": t.drift, "samples_per_s": (batch / t.seconds if t.qualified else None), "reason": t.reason} for t in trials}
    fastest = min((t for t in trials if t.qualified), key=lambda t: t.seconds).name
    fast_raw = _bare_samples_per_s(modules[fastest], family, params, batch, args.seconds, args.device)
    eager_raw = _bare_samples_per_s(modules["eager"], family, params, batch, args.seconds, args.device)
    del modules

    out = {"model": SERVE_MODEL, "batch": batch, "forms": forms, "fastest_bare_form": fastest, "fast_raw_samples_per_s": fast_raw, "eager_raw_samples_per_s": eager_raw}
    with tempfile.TemporaryDirectory() as folder:
        store_url = f"file://{folder}"
        publish_snapshot(open_store(store_url), run="gpu", step=1, generator_state=cpu_generator.state_dict(), architecture="dcgan", architecture_params=SERVE_MODEL)
        log_path = os.path.join(folder, "serve.log")
        exe = os.path.join(os.path.dirname(sys.executable), "ganworks")
        cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "ganworks.cli"]
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                [*cmd, "--log-level", "INFO", "generator", "serve", "--runs", "gpu", "--store", store_url, "--host", "127.0.0.1", "--port", "0",
                 "--metrics-port", "-1", "--device", args.device, "--max-batch-size", str(batch), "--max-queue-delay-ms", "5"],
                stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
            )
        try:
            match = re.search(r"listening on [\d.]+:(\d+)", process.stdout.readline())
            if not match:
                raise RuntimeError(f"the generator service did not start; its log: {open(log_path).read()[-2000:]}")
            address = f"127.0.0.1:{match.group(1)}"
            picked, deadline = None, time.monotonic() + 180
            while picked is None and time.monotonic() < deadline and process.poll() is None:
                found = re.search(r"serves its (\S+) form", open(log_path).read())
                picked = found.group(1) if found else None
                time.sleep(0.5)
            if picked is None:
                raise RuntimeError(f"the generator service never said which form it serves; its log: {open(log_path).read()[-2000:]}")
            _wait_serving(address, deadline)
            asyncio.run(_closed_loop(address, args.clients, 3))  # warm
            load = asyncio.run(_closed_loop(address, args.clients, args.seconds * 2))
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
    if not load["calls"]:
        raise RuntimeError(f"no call of the load succeeded: {load['errors']}")
    service = load["calls"] / load["seconds"]
    out.update(service_form=picked, clients=args.clients, service_samples_per_s=service, service_over_fast_raw=service / fast_raw,
               p50_ms=_percentile(load["latencies"], 0.5) * 1e3, p99_ms=_percentile(load["latencies"], 0.99) * 1e3, errors=load["errors"])
    return out


# -- evaluator -----------------------------------------------------------------------------------------------

def evaluator_section(args) -> dict:
    import numpy as np
    import torch

    from evaluator_service.features import Extractor, inception
    from evaluator_service.metrics.fid import fid

    torch.manual_seed(0)
    net = inception.FIDInceptionV3().eval().requires_grad_(False)

    def extractor(device: str, precision: str = "fp32") -> Extractor:
        return Extractor(inception.EXTRACTOR_ID, net, inception.INPUT_SIZE, 3, inception.FEATURE_DIM, inception.NUM_LOGITS, {}, precision=precision).to(torch.device(device))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2048 if args.device != "cpu" else 16, 32, 32, 3), dtype=np.uint8)
    out: dict = {"network": "FID Inception-v3 layout, random weights", "input": "32×32 uint8, legacy-pytorch resize on the device"}
    few = images[:32 if args.device != "cpu" else 4]
    on_cpu = extractor("cpu").extract(few, "legacy-pytorch", batch_size=16)[0]
    for precision in ("fp32", "tf32", "fp16"):
        e = extractor(args.device, precision)
        e.extract(images[:64], "legacy-pytorch")  # warm
        _sync(args.device)
        start = time.perf_counter()
        e.extract(images, "legacy-pytorch")
        rate = len(images) / (time.perf_counter() - start)
        on_cuda = e.extract(few, "legacy-pytorch")[0]
        difference = float(np.abs(on_cuda - on_cpu).max() / np.abs(on_cpu).max())
        out[precision] = {"images_per_s": rate, "batch_size": e.batch_size(64), "max_relative_difference_vs_cpu": difference}
    out["inception_images_per_s"] = out["fp32"]["images_per_s"]
    out["max_feature_difference_cuda_vs_cpu"] = out["fp32"]["max_relative_difference_vs_cpu"]
    e = extractor(args.device)
    real = rng.integers(0, 256, (args.fid_samples, 32, 32, 3), dtype=np.uint8)
    fake = rng.integers(0, 256, (args.fid_samples, 32, 32, 3), dtype=np.uint8)
    start = time.perf_counter()
    value = fid(e.extract(real, "legacy-pytorch")[0], e.extract(fake, "legacy-pytorch")[0])
    out["fid_samples"] = args.fid_samples
    out["fid_seconds"] = time.perf_counter() - start
    out["fid_value"] = value.get("fid") if isinstance(value, dict) else value
    return out


# -- trainer -------------------------------------------------------------------------------------------------

def trainer_section(args) -> dict:
    from ganworks.settings import StoreSettings
    from trainer import driver
    from trainer.config import TrainOptions
    from trainer.progress import ProgressView

    rates: dict[str, list[float]] = {}
    handle = ProgressView._handle

    def recording(self, message, bar, task):  # the trainer's own images/s, as its progress bar shows them
        if message.get("event") == "log":
            rates.setdefault(self.run, []).append(float(message["images_per_second"]))
        return handle(self, message, bar, task)

    ProgressView._handle = recording
    out: dict = {}
    runs = {"dcgan": ({}, args.trainer_steps), "stylegan2": ({}, max(10, args.trainer_steps // 2))}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for model, (model_params, steps) in runs.items():
                opts = TrainOptions(run=f"gpu-{model}", dataset="digits", image_size=32, conditional=True, model=model, model_params=model_params, steps=steps,
                                    snapshot_every=steps, num_workers=1, batch_size=64, log_every=10, use_gpu=args.device != "cpu", mixed_precision=True, metrics_port=0,
                                    publish_retry_seconds=30.0)
                plan = driver.plan(opts, StoreSettings(store=os.path.join(folder, "store")))
                driver.connect_ray(plan.options)
                started = time.monotonic()
                outcome = driver.train(plan, show_progress=False)
                measured = rates.get(opts.run, [])[1:]  # the first interval holds cuDNN's and the allocator's warm-up
                out[model] = {"images_per_s": (sorted(measured)[len(measured) // 2] if measured else None), "steps": outcome.step, "batch": 64,
                              "backend": "nccl" if opts.use_gpu else "gloo (smoke run)", "autocast": "bf16" if opts.use_gpu else None, "seconds_with_start": time.monotonic() - started, "published": outcome.published}
    finally:
        ProgressView._handle = handle
        if "ray" in sys.modules:  # connect_ray started a local cluster (with its own token) for these runs
            import ray

            ray.shutdown()
    return out


# -- gpu tests -----------------------------------------------------------------------------------------------

def tests_section(args) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/gpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=args.tests_timeout, env={**os.environ, "PYTHONPATH": ROOT})
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1] if lines else ""
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", summary)}
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {"returncode": done.returncode, "summary": summary.strip("= "), "counts": counts, "failures": failures, "seconds": time.monotonic() - started}


# -- main ----------------------------------------------------------------------------------------------------

def _write(result: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as file:
        json.dump(result, file, indent=1, default=str)
    os.replace(path + ".tmp", path)


def _row(name: str, value) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f"  {name:<44} {value}"


def table(result: dict) -> str:
    rows = [f"gpu-check {result['date']}  {result.get('card', result['device'])}  torch {result['torch']}  load {result['load_average']}"]
    get = lambda section, key: result.get(section, {}).get(key, result.get(section, {}).get("error", "—"))  # noqa: E731
    trainer = result.get("trainer", {})
    for model in ("dcgan", "stylegan2"):
        rows.append(_row(f"trainer images/s, {model} (1 worker, NCCL, bf16)", trainer.get(model, {}).get("images_per_s", trainer.get("error", "—"))))
    rows.append(_row("modconv_speedup (grouped / per-sample loop, b32)", get("modconv", "modconv_speedup")))
    rows.append(_row("modconv_speedup, bf16", get("modconv", "modconv_speedup_bf16")))
    for key, label in (("fastest_bare_form", "generator fastest bare form"), ("fast_raw_samples_per_s", "  its samples/s at batch 64"),
                       ("service_form", "form the service picked"), ("service_samples_per_s", f"service samples/s, {result.get('generator', {}).get('clients', '?')} clients"),
                       ("service_over_fast_raw", "service_over_fast_raw"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
        rows.append(_row(label, get("generator", key)))
    for name, form in result.get("generator", {}).get("forms", {}).items():
        rows.append(_row(f"  form {name}", f"drift {form['drift']}, {form['samples_per_s'] and round(form['samples_per_s'])} samples/s {form['reason']}".strip()))
    for key, label in (("inception_images_per_s", "evaluator Inception images/s (fp32)"), ("fid_seconds", "10k-vs-10k FID seconds"),
                       ("max_feature_difference_cuda_vs_cpu", "max feature difference CUDA vs CPU (rel.)")):
        rows.append(_row(label, get("evaluator", key)))
    for precision in ("tf32", "fp16"):
        p = result.get("evaluator", {}).get(precision)
        if p:
            rows.append(_row(f"  Inception {precision}: images/s, difference vs CPU", f"{p['images_per_s']:.4g}, {p['max_relative_difference_vs_cpu']:.2g}"))
    rows.append(_row("gpu-marked tests", get("tests", "summary")))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"), help="folder for the JSON (default benchmarks/results)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase (default 5)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--fid-samples", type=int, default=10_000)
    parser.add_argument("--trainer-steps", type=int, default=120)
    parser.add_argument("--tests-timeout", type=float, default=240.0)
    # A smoke run of the script itself on a CPU (small sizes; the numbers mean nothing): checks its code, not a card.
    parser.add_argument("--smoke-on-cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.device = "cpu" if args.smoke_on_cpu else "cuda"
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        parser.error(f"--skip takes {', '.join(SECTIONS)}; got {', '.join(sorted(skip - set(SECTIONS)))}")

    import torch

    now = _now()
    path = os.path.join(args.out, f"gpu-check-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    result: dict = {"benchmark": "gpu-check", **provenance(), "host": platform.node(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if not torch.cuda.is_available() and not args.smoke_on_cpu:
        result.update(device="cpu", skipped=True, reason=NO_CUDA)
        _write(result, path)
        print(f"gpu-check: {NO_CUDA}\nwrote {path}")
        return 0
    if args.smoke_on_cpu:
        result.update(device="cpu", skipped=False, smoke=True, card="CPU smoke run (numbers mean nothing)", gpu_memory_gib=0, cuda=None)
    else:
        props = torch.cuda.get_device_properties(0)
        result.update(skipped=False, card=torch.cuda.get_device_name(0), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                      gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count(), cpus=os.cpu_count())
    print(f"gpu-check on {result['card']} ({result['gpu_memory_gib']} GiB), torch {result['torch']}, CUDA {result['cuda']}", flush=True)
    started, failed = time.monotonic(), []
    for name, section in (("modconv", modconv_section), ("generator", generator_section), ("evaluator", evaluator_section),
                          ("trainer", trainer_section), ("tests", tests_section)):
        if name in skip:
            result[name] = {"skipped": True}
            continue
        print(f"-- {name} …", flush=True)
        t0 = time.monotonic()
        try:
            result[name] = section(args)
        except Exception as exc:  # noqa: BLE001 - one failing part must not hide the others' numbers
            traceback.print_exc()
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            failed.append(name)
        result[name]["section_seconds"] = round(time.monotonic() - t0, 1)
        _write(result, path)
    if "tests" in result and result["tests"].get("returncode") not in (0, None):
        failed.append("tests")
    result["failed_sections"], result["seconds"] = failed, round(time.monotonic() - started, 1)
    _write(result, path)
    print(table(result))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, default=str))
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
