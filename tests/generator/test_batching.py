"""The dynamic batcher as callers see it: splitting large calls, dropping calls whose deadline passed or that were cancelled in the queue."""

from __future__ import annotations

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from tests.generator.conftest import publish
from tests.waiting import wait_until

# Slow enough on a CPU that a call of a few hundred samples keeps the model busy for a while.
SLOW = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}


def test_a_call_larger_than_a_batch_is_split_into_full_batches(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], max_batch_size=8)
    with server.client(retries=0, timeout=300) as client:  # one attempt: a retried call would add its samples again
        assert len(client.generate("r", 20, seed=0).images) == 20
    assert server.metric("ganworks_generator_batch_size_count") == 3  # 8 + 8 + 4
    assert server.metric("ganworks_generator_batch_size_sum") == 20


@pytest.fixture
def busy(local_store, serve):
    """A server (batches of 8) working on a 512-sample call: (server, client, the call's future)."""
    publish(local_store, "r", 1, SLOW)
    server = serve(local_store, ["r"], max_batch_size=8)
    with server.client(retries=0) as client:
        call = client.stub.Generate.future(pb.GenerateRequest(model="r", num_samples=512, seed=0, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=300)
        wait_until(lambda: server.metric("ganworks_generator_batch_size_count") >= 1, 60, "the big call's first batch")
        yield server, client, call


@pytest.mark.slow
def test_a_call_whose_deadline_passes_in_the_queue_is_dropped_before_compute(busy):
    server, client, big = busy
    with pytest.raises(grpc.RpcError) as err:
        # Whether the deadline passes on its way or in the queue behind the big call, it is never computed.
        client.stub.Generate(pb.GenerateRequest(model="r", num_samples=8, seed=1), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(big.result().images) == 512
    # Only the first call's samples went through the model.
    assert server.metric("ganworks_generator_batch_size_sum") == 512
    assert server.metric("ganworks_generator_queue_depth") == 0
    assert server.health() == "SERVING"


@pytest.mark.slow
def test_a_call_cancelled_by_its_caller_while_queued_is_dropped_before_compute(busy):
    server, client, big = busy
    # 3 samples: the queue depth is a multiple of 8 until this call waits behind the big one.
    small = client.stub.Generate.future(pb.GenerateRequest(model="r", num_samples=3, seed=1), timeout=300)
    wait_until(lambda: server.metric("ganworks_generator_queue_depth") % 8 == 3, 60, "the small call waiting in the queue")
    assert not big.done(), "the big call finished before the small one was queued; make it bigger"
    small.cancel()
    assert len(big.result().images) == 512
    assert small.cancelled()
    assert server.metric("ganworks_generator_batch_size_sum") == 512, "the cancelled call's samples went through the model"
    assert server.metric("ganworks_generator_queue_depth") == 0
    wait_until(lambda: server.metric("ganworks_generator_requests_total", code="CANCELLED", method="Generate") == 1, 30, "the call counted as CANCELLED")
