"""The dynamic batcher as callers see it: splitting large calls, dropping calls whose deadline passed or that were cancelled in the queue."""

from __future__ import annotations

import threading

import grpc
import pytest
import torch

from ganworks.api import generator_pb2 as pb
from tests.generator.conftest import publish
from tests.waiting import wait_until

def test_a_call_larger_than_a_batch_is_split_into_full_batches(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], max_batch_size=8)
    with server.client(retries=0, timeout=300) as client:  # one attempt: a retried call would add its samples again
        assert len(client.generate("r", 20, seed=0).images) == 20
    assert server.metric("ganworks_generator_batch_size_count") == 3  # 8 + 8 + 4
    assert server.metric("ganworks_generator_batch_size_sum") == 20


class Gate:
    """Holds every model call at its start until opened: the device stays busy for as long as a test needs, on any hardware."""

    def __init__(self, module: torch.nn.Module, monkeypatch):
        self.entered, self._open = threading.Event(), threading.Event()
        real_forward = module.forward

        def held_forward(*args, **kwargs):
            self.entered.set()
            assert self._open.wait(120), "the gate was never opened"
            return real_forward(*args, **kwargs)

        monkeypatch.setattr(module, "forward", held_forward)

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def busy(local_store, serve, monkeypatch):
    """A server (batches of 8) whose model is held inside the first batch of a 64-sample call: (server, client, the call's future, the gate)."""
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], max_batch_size=8)
    gate = Gate(server.server.manager.current("r").generator, monkeypatch)
    with server.client(retries=0) as client:
        call = client.stub.Generate.future(pb.GenerateRequest(model="r", num_samples=64, seed=0, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=300)
        wait_until(gate.entered.is_set, 60, "the big call's first batch in the model")
        try:
            yield server, client, call, gate
        finally:
            gate.open()


def test_a_call_whose_deadline_passes_in_the_queue_is_dropped_before_compute(busy):
    server, client, big, gate = busy
    with pytest.raises(grpc.RpcError) as err:
        # The model is held, so the deadline passes while the call waits in the queue behind the big call.
        client.stub.Generate(pb.GenerateRequest(model="r", num_samples=8, seed=1), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    gate.open()
    assert len(big.result().images) == 64
    # Only the first call's samples went through the model.
    assert server.metric("ganworks_generator_batch_size_sum") == 64
    assert server.metric("ganworks_generator_queue_depth") == 0
    assert server.health() == "SERVING"


def test_a_call_cancelled_by_its_caller_while_queued_is_dropped_before_compute(busy):
    server, client, big, gate = busy
    # 3 samples: the queue depth is a multiple of 8 until this call waits behind the big one.
    small = client.stub.Generate.future(pb.GenerateRequest(model="r", num_samples=3, seed=1), timeout=300)
    wait_until(lambda: server.metric("ganworks_generator_queue_depth") % 8 == 3, 60, "the small call waiting in the queue")
    small.cancel()
    wait_until(lambda: server.metric("ganworks_generator_requests_total", code="CANCELLED", method="Generate") == 1, 30, "the call counted as CANCELLED")
    gate.open()
    assert len(big.result().images) == 64
    assert small.cancelled()
    assert server.metric("ganworks_generator_batch_size_sum") == 64, "the cancelled call's samples went through the model"
    assert server.metric("ganworks_generator_queue_depth") == 0
