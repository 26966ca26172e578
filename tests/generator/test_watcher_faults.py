"""The model watcher cannot be wedged: a corrupt LATEST, a LATEST ahead of its snapshot, a manifest that fails
validation, an unexpected error; and pinned calls cannot make the server reload without limit."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from ganworks.layout import MANIFEST, latest_key, snapshot_key
from tests.generator.conftest import publish
from tests.waiting import wait_until


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> float:
    """Waits for predicate; returns the seconds it took (printed by the tests for the README's recovery table)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


class LatestChecks:
    """Counts the watcher's checks of a run's LATEST (its stat calls from the model-load threads).

    "Nothing happened" is only proved once the watcher has looked: tests wait for a few more checks than they had
    seen, rather than for a fixed time that a slow machine may not fill with polls.
    """

    def __init__(self, store, monkeypatch, run: str = "r"):
        self.count, real_stat, key = 0, store.stat, latest_key(run)

        def counting_stat(k):
            if k == key and threading.current_thread().name.startswith("model-load"):
                self.count += 1
            return real_stat(k)

        monkeypatch.setattr(store, "stat", counting_stat)

    def wait_for_more(self, polls: int = 3) -> None:
        # A check starts a poll: the poll that saw the change has finished once `polls` >= 2 more checks began.
        target = self.count + polls
        _wait_for(lambda: self.count >= target, what=f"{polls} more polls of LATEST")


def _refusals(server) -> float:
    """Loads of model r that ended in a refusal (the label says which check refused it)."""
    return sum(server.metric("ganworks_generator_model_loads_total", model="r", result=r) for r in ("error", "format_error", "integrity_error"))


def _served_version(server) -> int:
    with server.client(retries=0) as client:
        return client.describe("r").version


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00", "²".encode(), "٣".encode(), b"-1", b"12abc"], ids=["invalid-utf8", "superscript-two", "arabic-three", "negative", "not-a-number"])
def test_a_corrupt_latest_before_anything_loaded_leaves_the_server_live_and_it_recovers_when_latest_is_fixed(local_store, serve, garbage, monkeypatch):
    publish(local_store, "r", 1)
    local_store.put_bytes(latest_key("r"), garbage)
    checks = LatestChecks(local_store, monkeypatch)
    server = serve(local_store, ["r"], wait_ready=False)
    checks.wait_for_more()  # a few polls over the bad LATEST

    assert server.health() == "NOT_SERVING" and server.health("liveness") == "SERVING"
    local_store.put_bytes(latest_key("r"), b"1")
    took = _wait_for(lambda: server.health() == "SERVING", what="readiness after LATEST was fixed")
    print(f"\nrecovery from a corrupt LATEST ({garbage!r}): {took:.2f}s at poll 0.2s")
    assert _served_version(server) == 1


def test_a_corrupt_latest_keeps_the_current_version_serving(local_store, serve, monkeypatch):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    checks = LatestChecks(local_store, monkeypatch)
    local_store.put_bytes(latest_key("r"), b"\xff\xff")
    checks.wait_for_more()

    assert server.health() == "SERVING" and _served_version(server) == 1
    publish(local_store, "r", 2)  # writes a good LATEST
    _wait_for(lambda: _served_version(server) == 2, what="step 2 after LATEST was rewritten")


def test_a_latest_that_names_a_step_not_yet_in_the_store_is_served_once_the_step_appears(local_store, serve, monkeypatch):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    checks = LatestChecks(local_store, monkeypatch)
    local_store.put_bytes(latest_key("r"), b"3")  # LATEST ahead of its snapshot: a copy out of order, a restore
    checks.wait_for_more()
    assert _served_version(server) == 1

    publish(local_store, "r", 3)
    local_store.put_bytes(latest_key("r"), b"3")  # the same LATEST content as before
    took = _wait_for(lambda: _served_version(server) == 3, what="step 3 once it was published")
    print(f"\nrecovery from LATEST naming a missing step: {took:.2f}s at poll 0.2s")
    assert server.metric("ganworks_generator_model_loads_total", model="r", result="missing") >= 1


def test_a_snapshot_whose_manifest_fails_validation_is_fetched_once_and_tried_again_when_republished(local_store, serve, monkeypatch):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    checks = LatestChecks(local_store, monkeypatch)
    publish(local_store, "r", 2)
    good = local_store.get_json(snapshot_key("r", 2, MANIFEST))
    bad = {**good, "architecture_params": {**good["architecture_params"], "width": -3}}
    local_store.put_json(snapshot_key("r", 2, MANIFEST), bad)
    _wait_for(lambda: _refusals(server) == 1, what="the refusal of step 2")
    checks.wait_for_more(5)

    assert _refusals(server) == 1
    assert _served_version(server) == 1
    local_store.put_json(snapshot_key("r", 2, MANIFEST), good)  # republished; LATEST itself does not change
    took = _wait_for(lambda: _served_version(server) == 2, what="step 2 after its manifest was fixed")
    print(f"\nrecovery from an invalid manifest once republished: {took:.2f}s at poll 0.2s")


def test_an_unexpected_error_in_the_watcher_is_counted_and_retried_until_it_passes(local_store, serve, monkeypatch):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    real_stat, failures = local_store.stat, []

    def flaky_stat(key):
        if threading.current_thread().name.startswith("model-load") and len(failures) < 3:  # the watcher's calls only
            failures.append(key)
            raise RuntimeError("a bug in a store driver")
        return real_stat(key)

    monkeypatch.setattr(local_store, "stat", flaky_stat)
    publish(local_store, "r", 2)
    _wait_for(lambda: _served_version(server) == 2, what="step 2 after the watcher's errors stopped")

    assert server.metric("ganworks_generator_watch_errors_total", model="r") == 3
    assert server.health("liveness") == "SERVING"


def test_an_unknown_pinned_version_is_answered_from_memory_on_repeated_calls(local_store, serve, monkeypatch):
    publish(local_store, "r", 5)
    server = serve(local_store, ["r"], poll_seconds=3600)
    reads = []
    real_stat = local_store.stat  # a manifest's size is checked (stat) before it is read
    monkeypatch.setattr(local_store, "stat", lambda key: (reads.append(key), real_stat(key))[1])

    with server.client(retries=0) as client:
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as err:
                client.generate("r", 1, version=6)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert reads == [snapshot_key("r", 6, MANIFEST)]


def test_pinned_calls_cycling_through_evicted_versions_hit_the_reload_limit(local_store, serve):
    for step in (1, 2, 3, 4):
        publish(local_store, "r", step)
    server = serve(local_store, ["r"], keep_versions=1, max_reloads_per_minute=2, poll_seconds=3600)

    codes = []
    with server.client(retries=0) as client:
        for version in (1, 2, 3):
            try:
                client.generate("r", 1, version=version)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                message = exc.details()
    assert codes == ["OK", "OK", "RESOURCE_EXHAUSTED"]
    assert "limit 2" in message and "--keep-versions" in message
    assert server.health() == "SERVING"


def test_a_dead_watcher_turns_liveness_not_serving_so_the_replica_is_restarted(local_store, serve, monkeypatch):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    assert server.health("liveness") == "SERVING"

    async def broken_poll():
        raise SystemError("a bug outside every poll's own error handling")

    monkeypatch.setattr(server.server.manager, "_poll_all", broken_poll)  # the watcher's next poll ends its task

    wait_until(lambda: server.health("liveness") == "NOT_SERVING", 30, "liveness NOT_SERVING after the watcher died")
    assert _served_version(server) == 1, "calls are still answered from the loaded snapshot until the restart"
