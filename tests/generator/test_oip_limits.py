"""Open Inference Protocol requests are checked from their headers before any work: crafted inputs get INVALID_ARGUMENT
with a short message, and requests near the 16 MiB limit are refused without the server's memory growing."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from ganworks.api import inference_pb2 as oip
from ganworks.api import inference_pb2_grpc as oip_grpc
from ganworks.store import open_store
from tests.faults.harness import Generator, publish_tiny
from tests.generator.conftest import publish
from tests.generator.test_translate import publish_pair
from tests.waiting import wait_until

Tensor = oip.ModelInferRequest.InferInputTensor


def _call(server, method: str, request, **kwargs):
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 32 * 2**20)]) as channel:
        return getattr(oip_grpc.GRPCInferenceServiceStub(channel), method)(request, timeout=60, **kwargs)


def _refusal(server, method: str, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, method, request)
    return caught.value.code(), caught.value.details()


def _seeds(seeds, model="r", version="") -> oip.ModelInferRequest:
    return oip.ModelInferRequest(model_name=model, model_version=version, inputs=[Tensor(name="seed", datatype="UINT64", shape=[len(seeds)])],
                                 raw_input_contents=[np.asarray(seeds, dtype="<u8").tobytes()])


def _images(shape, raw: bytes | None = None, typed=None, model="cg") -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model, inputs=[Tensor(name="images", datatype="UINT8", shape=shape)])
    request.parameters["direction"].string_param = "a_to_b"
    if raw is not None:
        request.raw_input_contents.append(raw)
    else:
        request.inputs[0].contents.uint_contents.extend(typed)
    return request


CRAFTED = [
    ("a superscript digit as the version", lambda: _seeds([1], version="²"), "model_version must be empty (the routed default) or a published step number"),
    ("a 19-digit version", lambda: _seeds([1], version="9" * 19), "up to 18 digits"),
    ("a 5,000-digit version", lambda: _seeds([1], version="7" * 5000), "(5000 characters)"),
    ("a seed tensor of shape [0]", lambda: _seeds([]), "input 'seed' has N = 0"),
    ("images of shape [0, 2^40, 1, 1]", lambda: _images([0, 2**40, 1, 1], raw=b""), "input 'images' has N = 0"),
    ("images of shape [1, 2^40, 1, 1]", lambda: _images([1, 2**40, 1, 1], raw=b"\0" * 256), "UINT8 [1, 1099511627776, 1, 1] needs 1099511627776"),
    ("a typed UINT8 value of 300", lambda: _images([1, 16, 16, 1], typed=[300] + [0] * 255), "input 'images' holds 300, outside UINT8's range 0 .. 255"),
    ("a 1 MB model name", lambda: _seeds([1], model="m" * 2**20), "is not served here"),
    ("a 1 MB input name", lambda: oip.ModelInferRequest(model_name="r", inputs=[Tensor(name="x" * 2**20, datatype="UINT64", shape=[1])], raw_input_contents=[b"\0" * 8]), "is unknown"),
]


def test_crafted_inference_requests_get_a_deliberate_status_and_a_short_message(local_store, serve):
    publish(local_store, "r", 1)
    publish_pair(local_store)
    server = serve(local_store, ["r", "cg"])
    for what, build, expected in CRAFTED:
        code, details = _refusal(server, "ModelInfer", build())
        wanted = grpc.StatusCode.NOT_FOUND if "served" in expected else grpc.StatusCode.INVALID_ARGUMENT
        assert code == wanted and expected in details, (what, code, details[:300])
        assert len(details) < 400, f"{what}: the error echoes {len(details)} characters"
    assert server.metric("ganworks_generator_requests_total", code="INTERNAL", method="ModelInfer") == 0


def test_model_metadata_refuses_crafted_versions_and_names_without_echoing_them(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    for name, version, code in [("r", "²", grpc.StatusCode.INVALID_ARGUMENT), ("r", "1" * 5000, grpc.StatusCode.INVALID_ARGUMENT),
                                ("r", "99999999999999999999", grpc.StatusCode.INVALID_ARGUMENT), ("ü" * 100_000, "", grpc.StatusCode.NOT_FOUND)]:
        got, details = _refusal(server, "ModelMetadata", oip.ModelMetadataRequest(name=name, version=version))
        assert got == code and len(details) < 400, (version[:20], got, details[:200])
    assert _call(server, "ModelReady", oip.ModelReadyRequest(name="r", version="")).ready


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_twenty_16_mb_inference_requests_are_refused_before_the_server_allocates_for_them(tmp_path):
    store = open_store(str(tmp_path / "store"))
    publish_tiny(store, "r", 1)
    server = Generator(store.url, "r", tmp_path / "logs").start()
    try:
        latent_dim = 16  # TINY's
        assert _call(server, "ModelInfer", _seeds([1, 2])).outputs[0].shape[0] == 2  # first use paid for before the baseline
        n = (16 * 2**20 - 4096) // (4 * latent_dim)  # just under the 16 MiB message limit
        big = oip.ModelInferRequest(model_name="r", inputs=[Tensor(name="latents", datatype="FP32", shape=[n, latent_dim])],
                                    raw_input_contents=[np.ones((n, latent_dim), np.float32).tobytes()])
        assert big.ByteSize() > 16_000_000
        pid = server.process.process.pid
        before = _rss_bytes(pid)
        for sent in (20, 40):  # the second round shows the memory does not add up per refused request
            for _ in range(20):
                code, details = _refusal(server, "ModelInfer", big)
                assert code == grpc.StatusCode.INVALID_ARGUMENT and f"N = {n}; give between 1 and this server's maximum of 1024" in details
            # The refused requests are freed shortly after their answers (a collection and a heap trim at most once a second): poll.
            settled = lambda: _rss_bytes(pid) - before < 100 * 2**20  # noqa: E731
            wait_until(settled, 10, f"server RSS back within 100 MB of {before / 2**20:.0f} MB after {sent} refused 16 MB requests (now {_rss_bytes(pid) / 2**20:.0f} MB)")
        assert _call(server, "ModelInfer", _seeds([3])).outputs[0].shape[0] == 1
    finally:
        server.stop()
