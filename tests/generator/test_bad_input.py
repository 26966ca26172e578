"""Bad input: each call gets the right status code and a message saying what to change; the server stays healthy."""

from __future__ import annotations

import math

import grpc
import pytest

from ganworks.api import generator_pb2 as pb
from ganworks.store import open_store
from tests.generator.conftest import CONDITIONAL, SMALL, RunningServer, publish
from generator_service.settings import GeneratorSettings

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
LATENT = SMALL["latent_dim"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = open_store(f"file://{tmp_path_factory.mktemp('store')}")
    publish(store, "plain", 3, SMALL)
    publish(store, "cond", 3, CONDITIONAL)
    settings = GeneratorSettings(host="127.0.0.1", port=0, metrics_port=0, runs=["plain", "cond"], max_samples_per_request=3000, max_queue_size=3000, max_message_mb=1, png_threads=1)
    running = RunningServer(settings, store)
    yield running
    running.stop()


def _latents(n: int, value: float = 0.0) -> list[float]:
    return [value] * (n * LATENT)


CASES = {
    "zero samples": (dict(model="plain", num_samples=0), INVALID, "num_samples must be between 1 and 3000, got 0"),
    "negative samples": (dict(model="plain", num_samples=-4), INVALID, "got -4"),
    "above the maximum": (dict(model="plain", num_samples=3001), INVALID, "above this server's maximum of 3000"),
    "empty model": (dict(model="", num_samples=1), INVALID, "model is empty"),
    "unknown model": (dict(model="nope", num_samples=1), NOT_FOUND, "model 'nope' is not served here; served models: plain, cond"),
    "unknown version": (dict(model="plain", num_samples=1, version=4), NOT_FOUND, "no published version 4"),
    "negative version": (dict(model="plain", num_samples=1, version=-1), INVALID, "version must be 0"),
    "label out of range": (dict(model="cond", num_samples=2, class_labels=[10]), INVALID, "class label 10 is out of range: model 'cond' has classes 0..9"),
    "negative label": (dict(model="cond", num_samples=2, class_labels=[1, -1]), INVALID, "class label -1 is out of range"),
    "label for unconditional model": (dict(model="plain", num_samples=1, class_labels=[0]), INVALID, "is unconditional: leave class_labels empty"),
    "wrong count of labels": (dict(model="cond", num_samples=3, class_labels=[1, 2]), INVALID, "give 0, 1 or num_samples (3) class_labels, got 2"),
    "latents of wrong length": (dict(model="plain", num_samples=2, latents=_latents(1)), INVALID, f"needs num_samples × latent_dim = 2 × {LATENT}"),
    "NaN latents": (dict(model="plain", num_samples=1, latents=_latents(1, math.nan)), INVALID, "NaN or infinity"),
    "infinite latents": (dict(model="plain", num_samples=1, latents=_latents(1, math.inf)), INVALID, "NaN or infinity"),
    "huge finite latents": (dict(model="plain", num_samples=1, latents=_latents(1, 3e38)), INVALID, "latents must lie in [-100, 100]"),
    "latents just out of range": (dict(model="plain", num_samples=1, latents=_latents(1, -100.5)), INVALID, "magnitude 100"),
    "unknown output format": (dict(model="plain", num_samples=1, output_format=7), INVALID, "output_format 7 is unknown; use one of"),
    "truncation zero": (dict(model="plain", num_samples=1, truncation=0.0), INVALID, "truncation must be in (0, 1]"),
    "truncation above one": (dict(model="plain", num_samples=1, truncation=1.5), INVALID, "truncation must be in (0, 1]"),
    "truncation NaN": (dict(model="plain", num_samples=1, truncation=math.nan), INVALID, "truncation must be in (0, 1]"),
    "negative images per message": (dict(model="plain", num_samples=1, max_images_per_message=-1), INVALID, "max_images_per_message"),
    "answer above the message limit": (dict(model="plain", num_samples=2000, output_format=pb.OUTPUT_FORMAT_FLOAT32), INVALID, "message limit; ask for fewer samples, use PNG, or call GenerateStream"),
}


def _assert_still_healthy(server: RunningServer) -> None:
    assert server.health() == "SERVING"
    with server.client(retries=0) as client:
        assert client.generate("plain", 1, seed=0).images.shape == (1, 16, 16, 1)


@pytest.mark.parametrize("fields, code, message", list(CASES.values()), ids=list(CASES))
def test_bad_request_gets_code_and_actionable_message(server, fields, code, message):
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        client.stub.Generate(pb.GenerateRequest(**fields), timeout=30)
    assert err.value.code() == code
    assert message in err.value.details()
    _assert_still_healthy(server)


def test_stream_validates_like_the_unary_call(server):
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        list(client.stub.GenerateStream(pb.GenerateRequest(model="cond", num_samples=2, class_labels=[11]), timeout=30))
    assert err.value.code() == INVALID and "class label 11 is out of range" in err.value.details()
    _assert_still_healthy(server)


def test_describe_unknown_model_is_not_found(server):
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        client.describe("missing")
    assert err.value.code() == NOT_FOUND and "served models: plain, cond" in err.value.details()


def test_expired_deadline_is_deadline_exceeded(server):
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        client.stub.Generate(pb.GenerateRequest(model="plain", num_samples=500), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _assert_still_healthy(server)


def test_request_bytes_that_do_not_parse_are_invalid_argument(server):
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary("/ganworks.v1.Generator/Generate", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(b"\x0a\xff\xff\xff\xff", timeout=10)
    assert err.value.code() == INVALID and "not a valid ganworks.v1.GenerateRequest" in err.value.details()
    _assert_still_healthy(server)


def test_oversized_request_message_is_refused_without_harm(server):
    huge = pb.GenerateRequest(model="plain", num_samples=1, latents=[0.5] * (5 * 2**20))  # 20 MiB, above the 16 MiB request limit
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/ganworks.v1.Generator/Generate", request_serializer=pb.GenerateRequest.SerializeToString, response_deserializer=pb.GenerateResponse.FromString)(huge, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in err.value.details()
    _assert_still_healthy(server)
