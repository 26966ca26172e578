"""The dynamic batcher as callers see it: splitting large calls, dropping calls whose deadline passed in the queue."""

from __future__ import annotations

import time

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from tests.generator.conftest import publish

# Slow enough on a CPU that a call of a few hundred samples keeps the model busy for a while.
SLOW = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}


def test_a_call_larger_than_a_batch_is_split_into_full_batches(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], max_batch_size=8)
    with server.client() as client:
        assert len(client.generate("r", 20, seed=0).images) == 20
    assert server.metric("ganworks_generator_batch_size_count") == 3  # 8 + 8 + 4
    assert server.metric("ganworks_generator_batch_size_sum") == 20


@pytest.mark.slow
def test_a_call_whose_deadline_passes_in_the_queue_is_dropped_before_compute(local_store, serve):
    publish(local_store, "r", 1, SLOW)
    server = serve(local_store, ["r"], max_batch_size=8)
    with server.client(retries=0) as client:
        busy = client.stub.Generate.future(pb.GenerateRequest(model="r", num_samples=512, seed=0, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=120)
        time.sleep(0.2)  # the big call is queued first
        with pytest.raises(grpc.RpcError) as err:
            client.stub.Generate(pb.GenerateRequest(model="r", num_samples=8, seed=1), timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(busy.result().images) == 512
    # Only the first call's samples went through the model.
    assert server.metric("ganworks_generator_batch_size_sum") == 512
    assert server.metric("ganworks_generator_queue_depth") == 0
    assert server.health() == "SERVING"
