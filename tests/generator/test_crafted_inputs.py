"""Crafted snapshots and request values against a live generator: a manifest that asks for a huge network, or that is
huge itself, is refused once (format_error) without being built or read whole; an error quotes a request value
only as a short prefix."""

from __future__ import annotations

import resource

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from ganworks.checkpoint import MAX_MANIFEST_BYTES, read_manifest
from ganworks.errors import CheckpointFormatError
from ganworks.layout import MANIFEST, latest_key, snapshot_key
from ganworks.store.local import LocalStore
from tests.generator.conftest import publish
from tests.generator.test_records import model, publish_table  # noqa: F401 - the fitted table model fixture
from tests.waiting import wait_until


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _announce(store, run: str, step: int, manifest: dict) -> None:
    """Writes a manifest for `step` (weights copied from step 1) and points LATEST at it, as a crafted upload would."""
    store.put_bytes(snapshot_key(run, step, "generator.safetensors"), store.get_bytes(snapshot_key(run, 1, "generator.safetensors")))
    store.put_json(snapshot_key(run, step, MANIFEST), manifest)
    store.put_bytes(latest_key(run), f"{step}\n".encode())


def test_a_manifest_asking_for_a_25_gb_network_is_refused_once_as_format_error_without_allocating_it(local_store, serve):
    first = publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    before = _peak_rss_mb()
    crafted = {**first.to_json(), "step": 2, "architecture_params": {**first.architecture_params, "width": 20480, "max_width": 20480}}
    _announce(local_store, "r", 2, crafted)

    wait_until(lambda: server.metric("ganworks_generator_model_loads_total", model="r", result="format_error") >= 1, timeout=30, what="the refusal")
    publish(local_store, "r", 3)  # the watcher moves on: many polls happened since the refusal
    wait_until(lambda: server.metric("ganworks_generator_model_version", model="r") == 3, timeout=30, what="step 3 served")

    assert server.metric("ganworks_generator_model_loads_total", model="r", result="format_error") == 1, "refused once, never retried"
    with server.client() as client, pytest.raises(grpc.RpcError) as caught:
        client.generate("r", 1, seed=1, version=2)
    assert caught.value.code() != grpc.StatusCode.INTERNAL and "parameters" in caught.value.details()
    assert _peak_rss_mb() - before < 300, "the network was never allocated"


def test_a_300_mb_manifest_is_refused_after_reading_at_most_its_cap(tmp_path):
    class CountingStore(LocalStore):
        read = 0

        def open_read(self, key):
            store = self
            context = super().open_read(key)

            class Counting:
                def __enter__(self):
                    stream = context.__enter__()
                    original = stream.read

                    def read(n=-1):
                        data = original(n)
                        store.read += len(data)
                        return data

                    stream.read = read
                    return stream

                def __exit__(self, *exc):
                    return context.__exit__(*exc)

            return Counting()

    store = CountingStore(tmp_path / "store")
    publish(store, "big", 1)
    path = tmp_path / "store" / snapshot_key("big", 1, MANIFEST)
    with open(path, "r+b") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MB long, no disk used
    store.read = 0

    with pytest.raises(CheckpointFormatError, match="larger than"):
        read_manifest(store, "big", 1)
    assert store.read <= MAX_MANIFEST_BYTES + 1


def test_a_one_megabyte_condition_or_model_name_comes_back_as_an_error_under_one_kilobyte(local_store, serve, model):  # noqa: F811
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    huge = "x" * 2**20
    with server.client() as client:
        for method, request in (
            ("GenerateRecords", pb.GenerateRecordsRequest(model="t", num_rows=5, conditions=[pb.Condition(column="default", value=huge)])),
            ("GenerateRecords", pb.GenerateRecordsRequest(model="t", num_rows=5, conditions=[pb.Condition(column=huge, value="Yes")])),
            ("Generate", pb.GenerateRequest(model=huge, num_samples=1)),
            ("DescribeModel", pb.DescribeModelRequest(model=huge)),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                client.call(method, request)
            assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), caught.value.details()[:200]
            assert len(caught.value.details().encode()) < 1024, f"{method}: {len(caught.value.details())} characters"
            assert "characters)" in caught.value.details()  # says how long the value was
