"""Rollout policies in the store: pinned, seeded canary, promote and rollback under traffic, bad policies."""

from __future__ import annotations

import logging
import random
import threading
import time

from ganworks.layout import WEIGHTS, snapshot_key
from ganworks.cli import main as ganworks
from ganworks.rollout import CANARY, PINNED, RolloutPolicy, read_policy, write_policy
from tests.generator.conftest import publish
from tests.generator.test_versions import _wait_for


def _corrupt(store, run: str, step: int) -> None:
    key = snapshot_key(run, step, WEIGHTS)
    data = bytearray(store.get_bytes(key))
    data[-1] ^= 0xFF
    store.put_bytes(key, bytes(data))


def _canary(local_store, serve, fraction: float):
    """A server of run r whose policy sends `fraction` of unpinned calls to step 2, the rest to step 1; and its route."""
    for step in (1, 2):
        publish(local_store, "r", step)
    write_policy(local_store, "r", RolloutPolicy(CANARY, stable=1, candidate=2, fraction=fraction))
    server = serve(local_store, ["r"])
    return server, server.server.router.route("r")


def test_canary_at_a_fifth_sends_20_percent_of_seeds_to_the_candidate_and_calls_follow_the_seed(local_store, serve):
    server, route = _canary(local_store, serve, 0.2)
    routed = [route.pick(seed)[0].step for seed in range(5000)]
    with server.client() as client:
        served = [client.generate("r", 1, seed=seed).version for seed in range(300)]
        retried = [client.generate("r", 1, seed=seed).version for seed in range(50)]
    assert abs(routed.count(2) / 5000 - 0.2) <= 0.03
    assert served == routed[:300] and set(served) == {1, 2}
    assert retried == served[:50]
    assert server.metric("ganworks_generator_rollout_calls_total", model="r", track="candidate") == served.count(2) + retried.count(2)
    assert server.metric("ganworks_generator_rollout_step", model="r", track="candidate") == 2


