"""The whole system under load: a chaos soak (faults on a schedule, invariants checked) in every `make test`; the
opt-in soak (`pytest -m soak`) runs mixed load for 10 minutes (GANWORKS_SOAK_SECONDS)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import grpc
import pytest

from ganworks.generator_client import GeneratorClient
from ganworks.api import evaluator_pb2 as epb
from ganworks.api import evaluator_pb2_grpc
from orchestration.local import LocalSystem, SystemOptions
from orchestration.processes import wait_for_grpc_health

SOAK_SECONDS = float(os.environ.get("GANWORKS_SOAK_SECONDS", "600"))
ROOT = pathlib.Path(__file__).resolve().parents[2]
# Beyond the load itself: Ray, the first snapshot, the generator's warm-up, the evaluator's first report, the stop
# (a few minutes on 2 idle cores; generous for 2 loaded ones).
SETUP_SECONDS = 1200


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@pytest.mark.slow
@pytest.mark.timeout(620)
def test_chaos_soak_injects_every_kind_of_fault_under_load_and_breaks_no_invariant(tmp_path):
    """benchmarks/soak.py --ci: the whole system (two generator replicas) under mixed load for ~25 s while seven faults,
    one of each kind, partly overlapping, are injected; about 60–90 s in all with its start-up."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--ci", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.stdout.strip(), done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "soak.json").read_text())
    broken = {line["invariant"]: line["violations"][:5] for line in report["invariants"] if line["violations"]}

    assert broken == {}, broken
    assert summary["invariant_violations"] == 0 and summary["unexpected_errors"] == 0 and done.returncode == 0
    assert summary["fault_kinds"] == sorted(["store_outage", "slow_store", "ray_worker_kill", "generator_kill", "evaluator_kill", "corrupted_upload", "burst"]), report["notes"]
    assert summary["calls"] > 100 and summary["leftover_processes"] == 0
    assert all(summary.get(field) for field in ("date", "commit", "cpu_model", "torch", "python", "device")), summary  # benchmarks/provenance.py
    # The faults were real: the corrupt upload was refused, the burst was shed, the killed Ray worker's group resumed.
    assert report["injected_corrupt_steps"] and set(report["injected_corrupt_steps"]) <= set(map(int, report["refused_steps"]))
    assert report["calls_by_kind"]["burst"].get("RESOURCE_EXHAUSTED", 0) > 0
    assert any("trainer resumed at step" in note for note in report["notes"])
    # Every invariant was checked while it ran (memory: only processes that outlived the warm-up, possibly none here).
    assert all(line["checks"] > 0 for line in report["invariants"] if line["key"] not in ("memory", "fds_threads")), report["invariants"]
    assert (tmp_path / "soak.md").read_text().startswith("# Chaos soak") and (tmp_path / "soak.png").stat().st_size > 1000


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + SETUP_SECONDS)
def test_whole_system_under_mixed_load_has_no_errors_below_capacity_and_flat_memory(tmp_path, fitted_store):
    # The session's store: its digits classifier is already fitted, so the evaluator's first report comes sooner.
    seconds = SOAK_SECONDS
    options = SystemOptions(store=fitted_store, run=f"soak-{int(seconds)}", image_size=16, num_workers=1, steps=10_000_000, snapshot_every=100, eval_samples=1000, workdir=str(tmp_path))
    system = LocalSystem(options)
    errors: list[str] = []
    calls = [0]
    stop = threading.Event()

    def backend(worker: int) -> None:
        # Well below capacity: each client paces itself to ~20 calls/s of 1–8 samples.
        with GeneratorClient(system.generator_address, retries=3) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    client.generate(options.run, 1 + i % 8, seed=worker * 10**6 + i, output="png" if i % 2 else "uint8")
                    calls[0] += 1
                except grpc.RpcError as exc:
                    errors.append(f"generate: {exc.code().name} {exc.details()}")
                time.sleep(0.05)

    def operator() -> None:
        with grpc.insecure_channel(system.evaluator_address) as channel:
            stub = evaluator_pb2_grpc.EvaluatorStub(channel)
            while not stop.wait(20):
                try:
                    stub.ListEvaluations(epb.ListEvaluationsRequest(run=options.run, limit=5), timeout=10)
                except grpc.RpcError as exc:
                    errors.append(f"list evaluations: {exc.code().name}")

    system.start()
    memory: dict[str, list[float]] = {"generator": [], "evaluator": []}
    threads = [threading.Thread(target=backend, args=(w,)) for w in range(4)] + [threading.Thread(target=operator)]
    try:
        # Load starts once the generator is ready (a snapshot loaded and warmed up).
        wait_for_grpc_health(system.generator_address, 300, system.processes["generator"], service="ganworks.v1.Generator")
        # Warm-up ends with the evaluator's first report (it fits its classifier and reference statistics first).
        deadline = time.monotonic() + SETUP_SECONDS / 2
        while not system.reports():
            system.check_alive()
            assert time.monotonic() < deadline, "the evaluator wrote no report"
            time.sleep(1)
        for t in threads:
            t.start()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            system.check_alive()
            for name in memory:
                memory[name].append(rss_mb(system.processes[name].process.pid))
            time.sleep(min(15.0, seconds / 6))
    finally:
        stop.set()
        for t in threads:
            if t.ident is not None:  # a failure before the load began leaves them unstarted
                t.join(30)
        system.stop()

    print(f"{calls[0]} calls; RSS MB generator {memory['generator'][1]:.0f}->{memory['generator'][-1]:.0f}, evaluator {memory['evaluator'][1]:.0f}->{memory['evaluator'][-1]:.0f}")
    assert errors == [], errors[:10]
    assert calls[0] > 0
    for name, samples in memory.items():
        # After warm-up (the first report, then the first sample), memory stays flat: growth under 50 MB over the soak.
        assert samples[-1] - samples[1] < 50, f"{name} RSS grew {samples[1]:.0f} -> {samples[-1]:.0f} MB"
