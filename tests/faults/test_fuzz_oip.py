"""Fuzzing the Open Inference Protocol endpoints (gRPC ModelInfer/ModelMetadata and REST) with generated requests.

What must hold: every answer is OK or a deliberate status (gRPC: never INTERNAL, UNKNOWN, UNAVAILABLE or DATA_LOSS;
REST: never a 5xx), and the server stays healthy throughout.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganworks.api import inference_pb2 as oip
from ganworks.api import inference_pb2_grpc as oip_grpc
from ganworks.store import open_store
from tests.faults.harness import Generator, publish_tiny
from tests.faults.test_fuzz import FORBIDDEN, _assert_healthy, _code
from tests.s3server import free_port

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
DATATYPES = ["UINT64", "INT64", "INT32", "FP32", "UINT8", "BYTES", "FP16", "", "uint64", "²"]
TYPED = {"UINT64": "uint64_contents", "INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "UINT8": "uint_contents"}
VALUES = {
    "uint64_contents": st.integers(0, 2**64 - 1), "int64_contents": st.integers(-(2**63), 2**63 - 1), "int_contents": st.integers(-(2**31), 2**31 - 1),
    "fp32_contents": st.floats(width=32), "uint_contents": st.integers(0, 2**32 - 1),
}
versions = st.one_of(st.sampled_from(["", "1", "2", "0", "²", "١", "9" * 19, "7" * 5000, "-1", " 1", "1e3"]), st.text(max_size=30))
dims = st.one_of(st.integers(-2, 70), st.sampled_from([2**31, 2**40, 2**63 - 1, -(2**63)]))
shapes = st.lists(dims, max_size=5)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-oip")
    store = open_store(str(root / "store"))
    publish_tiny(store, "r", 1)
    publish_tiny(store, "r", 2)
    service = Generator(store.url, "r", root / "logs", extra=("--max-samples-per-request", "64", "--rest-port", str(free_port()))).start()
    service.rest_port = int(service.extra[service.extra.index("--rest-port") + 1])
    yield service
    service.stop()


@st.composite
def infer_requests(draw):
    request = oip.ModelInferRequest(model_name=draw(st.sampled_from(["r", "", "nope", "r/../x", "ü" * 300])), model_version=draw(versions), id=draw(st.text(max_size=8)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["seed", "latents", "class_labels", "images", "noise", ""]))
        datatype, shape = draw(st.sampled_from(DATATYPES)), draw(shapes)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            small = [abs(d) for d in shape if abs(d) < 100]
            size = int(np.prod(small)) * draw(st.sampled_from([1, 4, 8])) if small and len(small) == len(shape) else draw(st.integers(0, 64))
            request.raw_input_contents.append(draw(st.one_of(st.just(b"\1" * min(size, 1 << 16)), st.binary(max_size=80))))
        elif datatype in TYPED:
            field = TYPED[datatype]
            getattr(tensor.contents, field).extend(draw(st.lists(VALUES[field], max_size=40)))
    if draw(st.booleans()):
        param = request.parameters["truncation"]
        draw(st.sampled_from([lambda p: setattr(p, "double_param", 0.5), lambda p: setattr(p, "double_param", float("nan")),
                              lambda p: setattr(p, "string_param", "x" * 1000), lambda p: setattr(p, "bool_param", True), lambda p: setattr(p, "int64_param", 1)]))(param)
    if draw(st.booleans()):
        request.parameters["direction"].string_param = draw(st.sampled_from(["a_to_b", "b_to_a", "", "x" * 500]))
    for name in draw(st.lists(st.sampled_from(["images", "pixels", ""]), max_size=2)):
        output = request.outputs.add(name=name)
        if draw(st.booleans()):
            output.parameters["binary_data"].bool_param = draw(st.booleans())
    return request


def test_model_infer_and_metadata_answer_fuzzed_requests_without_internal_errors(generator):
    seen: dict[str, int] = {}
    with grpc.insecure_channel(generator.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)

        @FUZZ
        @given(request=infer_requests(), method=st.sampled_from(["ModelInfer", "ModelInfer", "ModelMetadata", "ModelReady"]))
        def fuzz(request, method):
            if method == "ModelInfer":
                code = _code(lambda: stub.ModelInfer(request, timeout=20))
            elif method == "ModelMetadata":
                code = _code(lambda: stub.ModelMetadata(oip.ModelMetadataRequest(name=request.model_name, version=request.model_version), timeout=20))
            else:
                code = _code(lambda: stub.ModelReady(oip.ModelReadyRequest(name=request.model_name, version=request.model_version), timeout=20))
            seen[code.name] = seen.get(code.name, 0) + 1
            assert code not in FORBIDDEN, f"{method}({str(request)[:2000]}) -> {code}"

        fuzz()
    print("inference status codes:", seen)
    assert generator.process.running
    _assert_healthy(generator.address)
    assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0, "the fuzzer reached both valid and invalid requests"


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)


@st.composite
def rest_bodies(draw):
    def tensor():
        return draw(st.fixed_dictionaries({"name": st.sampled_from(["seed", "latents", "class_labels", "images", "x"]), "datatype": st.sampled_from(DATATYPES),
                                           "shape": st.one_of(shapes, json_values)},
                                          optional={"data": st.one_of(st.lists(st.integers(-3, 2**64), max_size=20), json_values),
                                                    "parameters": st.one_of(st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-4, 40), json_values)}), json_values)}))

    body = {"inputs": [tensor() for _ in range(draw(st.integers(0, 3)))]}
    if draw(st.booleans()):
        body["parameters"] = draw(st.one_of(st.fixed_dictionaries({"truncation": json_values}), json_values))
    if draw(st.booleans()):
        body["outputs"] = draw(st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(["images", "x"])}, optional={"parameters": json_values}), max_size=2), json_values))
    text = json.dumps(body).encode()
    binary = draw(st.binary(max_size=48))
    header = draw(st.one_of(st.none(), st.just(str(len(text))), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=6)))
    return (text + binary if header is not None else text), header


def test_rest_answers_fuzzed_requests_with_a_deliberate_status_never_a_5xx(generator):
    seen: dict[int, int] = {}

    @FUZZ
    @given(body_and_header=rest_bodies(), path=st.sampled_from(["/v2/models/r/infer", "/v2/models/r/versions/2/infer", "/v2/models/r/versions/²/infer",
                                                                 "/v2/models/nope/infer", "/v2/models/r", "/v2/models/r/versions/99999999999999999999"]))
    def fuzz(body_and_header, path):
        body, header = body_and_header
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Inference-Header-Content-Length"] = header
        infer = path.endswith("/infer")
        connection = http.client.HTTPConnection("127.0.0.1", generator.rest_port, timeout=20)
        try:
            connection.request("POST" if infer else "GET", urllib.parse.quote(path), body=body if infer else None, headers=headers)
            response = connection.getresponse()
            status, text = response.status, response.read()
        finally:
            connection.close()
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, f"{path} {body[:500]!r} -> {status} {text[:300]!r}"

    fuzz()
    print("REST statuses:", seen)
    _assert_healthy(generator.address)
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0, "the fuzzer reached both valid and invalid requests"
