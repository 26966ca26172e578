"""Evaluator speed on the CPU: the Fréchet distance at d = 2048, and feature extraction through the pipeline vs the bare network.

    .venv/bin/python benchmarks/evaluator.py [--dim 2048] [--batches 2] [--batch-size 16] [--rounds 3]

(a) tr √(Σ1 Σ2) the ganworks way (Cholesky/eigen on symmetric matrices) vs pytorch-fid's scipy.linalg.sqrtm
formulation, on the same float64 statistics of correlated 2048-d features: speedup (target ≥ 5×; from the CPU
time of single-threaded BLAS, which other processes on a shared machine do not inflate; the wall-clock ratio is
printed too) and relative difference of the FIDs (target ≤ 1e-6).
(b) inception-v3-fid (random weights: same arithmetic as the real ones) on uint8 32×32 grey batches: the whole
extraction pipeline (resize to 299 legacy-pytorch, grey -> RGB, forward, float64 statistics) vs the bare
forward pass on the same batches already resized; batches alternate between the two and each
batch counts its best of --rounds tries; the ratio is from CPU time with torch on one thread (what a shared
machine's other processes do not inflate), the wall-clock ratio is printed too. Target ≥ 0.9.
(c) the Inception forward as the extractor ships it (batch norm folded into the convs, channels-last) vs the
plain fp32 NCHW eager forward of the same network on the same resized batches: `inception_speedup` from CPU
time (target ≥ 1.3), features equal within 1e-4 relative. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import numpy as np  # noqa: E402
import torch  # noqa: E402


def correlated_stats(rng: np.random.RandomState, dim: int, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of n features with a decaying spectrum, like pool3 features (float64, n−1)."""
    basis = np.linalg.qr(rng.randn(dim, dim))[0]
    scales = 1.0 / np.sqrt(1.0 + np.arange(dim))
    x = (rng.randn(n, dim) * scales) @ basis.T + shift
    x = np.maximum(x, 0)  # non-negative, as after a ReLU
    return x.mean(0), np.cov(x, rowvar=False)


def _timed(fn) -> tuple[float, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_frechet(dim: int, repeats: int, blas_threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    from evaluator_service.metrics.fid import frechet_distance, frechet_distance_sqrtm

    rng = np.random.RandomState(0)
    mu1, s1 = correlated_stats(rng, dim, 2 * dim, 0.3)
    mu2, s2 = correlated_stats(rng, dim, 2 * dim, 0.35)
    # CPU time of single-threaded BLAS is the work done, whatever else the shared machine runs; wall time is shown too.
    with threadpool_limits(limits=blas_threads):
        ours_runs = [_timed(lambda: frechet_distance(mu1, s1, mu2, s2)) for _ in range(repeats)]
        baseline, sqrtm_wall, sqrtm_cpu = _timed(lambda: frechet_distance_sqrtm(mu1, s1, mu2, s2))
    ours = ours_runs[0][0]
    ours_wall = float(np.median([r[1] for r in ours_runs]))
    ours_cpu = float(np.median([r[2] for r in ours_runs]))
    print(f"frechet d={dim}, {blas_threads} BLAS thread(s): sqrtm {sqrtm_cpu:.2f}s CPU / {sqrtm_wall:.2f}s wall, "
          f"ganworks {ours_cpu:.2f}s CPU / {ours_wall:.2f}s wall (median of {repeats}); FID {ours:.9f} vs {baseline:.9f}")
    return {"sqrtm_seconds": sqrtm_cpu, "ours_seconds": ours_cpu, "speedup": sqrtm_cpu / ours_cpu, "speedup_wall": sqrtm_wall / ours_wall,
            "rel_diff": abs(ours - baseline) / abs(baseline)}


def bench_pipeline(batches: int, batch_size: int, rounds: int) -> dict:
    from evaluator_service.features import Extractor
    from evaluator_service.features.inception import FEATURE_DIM, INPUT_SIZE, NUM_LOGITS, FIDInceptionV3
    from evaluator_service.stats import FeatureStats

    torch.manual_seed(0)
    extractor = Extractor("inception-v3-fid", FIDInceptionV3().eval().requires_grad_(False), INPUT_SIZE, 3, FEATURE_DIM, NUM_LOGITS, {})
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (batch_size, 32, 32, 1), dtype=np.uint8) for _ in range(batches)]
    prepared = [extractor.prepare(b, "legacy-pytorch").contiguous() for b in images]
    extractor.forward(prepared[0][:2])  # warm-up: first-call allocations

    def pipeline(batch: np.ndarray) -> np.ndarray:
        features, _ = extractor.extract(batch, "legacy-pytorch", batch_size)
        return features

    # The machine is shared: each batch counts its best of `rounds` tries, pipeline and forward interleaved;
    # CPU time (torch on one thread) is the work done, which other processes do not inflate.
    best = {"pipeline": [(float("inf"), float("inf"))] * batches, "forward": [(float("inf"), float("inf"))] * batches}
    features = []
    for _ in range(rounds):
        for i, (batch, ready) in enumerate(zip(images, prepared)):
            for name, fn, arg in (("pipeline", pipeline, batch), ("forward", extractor.forward, ready)):
                out, wall, cpu = _timed(lambda: fn(arg))
                best[name][i] = (min(best[name][i][0], wall), min(best[name][i][1], cpu))
                if name == "pipeline":
                    features.append(out)
    # The pipeline ends with the float64 statistics of all its features (one product, as the evaluator does).
    _, stats_wall, stats_cpu = _timed(lambda: FeatureStats.of(np.concatenate(features[-batches:])))
    n = batches * batch_size
    wall = {k: sum(t[0] for t in v) for k, v in best.items()}
    cpu = {k: sum(t[1] for t in v) for k, v in best.items()}
    wall["pipeline"] += stats_wall
    cpu["pipeline"] += stats_cpu
    print(f"inception-v3-fid on {n} images 32×32 grey (best of {rounds}): pipeline {n / cpu['pipeline']:.2f} img/CPU-s ({n / wall['pipeline']:.2f} img/s wall), "
          f"bare forward {n / cpu['forward']:.2f} img/CPU-s ({n / wall['forward']:.2f} img/s wall)")
    return {"pipeline_images_per_cpu_second": n / cpu["pipeline"], "forward_images_per_cpu_second": n / cpu["forward"],
            "ratio": cpu["forward"] / cpu["pipeline"], "ratio_wall": wall["forward"] / wall["pipeline"]}


