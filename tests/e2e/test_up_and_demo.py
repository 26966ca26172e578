"""`ganworks demo` and `ganworks up` themselves, as a user runs them: start, serve, stop, nothing left running."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys

import grpc
import pytest

from ganworks.generator_client import GeneratorClient
from tests.e2e.test_local_binding import LOOPBACK_HEX, _listening_addresses
from tests.leftovers import marked_env, processes_marked
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
SMALL = ("--image-size", "16", "--num-workers", "1", "--snapshot-every", "10", "--batch-size", "32", "--eval-samples", "1000")


@pytest.fixture
def store(fitted_store) -> str:
    """The session's store, its digits classifier already fitted (fitting it would be most of a demo's time)."""
    return fitted_store


def ganworks(*args: str, env: dict[str, str], log) -> subprocess.Popen:
    # Its own session, like a shell's foreground job: Ctrl-C is SIGINT to that group.
    return subprocess.Popen([sys.executable, "-m", "ganworks.cli", *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**env, "COLUMNS": "200"}, start_new_session=True)


@pytest.mark.timeout(1200)
def test_demo_trains_serves_evaluates_shows_the_result_and_leaves_no_process(tmp_path, store):
    # As a user runs it: no RAY_AUTH_MODE (the suite turns Ray's token auth off elsewhere), so the trainer's local
    # cluster takes a fresh token. That path once failed at Ray's start ("InvalidAuthToken") while every test passed.
    env = {k: v for k, v in marked_env().items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    with open(tmp_path / "demo.out", "w") as log:
        process = ganworks("demo", "--store", store, "--workdir", str(tmp_path / "demo"), "--run", "d", *SMALL, "--steps", "20",
                           "--timeout", "1000", env=env, log=log)
        code = process.wait(1100)
    out = (tmp_path / "demo.out").read_text(errors="replace")
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["latest_step"] == 20 and report["served_version"] == 20
    assert sorted(report["evaluations"]) == ["10", "20"] and report["serving"]["calls"] > 0
    assert (tmp_path / "demo" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "quality of each snapshot" in out
    wait_until(lambda: not processes_marked(env), 60, "every process of the demo to exit", interval=0.5)



@pytest.mark.timeout(1200)
def test_demo_tabular_trains_ctgan_evaluates_it_asks_for_defaulters_and_leaves_no_process(tmp_path, store):
    env = marked_env()
    with open(tmp_path / "demo.out", "w") as log:
        process = ganworks("demo", "--tabular", "--store", store, "--workdir", str(tmp_path / "demo"), "--num-workers", "1", "--steps", "40",
                           "--snapshot-every", "20", "--batch-size", "100", "--timeout", "1000", env=env, log=log)
        code = process.wait(1100)
    out = (tmp_path / "demo.out").read_text(errors="replace")
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["run"] == "credit-demo" and report["latest_step"] == 40 and sorted(report["evaluations"]) == ["20", "40"]
    assert "table_quality" in report["evaluation"]["metrics"], report["evaluation"]
    asked = report["conditioned"]
    assert asked["condition"] == "default=Yes" and asked["rows"] == asked["matching"] == 1000, asked
    rows = list(csv.DictReader(io.StringIO((tmp_path / "demo" / "conditioned.csv").read_text())))
    assert len(rows) == 1000 and {row["default"] for row in rows} == {"Yes"}
    assert "quality of each snapshot" in out and "1000 synthetic rows asked with default=Yes" in out
    wait_until(lambda: not processes_marked(env), 60, "every process of the demo to exit", interval=0.5)

def test_up_serves_until_ctrl_c_then_stops_everything(tmp_path, store):
    env = marked_env()
    log_path = tmp_path / "up.out"
    with open(log_path, "w") as log:
        process = ganworks("up", "--store", store, "--workdir", str(tmp_path / "up"), "--run", "u", *SMALL, env=env, log=log)
        try:
            def address() -> str | None:
                assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
                found = re.search(r"generator gRPC\W+(127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
                return found and found.group(1)

            with GeneratorClient(wait_until(address, 400, "`ganworks up` printing its addresses", interval=0.5), retries=8) as client:
                def served() -> int:
                    try:
                        return client.generate("u", 4, seed=1).version
                    except grpc.RpcError:
                        return 0

                version = wait_until(served, 300, "the generator serving a snapshot", interval=1)
            assert version >= 10
            # The trainer (rank 0 in its Ray worker, a snapshot published: so its /metrics is up) listens on loopback only.
            trainer_metrics = int(re.search(r"trainer /metrics\W+http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace")).group(1))
            listening = wait_until(lambda: _listening_addresses(trainer_metrics), 60, "the trainer's /metrics listening", interval=0.5)
            assert listening <= LOOPBACK_HEX, f"the trainer's /metrics listens on {listening}"
            process.send_signal(signal.SIGINT)  # Ctrl-C
            code = process.wait(120)
        finally:
            if process.poll() is None:
                process.kill()
    out = log_path.read_text(errors="replace")
    assert code == 0, out[-3000:]
    assert "stopped; nothing left running" in out
    wait_until(lambda: not processes_marked(env), 60, "every process of `ganworks up` to exit", interval=0.5)
