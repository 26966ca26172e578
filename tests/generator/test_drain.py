"""SIGTERM drain of `ganworks generator serve`: not ready at once, new calls refused, in-flight calls complete."""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc as pb_grpc
from tests.generator.conftest import publish, start_server_process, stop_process

# Big enough that four calls of 256 samples keep the server busy for a few seconds on a CPU.
SLOW = {"image_size": 64, "channels": 3, "latent_dim": 100, "width": 64}


def _health(channel, service: str = "") -> str:
    try:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    except grpc.RpcError as exc:
        return exc.code().name


@pytest.mark.slow
def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(tmp_path):
    from ganworks.store import open_store

    store_url = f"file://{tmp_path / 'store'}"
    publish(open_store(store_url), "r", 1, SLOW)
    process, port, _ = start_server_process(store_url, "r", "--metrics-port", "-1", "--max-batch-size", "32", "--grace-seconds", "60")
    address = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * 2**20)]) as channel:
            deadline = time.monotonic() + 60
            while _health(channel) != "SERVING":
                assert time.monotonic() < deadline, "server never became ready"
                time.sleep(0.2)
            stub = pb_grpc.GeneratorStub(channel)
            in_flight = [stub.Generate.future(pb.GenerateRequest(model="r", num_samples=256, seed=i, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=120) for i in range(4)]
            time.sleep(0.5)  # the calls are queued or computing
            assert not any(call.done() for call in in_flight), "the calls finished before the drain began; make them bigger"
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert _health(channel) in ("NOT_SERVING", "UNAVAILABLE")
            with pytest.raises(grpc.RpcError) as err:
                stub.Generate(pb.GenerateRequest(model="r", num_samples=1), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            answers = [call.result() for call in in_flight]
        assert [len(a.images) for a in answers] == [256] * 4
        assert process.wait(60) == 0
    finally:
        stop_process(process)
