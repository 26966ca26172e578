"""Evaluator memory under continuous evaluation: RSS of the real server process over many evaluations of new snapshots.

    .venv/bin/python benchmarks/evaluator_memory.py [--evaluations 200] [--num-samples 200] [--mode grpc|continuous]

A file store with a digits run (32×32×1 DCGAN) and a digits classifier, `ganworks generator serve` and
`ganworks evaluator serve` as separate processes on loopback, as deployed. Each round publishes a new snapshot
and evaluates it through the real server: `--mode grpc` asks for it with Evaluate (pinned version, small n, all
seven metrics) and follows WatchEvaluation; `--mode continuous` lets the evaluator's continuous mode find it and
waits for its report in ListEvaluations. The evaluator's RSS (VmRSS) is read after every evaluation; the start
is after the warm-up (the first --warmup evaluations), the end after the last. Target: growth ≤ 20 MB over 200
evaluations. Ends with one JSON line (`evaluations`, `rss_start_mb`, `rss_end_mb`, `rss_growth_mb`, …).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from provenance import provenance  # noqa: E402 - beside this script: the date, commit and machine of the final JSON line

import grpc  # noqa: E402
import torch  # noqa: E402

from evaluator_service.features import classifier  # noqa: E402
from ganworks.api import evaluator_pb2 as pb  # noqa: E402
from ganworks.api import evaluator_pb2_grpc  # noqa: E402
from ganworks.data import load_dataset  # noqa: E402
from ganworks.store import open_store  # noqa: E402
from ganworks.testing.digits_run import publish, write_run_json  # noqa: E402
from orchestration.processes import terminate  # noqa: E402

RUN = "digits-memory"
SMALL = {"kid.subset_size": 50, "kid.num_subsets": 10}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def start_generator(url: str, workdir: str, env: dict) -> tuple[subprocess.Popen, str]:
    """`ganworks generator serve` for the run, as a deployment runs it; its log goes to a file."""
    cmd = [sys.executable, "-m", "ganworks.cli", "--log-level", "WARNING", "generator", "serve", "--runs", RUN, "--host", "127.0.0.1",
           "--port", "0", "--metrics-port", "-1", "--store", url, "--poll-seconds", "0.5", "--torch-threads", "1", "--grace-seconds", "1"]
    log = open(os.path.join(workdir, "generator.log"), "w")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    match = re.search(r"listening on [\d.]+:(\d+)", process.stdout.readline())
    if not match:
        terminate(process, 5)
        raise RuntimeError(f"the generator did not start; see {log.name}")
    return process, f"127.0.0.1:{match.group(1)}"


def prepare_store(url: str) -> None:
    """The run's record, its first snapshot and an (untrained) digits classifier, so no fitting is timed or measured."""
    store = open_store(url)
    write_run_json(store, RUN)
    publish(store, RUN, 1)
    train = load_dataset("digits", image_size=32, channels=1, split="train")
    torch.manual_seed(0)
    net = classifier.DomainClassifier(1, 10, 32).eval().requires_grad_(False)
    classifier.save(store, net, {
        "format_version": classifier.FORMAT_VERSION, "extractor": "digits-classifier", "dataset_id": train.id, "dataset_spec": "digits",
        "image_size": 32, "channels": 1, "num_classes": 10, "feature_dim": classifier.FEATURE_DIM, "epochs": 0, "test_accuracy": 0.1,
    })


def start_evaluator(url: str, generator: str, mode: str, num_samples: int, workdir: str, env: dict) -> tuple[subprocess.Popen, str, int]:
    cmd = [sys.executable, "-m", "ganworks.cli", "--log-level", "WARNING", "evaluator", "serve", "--host", "127.0.0.1", "--port", "0",
           "--metrics-port", "0", "--generator", generator, "--store", url, "--torch-threads", "1", "--runs", RUN]
    if mode == "continuous":
        cmd += ["--continuous", "--poll-seconds", "0.2", "--num-samples", str(num_samples), "--metrics", "fid,prdc,is,diversity,mode_coverage,memorization"]
    log = open(os.path.join(workdir, "evaluator.log"), "w")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(r"listening on [\d.]+:(\d+) metrics_port=(\d+)", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the evaluator did not start: {line!r}; see {log.name}")
    return process, f"127.0.0.1:{match.group(1)}", int(match.group(2))


def evaluate_over_grpc(stub, step: int, num_samples: int) -> pb.Evaluation:
    started = stub.Evaluate(pb.EvaluateRequest(run=RUN, version=step, num_samples=num_samples, seed=step, params=SMALL), timeout=120)
    final = started
    for final in stub.WatchEvaluation(pb.GetEvaluationRequest(id=started.id), timeout=600):
        pass
    return final


def wait_for_continuous(stub, step: int, timeout: float = 600) -> pb.Evaluation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in stub.ListEvaluations(pb.ListEvaluationsRequest(run=RUN, limit=3), timeout=30).evaluations:
            if e.version == step and e.state in (pb.EVALUATION_STATE_SUCCEEDED, pb.EVALUATION_STATE_FAILED):
                return e
        time.sleep(0.1)
    raise TimeoutError(f"continuous mode did not evaluate step {step} within {timeout:.0f}s")


def scrape(port: int, prefix: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines) if k.startswith(prefix)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--mode", choices=["grpc", "continuous"], default="grpc")
    parser.add_argument("--target-mb", type=float, default=20.0)
    args = parser.parse_args()
    if args.evaluations <= args.warmup:
        parser.error(f"--evaluations must be more than --warmup ({args.warmup})")

    workdir = tempfile.mkdtemp(prefix="ganworks-evaluator-memory-")
    url = f"file://{workdir}/store"
    prepare_store(url)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    generator, generator_address = start_generator(url, workdir, env)
    evaluator, address, metrics_port = start_evaluator(url, generator_address, args.mode, args.num_samples, workdir, env)
    rss, failed, started = [], 0, time.monotonic()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = evaluator_pb2_grpc.EvaluatorStub(channel)
            for i in range(args.evaluations):
                step = i + 2
                publish(open_store(url), RUN, step)
                result = evaluate_over_grpc(stub, step, args.num_samples) if args.mode == "grpc" else wait_for_continuous(stub, step)
                if result.state != pb.EVALUATION_STATE_SUCCEEDED:
                    failed += 1
                    print(f"step {step} failed: {result.error}", file=sys.stderr)
                rss.append(rss_mb(evaluator.pid))
                if (i + 1) % 10 == 0:
                    print(f"{i + 1} evaluations, evaluator RSS {rss[-1]:.1f} MB, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            jobs = len(stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=30).evaluations)
        sizes = scrape(metrics_port, "ganworks_evaluator_cache_entries")  # jobs, datasets, extractors kept
    finally:
        evaluator.terminate()
        evaluator.wait(30)
        terminate(generator, 15)

    start, end = rss[args.warmup - 1], rss[-1]
    result = {
        "benchmark": "evaluator_memory", "mode": args.mode, "evaluations": args.evaluations, "failed": failed, "num_samples": args.num_samples,
        "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1), "rss_growth_mb": round(end - start, 1),
        "rss_max_mb": round(max(rss[args.warmup - 1:]), 1), "jobs_listed": jobs, "cache_entries": sizes,
        "seconds": round(time.monotonic() - started, 1), "target_growth_mb": args.target_mb, "passed": end - start <= args.target_mb and failed == 0, **provenance(),
    }
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
