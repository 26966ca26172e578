"""Snapshots over time: pinning, on-demand loading, hot swap under load, refusing corrupted snapshots."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from ganworks.layout import MANIFEST, WEIGHTS, latest_key, snapshot_key
from tests.storefaults import WriterKilled, killed_before
from tests.generator.conftest import publish


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_pinned_version_keeps_answering_after_a_newer_snapshot_is_served(local_store, serve):
    publish(local_store, "r", 10)
    server = serve(local_store, ["r"])
    with server.client() as client:
        before = client.generate("r", 4, seed=1, output="float32")
        publish(local_store, "r", 20)
        _wait_for(lambda: client.describe("r").version == 20, what="step 20 to be served")
        pinned = client.generate("r", 4, seed=1, version=10, output="float32")
        newest = client.generate("r", 4, seed=1, output="float32")
    assert (pinned.version, newest.version) == (10, 20)
    assert np.array_equal(pinned.images, before.images)
    assert not np.allclose(newest.images, before.images)


def test_pinning_a_published_but_unloaded_version_loads_it_on_demand(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], poll_seconds=3600)  # the watcher will not notice step 2 during the test
    publish(local_store, "r", 2)
    with server.client() as client:
        result = client.generate("r", 2, seed=0, version=2)
        info = client.describe("r")
    assert result.version == 2
    assert info.version == 1 and sorted(info.loaded_versions) == [1, 2]


def test_unknown_version_is_not_found_and_names_the_loaded_ones(local_store, serve):
    publish(local_store, "r", 5)
    server = serve(local_store, ["r"])
    with server.client() as client, pytest.raises(grpc.RpcError) as err:
        client.generate("r", 1, version=6)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no published version 6" in err.value.details() and "[5]" in err.value.details()
    assert server.health() == "SERVING"


def test_only_the_last_k_versions_stay_loaded(local_store, serve):
    for step in (1, 2, 3, 4):
        publish(local_store, "r", step)
    server = serve(local_store, ["r"], keep_versions=2, poll_seconds=3600)
    with server.client() as client:
        for step in (1, 2, 3):
            client.generate("r", 1, seed=0, version=step)
        loaded = list(client.describe("r").loaded_versions)
    assert loaded == [4, 3]  # the served newest always stays; the least recently used pinned ones go


def test_hot_swap_under_a_steady_stream_of_calls_fails_none(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], max_queue_delay_ms=2)
    stop = threading.Event()
    failures: list[str] = []
    versions: list[list[int]] = [[] for _ in range(6)]

    def caller(seen: list[int]) -> None:
        with server.client(retries=0) as client:
            while not stop.is_set():
                try:
                    seen.append(client.generate("r", 2, seed=len(seen)).version)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

    threads = [threading.Thread(target=caller, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    try:
        for step in (2, 3):
            time.sleep(0.5)
            publish(local_store, "r", step)
            _wait_for(lambda: server.metric("ganworks_generator_model_version", model="r") == step, what=f"step {step}")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert all(v == sorted(v) for v in versions)  # a caller never goes back to an older snapshot
    assert {1, 3} <= {step for v in versions for step in v}


def test_corrupted_snapshot_is_refused_and_counted_while_the_old_one_keeps_serving(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    # Step 2's weights are damaged after its manifest was written, as a broken upload would leave them.
    with pytest.raises(WriterKilled):
        publish(killed_before(local_store, latest_key("r")), "r", 2)
    key = snapshot_key("r", 2, WEIGHTS)
    data = bytearray(local_store.get_bytes(key))
    data[-10] ^= 0xFF
    local_store.put_bytes(key, bytes(data))
    local_store.put_bytes(latest_key("r"), b"2\n")
    _wait_for(lambda: server.metric("ganworks_generator_model_loads_total", model="r", result="integrity_error") >= 1, what="the refusal")
    with server.client() as client:
        result = client.generate("r", 2, seed=0)
        with pytest.raises(grpc.RpcError) as err:
            client.generate("r", 1, version=2)
    assert result.version == 1
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "sha256" in err.value.details()
    assert server.health() == "SERVING"
    # A fixed re-publish of a newer step is picked up: the refusal is not sticky for the run.
    publish(local_store, "r", 3)
    _wait_for(lambda: server.metric("ganworks_generator_model_version", model="r") == 3, what="step 3")


def test_latest_rewritten_with_the_same_size_within_one_timestamp_tick_is_still_noticed(local_store, serve):
    import os

    publish(local_store, "r", 10)
    server = serve(local_store, ["r"])
    with server.client() as client:
        assert client.describe("r").version == 10
        with pytest.raises(WriterKilled):
            publish(killed_before(local_store, latest_key("r")), "r", 20)  # everything but LATEST
        latest = local_store.root / latest_key("r")
        before = os.stat(latest)
        local_store.put_bytes(latest_key("r"), b"20\n")  # "10\n" -> "20\n": the same size
        # ... and the same modification time, as when both writes fall into one tick of the file system's clock.
        os.utime(latest, ns=(before.st_atime_ns, before.st_mtime_ns))
        _wait_for(lambda: client.describe("r").version == 20, what="step 20 to be served")


def test_errors_name_store_keys_but_never_the_servers_store_url_or_a_path(local_store, serve, tmp_path):
    publish(local_store, "r", 1)
    for step in (2, 3, 4):
        with pytest.raises(WriterKilled):
            publish(killed_before(local_store, latest_key("r")), "r", step)
    weights = snapshot_key("r", 2, WEIGHTS)
    local_store.put_bytes(weights, local_store.get_bytes(weights)[:-10])  # modified: its sha256 no longer matches
    local_store.put_bytes(snapshot_key("r", 3, MANIFEST), b"{not json")  # unreadable manifest
    local_store.delete(snapshot_key("r", 4, WEIGHTS))  # a manifest whose weights are gone
    server = serve(local_store, ["r"])

    details = {}
    with server.client(retries=0) as client:
        for name, call in {"unknown run": lambda: client.generate("nope", 1), "unpublished step": lambda: client.generate("r", 1, version=9),
                           "modified weights": lambda: client.generate("r", 1, version=2), "unreadable manifest": lambda: client.generate("r", 1, version=3),
                           "missing weights": lambda: client.generate("r", 1, version=4)}.items():
            with pytest.raises(grpc.RpcError) as err:
                call()
            details[name] = f"{err.value.code().name}: {err.value.details()}"

    leaks = {name: text for name, text in details.items() if local_store.url in text or str(tmp_path) in text or "file:" in text}
    assert leaks == {}, leaks
    assert "runs/r/checkpoints/000000002/generator.safetensors" in details["modified weights"] or "sha256" in details["modified weights"], details
