"""`ganworks train` as a supervisor runs it: SIGTERM stops it cleanly, the same command resumes, other flags are refused."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from ganworks.checkpoint import read_latest
from ganworks.store import open_store
from tests.leftovers import marked_env, processes_marked
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
RUN = "stopped"
FLAGS = ("--run", RUN, "--dataset", "digits", "--image-size", "16", "--model-param", "width=8", "--num-workers", "1", "--snapshot-every", "10",
         "--checkpoint-every", "10", "--checkpoint-min-seconds", "1", "--metrics-port", "0", "--no-progress")


def train(store_url: str, *flags: str, log=None, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganworks.cli", "train", *flags, "--store", store_url], stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env or marked_env(), start_new_session=True)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped by SIGTERM in the middle: (store, exit code, processes left after the exit, the step LATEST named)."""
    work = tmp_path_factory.mktemp("stop")
    store = open_store(str(work / "store"))
    env = marked_env()
    with open(work / "train-1.log", "w") as log:
        process = train(store.url, *FLAGS, "--steps", "100000", log=log, env=env)
        try:
            wait_until(lambda: (read_latest(store, RUN) or 0) >= 30 or process.poll() is not None, 300, "three snapshots", interval=0.5)
            assert process.poll() is None, (work / "train-1.log").read_text()[-3000:]
            process.send_signal(signal.SIGTERM)  # to the command only, as Kubernetes or `ganworks up` sends it
            code = process.wait(120)
        finally:
            if process.poll() is None:
                process.kill()
    try:
        wait_until(lambda: not processes_marked(env), 60, "every process of the run to exit", interval=0.5)
    except AssertionError:
        pass
    return store, code, processes_marked(env), read_latest(store, RUN), work


def test_sigterm_stops_training_like_ctrl_c_and_leaves_no_process_behind(stopped):
    store, code, left, latest, work = stopped
    assert code == 130, (work / "train-1.log").read_text()[-3000:]
    assert left == [], f"still running after `ganworks train` exited: {left}"


def test_a_local_run_logs_no_state_api_warnings_or_cleaner_tracebacks_alone_or_beside_another_ray(stopped):
    # Ray Train's placement-group cleaner polls the State API, which the local cluster (no dashboard) does not serve:
    # alone it warns once a second; beside another Ray instance (another run, the suite's cluster) its thread dies with a traceback.
    *_, work = stopped
    log = (work / "train-1.log").read_text()
    assert "starts at step" in log, log[-3000:]  # the log is the run's
    for noise in ("State API may be temporarily unavailable", "Exception in thread PlacementGroupCleanerMonitor", "Found multiple active Ray instances"):
        assert noise not in log, log[-3000:]


@pytest.mark.parametrize("other, named", [(("--model-param", "width=16"), "architecture"), (("--split", "all"), "dataset")], ids=["model", "dataset"])
def test_resuming_with_another_model_or_dataset_is_refused(stopped, other, named):
    store, *_ = stopped
    process = train(store.url, *FLAGS, *other, "--steps", "100000")
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 2, out
    assert f"run '{RUN}' already exists" in out and named in out and "--run" in out, out


def test_the_same_command_resumes_a_stopped_run_from_its_last_checkpoint(stopped):
    store, _, _, latest, work = stopped
    env = marked_env()
    process = train(store.url, *FLAGS, "--steps", str(latest + 20), env=env)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    # The driver's own line, from the step rank 0 reports through the progress queue after loading the checkpoint
    # (the worker's "resumed at step" line reaches this output through Ray's log forwarding, which a short run on
    # a busy machine can end before it forwards).
    started = [int(m) for m in re.findall(rf"run {RUN} starts at step (\d+)", out)]
    assert started and started[0] >= 10, f"resumed from a checkpoint, not from scratch: {out[-3000:]}"
    assert read_latest(store, RUN) == latest + 20
    wait_until(lambda: not processes_marked(env), 60, "every process of the resumed run to exit", interval=0.5)