def test_promote_canary_and_rollback_under_a_steady_stream_of_calls_fail_none(local_store, serve):
    for step in (1, 2, 3):
        publish(local_store, "r", step)
    server = serve(local_store, ["r"], max_queue_delay_ms=2)
    stop, failures, seen, lock = threading.Event(), [], [], threading.Lock()
    epoch = [0]  # bumped at each switch: a call counts only for the policy in force when it started

    def caller() -> None:
        rng = random.Random()
        with server.client(retries=0) as client:
            while not stop.is_set():
                started_in = epoch[0]
                try:
                    version = client.generate("r", 1, seed=rng.randrange(2**32)).version
                except Exception as exc:  # noqa: BLE001 - every failure is a test failure, collected
                    failures.append(repr(exc))
                    continue
                with lock:
                    if started_in == epoch[0]:
                        seen.append(version)

    def served_after(command: list[str], settled) -> set[int]:
        assert ganworks(["generator", *command, "--store", local_store.url]) == 0
        _wait_for(lambda: settled(server.server.router.route("r")), what=f"replicas to apply {command}")
        with lock:
            seen.clear()
            epoch[0] += 1
        _wait_for(lambda: len(seen) >= 60, what="calls after the switch")
        with lock:
            return set(seen)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        pinned = served_after(["promote", "r", "1"], lambda r: r is not None and r.stable.step == 1 and r.candidate is None)
        canary = served_after(["promote", "r", "2", "--canary", "0.5"], lambda r: r.candidate is not None)
        rolled_back = served_after(["rollback", "r"], lambda r: r.candidate is None)
        back_to_latest = served_after(["rollback", "r"], lambda r: r.stable.step == 3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert (pinned, canary, rolled_back, back_to_latest) == ({1}, {1, 2}, {1}, {3})


def test_a_policy_naming_a_missing_step_keeps_serving_the_stable_one_and_says_why(local_store, serve, caplog):
    publish(local_store, "r", 1)
    write_policy(local_store, "r", RolloutPolicy(PINNED, stable=99))
    server = serve(local_store, ["r"])
    with server.client() as client:
        versions = {client.generate("r", 1, seed=s).version for s in range(20)}
    assert versions == {1}
    assert server.metric("ganworks_generator_rollout_policy_ok", model="r") == 0
    assert server.metric("ganworks_generator_rollout_policy_errors_total", model="r", reason="missing_step") == 1
    assert "names step 99, which is not published; the step LATEST names keeps serving" in caplog.text


def test_a_canary_of_a_corrupt_step_keeps_every_call_on_the_stable_step(local_store, serve, caplog):
    for step in (1, 2, 3):
        publish(local_store, "r", step)
    _corrupt(local_store, "r", 2)
    write_policy(local_store, "r", RolloutPolicy(CANARY, stable=1, candidate=2, fraction=0.5))
    server = serve(local_store, ["r"])
    with server.client() as client:
        versions = {client.generate("r", 1, seed=s).version for s in range(40)}
    assert versions == {1}
    assert server.metric("ganworks_generator_rollout_policy_errors_total", model="r", reason="refused_step") == 1
    assert "names step 2, which is refused (failed verification); step 1 (stable) keeps serving" in caplog.text


def test_rollback_skips_a_previous_step_that_fails_verification(local_store, capsys):
    for step in (1, 2, 3):
        publish(local_store, "r", step)
    for step in ("1", "2", "3"):
        assert ganworks(["generator", "promote", "r", step, "--store", local_store.url]) == 0
    _corrupt(local_store, "r", 2)
    assert ganworks(["generator", "rollback", "r", "--store", local_store.url]) == 0
    assert read_policy(local_store, "r").stable == 1
    assert "run r: pinned to step 1 (was pinned to step 3)" in capsys.readouterr().out


def test_promoting_an_unpublished_step_or_a_bad_fraction_is_refused_with_the_reason(local_store, capsys):
    publish(local_store, "r", 1)
    missing = ganworks(["generator", "promote", "r", "9", "--store", local_store.url])
    first = capsys.readouterr().err
    bad_fraction = ganworks(["generator", "promote", "r", "1", "--canary", "1.5", "--store", local_store.url])
    second = capsys.readouterr().err
    assert (missing, bad_fraction) == (2, 2)
    assert "cannot promote step 9 of run 'r'" in first and "published steps: [1]" in first
    assert "--canary must be a fraction in (0, 1), got 1.5" in second
    assert read_policy(local_store, "r") == RolloutPolicy()


def test_promoting_a_step_whose_weights_fail_verification_is_refused_naming_the_sha256(local_store, capsys):
    publish(local_store, "r", 1)
    publish(local_store, "r", 2)
    key = snapshot_key("r", 2, WEIGHTS)
    data = bytearray(local_store.get_bytes(key))
    data[len(data) // 2] ^= 0x01  # modified after publishing: its manifest's sha256 no longer matches
    local_store.put_bytes(key, bytes(data))

    code = ganworks(["generator", "promote", "r", "2", "--store", local_store.url])

    err = capsys.readouterr().err
    assert code == 2
    assert "cannot promote step 2 of run 'r'" in err and "sha256" in err, err
    assert read_policy(local_store, "r") == RolloutPolicy(), "the policy is left as it was"


def test_inference_protocol_calls_follow_the_same_routing(local_store, serve):
    from tests.generator.test_inference_protocol import _infer, _seed_request

    server, route = _canary(local_store, serve, 0.5)
    versions = [int(_infer(server, _seed_request([seed])).model_version) for seed in range(40)]
    assert versions == [route.pick(seed)[0].step for seed in range(40)]
    assert set(versions) == {1, 2}


def test_describe_model_without_a_version_describes_the_step_the_policy_serves_not_latest(local_store, serve):
    server, _ = _canary(local_store, serve, 0.2)  # LATEST is 2, the stable step 1
    with server.client() as client:
        described = client.describe("r")
        pinned = client.describe("r", version=2)
    assert described.version == 1
    assert pinned.version == 2
