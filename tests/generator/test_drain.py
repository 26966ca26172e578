"""SIGTERM drain of `ganworks generator serve`: not ready at once, new calls refused, in-flight calls complete."""

from __future__ import annotations

import signal

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc as pb_grpc
from tests.generator.conftest import publish, start_server_process, stop_process
from tests.waiting import metric_value, wait_until
from tests.probes import health

# Big enough that four calls of 256 samples keep the server busy for a few seconds on a CPU.
SLOW = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}


@pytest.mark.slow
def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(tmp_path):
    from ganworks.store import open_store

    store_url = f"file://{tmp_path / 'store'}"
    publish(open_store(store_url), "r", 1, SLOW)
    # A grace far longer than the drain on any machine: the server exits as soon as the calls are done.
    process, port, metrics_port = start_server_process(store_url, "r", "--metrics-port", "0", "--max-batch-size", "32", "--grace-seconds", "600")
    address, metrics = f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * 2**20)]) as channel:
            wait_until(lambda: health(channel) == "SERVING", 60, "the server becoming ready")
            stub = pb_grpc.GeneratorStub(channel)
            in_flight = [stub.Generate.future(pb.GenerateRequest(model="r", num_samples=256, seed=i, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=600) for i in range(4)]
            # All four calls have arrived and the first batch is computing (1,024 samples, 32 a batch: many batches to go).
            wait_until(lambda: metric_value(metrics, "ganworks_generator_inflight_requests") == 4
                       and metric_value(metrics, "ganworks_generator_batch_size_count") >= 1, 60, "four calls in flight")
            assert not any(call.done() for call in in_flight), "the calls finished before the drain began; make them bigger"
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: health(channel) in ("NOT_SERVING", "UNAVAILABLE"), 30, "health turning NOT_SERVING after SIGTERM")
            with pytest.raises(grpc.RpcError) as err:
                stub.Generate(pb.GenerateRequest(model="r", num_samples=1), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            answers = [call.result() for call in in_flight]
        assert [len(a.images) for a in answers] == [256] * 4
        assert process.wait(600) == 0
    finally:
        stop_process(process)
