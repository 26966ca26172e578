"""SIGTERM drain of `ganworks generator serve`: not ready at once, new calls refused, in-flight calls complete, or are cut at the grace period."""

from __future__ import annotations

import signal

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc as pb_grpc
from tests.generator.conftest import publish, start_server_process, stop_process
from tests.waiting import metric_value, wait_until
from tests.probes import health


def _start_held(tmp_path, grace: str):
    """A generator process (batches of 32) with four 64-sample calls in flight, held inside the model's first batch."""
    from ganworks.store import open_store

    store_url, hold = f"file://{tmp_path / 'store'}", tmp_path / "hold"
    publish(open_store(store_url), "r", 1)
    log = open(tmp_path / "generator.log", "w")
    process, port, metrics_port = start_server_process(store_url, "r", "--metrics-port", "0", "--max-batch-size", "32", "--grace-seconds", grace,
                                                       hold_file=str(hold), stderr=log)
    log.close()
    address, metrics = f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * 2**20)])
    wait_until(lambda: health(channel) == "SERVING", 60, "the server becoming ready")
    hold.touch()  # after the load: its warm-up calls the model too
    stub = pb_grpc.GeneratorStub(channel)
    in_flight = [stub.Generate.future(pb.GenerateRequest(model="r", num_samples=64, seed=i, output_format=pb.OUTPUT_FORMAT_UINT8), timeout=600) for i in range(4)]
    # All four calls have arrived and the first batch is in the model, held there.
    wait_until(lambda: metric_value(metrics, "ganworks_generator_inflight_requests") == 4
               and metric_value(metrics, "ganworks_generator_batch_size_count") >= 1, 60, "four calls in flight")
    return process, channel, stub, in_flight, hold


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(tmp_path):
    # A grace far longer than the drain on any machine: the server exits as soon as the calls are done.
    process, channel, stub, in_flight, hold = _start_held(tmp_path, "600")
    try:
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: health(channel) in ("NOT_SERVING", "UNAVAILABLE"), 30, "health turning NOT_SERVING after SIGTERM")
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(pb.GenerateRequest(model="r", num_samples=1), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not any(call.done() for call in in_flight), "the in-flight calls are still held in the model"
        hold.unlink()
        answers = [call.result() for call in in_flight]
        assert [len(a.images) for a in answers] == [64] * 4
        assert process.wait(600) == 0
    finally:
        hold.unlink(missing_ok=True)
        channel.close()
        stop_process(process)


def test_calls_still_running_when_the_grace_period_ends_are_cancelled_and_the_server_exits(tmp_path):
    process, channel, stub, in_flight, hold = _start_held(tmp_path, "1")
    try:
        process.send_signal(signal.SIGTERM)
        # The model stays held: only the end of the grace period can end these calls.
        codes = []
        for call in in_flight:
            with pytest.raises(grpc.RpcError) as err:
                call.result(timeout=60)
            codes.append(err.value.code())
        assert all(code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE) for code in codes), codes
        hold.unlink()  # lets the device thread finish its batch, so the process can exit
        assert process.wait(60) == 0
    finally:
        hold.unlink(missing_ok=True)
        channel.close()
        stop_process(process)
    assert "grace period over with 4 calls still in flight" in (tmp_path / "generator.log").read_text()
