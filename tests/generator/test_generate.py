"""Generating images from snapshots published to a real S3-protocol server, in every output format."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ganworks.generator_client import build_request, decode_response
from tests.generator.conftest import CONDITIONAL, SMALL, publish

pytestmark = pytest.mark.s3


def test_generates_requested_images_from_snapshot_on_s3(s3_store, serve):
    publish(s3_store, "digits", 40, CONDITIONAL)
    server = serve(s3_store, ["digits"])
    with server.client() as client:
        batch = client.generate("digits", 12, seed=5, labels=[3], output="uint8")
    assert batch.images.shape == (12, 16, 16, 1) and batch.images.dtype == np.uint8
    assert (batch.labels == 3).all()
    assert (batch.model, batch.version, batch.seed) == ("digits", 40, 5)
    assert batch.images.std() > 0  # a real generator's output, not a blank


def test_png_uint8_and_float32_outputs_show_the_same_images(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    with server.client() as client:
        png = client.generate("r", 5, seed=9, output="png").images
        raw = client.generate("r", 5, seed=9, output="uint8").images
        floats = client.generate("r", 5, seed=9, output="float32").images
    assert np.array_equal(png, raw)
    assert floats.dtype == np.float32 and floats.min() >= -1 and floats.max() <= 1
    assert np.abs((floats + 1) * 127.5 - raw).max() <= 1.0


def test_unconditional_model_returns_label_minus_one_and_conditional_draws_labels_from_seed(local_store, serve):
    publish(local_store, "plain", 1, SMALL)
    publish(local_store, "cond", 1, CONDITIONAL)
    server = serve(local_store, ["plain", "cond"])
    with server.client() as client:
        assert (client.generate("plain", 4, seed=1).labels == -1).all()
        first = client.generate("cond", 30, seed=2).labels
        again = client.generate("cond", 30, seed=2).labels
    assert np.array_equal(first, again) and len(set(first.tolist())) > 3 and first.min() >= 0 and first.max() < 10


def test_server_draws_and_returns_a_seed_that_reproduces_the_images(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    with server.client() as client:
        drawn = client.generate("r", 3)
        again = client.generate("r", 3, seed=drawn.seed)
    assert np.array_equal(drawn.images, again.images)


def test_stream_returns_the_same_images_as_one_call_in_several_messages(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    with server.client() as client:
        whole = client.generate("r", 10, seed=4)
        request = build_request("r", 10, seed=4)
        request.max_images_per_message = 3
        messages = list(client.stub.GenerateStream(request, timeout=30))
    assert [len(m.images) for m in messages] == [3, 3, 3, 1]
    assert [i.index for m in messages for i in m.images] == list(range(10))
    assert np.array_equal(decode_response(messages).images, whole.images)


def test_list_and_describe_show_the_served_snapshot(local_store, serve):
    manifest = publish(local_store, "cond", 7, CONDITIONAL)
    server = serve(local_store, ["cond"])
    with server.client() as client:
        models = client.list_models()
        info = client.describe("cond")
    assert [(m.model, m.version) for m in models] == [("cond", 7)]
    assert (info.num_classes, info.latent_dim, info.image_size, info.channels) == (10, 16, 16, 1)
    assert info.sha256 == manifest.sha256 and list(info.loaded_versions) == [7]


def test_health_reports_readiness_per_service_and_model_and_liveness_before_any_snapshot(local_store, serve):
    server = serve(local_store, ["late"], wait_ready=False)
    assert server.health("liveness") == "SERVING"
    assert server.health("") == "NOT_SERVING"
    assert server.health("ganworks.v1.Generator/late") == "NOT_SERVING"
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        client.generate("late", 1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "no loaded snapshot" in err.value.details()
    publish(local_store, "late", 1)
    server.call(server.server.wait_ready(30))
    assert server.health("") == "SERVING"
    assert server.health("ganworks.v1.Generator") == "SERVING"
    assert server.health("ganworks.v1.Generator/late") == "SERVING"


def test_reflection_lists_the_generator_service(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"ganworks.v1.Generator", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint_shows_the_documented_names(local_store, serve):
    publish(local_store, "r", 3)
    server = serve(local_store, ["r"])
    with server.client() as client:
        client.generate("r", 4, seed=1)
    text = server.metrics_text()
    for name in (
        'ganworks_generator_requests_total{code="OK",method="Generate"}',
        'ganworks_generator_samples_total{model="r"}',
        "ganworks_generator_request_latency_seconds_bucket",
        "ganworks_generator_queue_wait_seconds_bucket",
        "ganworks_generator_batch_size_bucket",
        "ganworks_generator_queue_depth",
        "ganworks_generator_queue_capacity",
        "ganworks_generator_inflight_requests",
        'ganworks_generator_model_version{model="r"} 3.0',
        'ganworks_generator_model_loads_total{model="r",result="success"}',
        "ganworks_generator_model_load_seconds_bucket",
    ):
        assert name in text, name
    assert server.metric("ganworks_generator_samples_total", model="r") == 4


def test_client_retries_unavailable_until_the_first_snapshot_is_loaded(local_store, serve):
    import threading

    server = serve(local_store, ["late"], wait_ready=False)
    threading.Timer(0.3, publish, args=(local_store, "late", 2)).start()
    with server.client(retries=10) as client:
        assert client.generate("late", 1, seed=0).version == 2