def bench_inception_speedup(batch_size: int, rounds: int) -> dict:
    from evaluator_service.features import Extractor
    from evaluator_service.features.inception import FEATURE_DIM, INPUT_SIZE, NUM_LOGITS, FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3().eval().requires_grad_(False)
    for module in net.modules():  # batch-norm statistics away from the identity, as trained ones are
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1), module.running_var.uniform_(0.5, 2.0), module.bias.data.uniform_(-0.1, 0.1)
    extractor = Extractor("inception-v3-fid", net, INPUT_SIZE, 3, FEATURE_DIM, NUM_LOGITS, {})
    batch = extractor.prepare(np.random.RandomState(0).randint(0, 256, (batch_size, 32, 32, 1), dtype=np.uint8), "legacy-pytorch").contiguous()

    def plain():
        with torch.inference_mode():
            return net(batch)[0]

    def shipped():
        return extractor.forward(batch)[0]

    shipped(), plain()  # warm-up: first-call allocations
    best = {"shipped": (float("inf"), float("inf")), "plain": (float("inf"), float("inf"))}
    out = {}
    for _ in range(rounds):
        for name, fn in (("plain", plain), ("shipped", shipped)):
            out[name], wall, cpu = _timed(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    diff = float((out["shipped"] - out["plain"]).abs().max() / out["plain"].abs().max())
    n = batch_size
    print(f"inception forward, batch {n} at 299² (best of {rounds}): shipped {n / best['shipped'][1]:.2f} img/CPU-s ({n / best['shipped'][0]:.2f} img/s wall), "
          f"plain fp32 NCHW eager {n / best['plain'][1]:.2f} img/CPU-s ({n / best['plain'][0]:.2f} img/s wall); features differ by {diff:.1e} relative")
    return {"speedup": best["plain"][1] / best["shipped"][1], "speedup_wall": best["plain"][0] / best["shipped"][0], "rel_diff": diff,
            "shipped_images_per_cpu_second": n / best["shipped"][1], "plain_images_per_cpu_second": n / best["plain"][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="timings of the ganworks Fréchet distance (median reported)")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="tries per batch; the best counts (the machine is shared)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the extraction part (ratio from CPU time)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads for the Fréchet part (speedup is from CPU time)")
    parser.add_argument("--inception-batch", type=int, default=8, help="batch size of the shipped-vs-plain Inception forward")
    parser.add_argument("--parts", default="frechet,pipeline,inception", help="comma-separated parts to run (default all three)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    out = {}
    if "frechet" in parts:
        frechet = bench_frechet(args.dim, args.repeats, args.blas_threads)
        out.update({
            "frechet_speedup": round(frechet["speedup"], 2), "frechet_rel_diff": frechet["rel_diff"],
            "frechet_speedup_wall": round(frechet["speedup_wall"], 2),
            "frechet_sqrtm_cpu_seconds": round(frechet["sqrtm_seconds"], 3), "frechet_ours_cpu_seconds": round(frechet["ours_seconds"], 3),
        })
    if "pipeline" in parts:
        pipeline = bench_pipeline(args.batches, args.batch_size, args.rounds)
        out.update({
            "pipeline_over_forward": round(pipeline["ratio"], 3), "pipeline_over_forward_wall": round(pipeline["ratio_wall"], 3),
            "pipeline_images_per_cpu_second": round(pipeline["pipeline_images_per_cpu_second"], 2), "forward_images_per_cpu_second": round(pipeline["forward_images_per_cpu_second"], 2),
        })
    if "inception" in parts:
        speed = bench_inception_speedup(args.inception_batch, args.rounds)
        out.update({
            "inception_speedup": round(speed["speedup"], 2), "inception_speedup_wall": round(speed["speedup_wall"], 2), "inception_rel_diff": speed["rel_diff"],
            "inception_shipped_images_per_cpu_second": round(speed["shipped_images_per_cpu_second"], 2),
            "inception_plain_images_per_cpu_second": round(speed["plain_images_per_cpu_second"], 2),
        })
    print(json.dumps({**out, "dim": args.dim, "torch_threads": args.threads, "blas_threads": args.blas_threads, **provenance()}))


if __name__ == "__main__":
    main()
