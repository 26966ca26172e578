"""Fuzzing both services with generated protobuf requests and raw malformed bytes.

What must hold: every answer is OK or a deliberate status (never INTERNAL, UNKNOWN, or a crash that
leaves the caller UNAVAILABLE), and the servers stay healthy throughout.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganworks.api import generator_pb2 as gpb
from ganworks.api import generator_pb2_grpc
from ganworks.store import open_store
from tests.faults.harness import Generator, publish_tiny

pytestmark = pytest.mark.slow

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
RAW = settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

int32 = st.integers(-(2**31), 2**31 - 1)
small_or_any_int32 = st.one_of(st.integers(-3, 70), int32)
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    store = open_store(str(root / "store"))
    publish_tiny(store, "r", 100)
    publish_tiny(store, "r", 200)
    service = Generator(store.url, "r", root / "logs", extra=("--max-samples-per-request", "64")).start()
    yield service
    service.stop()


def generate_requests():
    return st.builds(
        gpb.GenerateRequest,
        model=st.sampled_from(["r", "", "nope", "r/../x", "ü" * 300]),
        version=st.one_of(st.sampled_from([0, 100, 200, 300, -1]), st.integers(-(2**63), 2**63 - 1)),
        num_samples=small_or_any_int32,
        seed=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
        class_labels=st.lists(st.one_of(st.integers(-2, 12), int32), max_size=80),
        truncation=st.one_of(st.none(), floats),
        latents=st.lists(floats, max_size=600),
        output_format=st.one_of(st.integers(0, 4), int32),
        max_images_per_message=small_or_any_int32,
    )


def _code(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "SerializeToString"):
            for _ in result:
                pass
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def _assert_healthy(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_generator_answers_thousands_of_fuzzed_requests_without_internal_errors_and_stays_healthy(generator):
    seen: dict[str, int] = {}
    with grpc.insecure_channel(generator.address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)

        @FUZZ
        @given(request=generate_requests(), method=st.sampled_from(["Generate", "GenerateStream", "DescribeModel"]))
        def fuzz(request, method):
            if method == "DescribeModel":
                code = _code(lambda: stub.DescribeModel(gpb.DescribeModelRequest(model=request.model, version=request.version), timeout=20))
            else:
                code = _code(lambda: getattr(stub, method)(request, timeout=20))
            seen[code.name] = seen.get(code.name, 0) + 1
            assert code not in FORBIDDEN, f"{method}({request}) -> {code}"

        fuzz()
    print("generator status codes:", seen)
    assert generator.process.running
    _assert_healthy(generator.address)
    assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0, "the fuzzer reached both valid and invalid requests"


def _fuzz_with_malformed_bytes(address: str, method: str, streaming: bool) -> None:
    """Raw bytes, most of them not a valid message, to one method: only deliberate status codes come back."""
    seen: dict[str, int] = {}
    with grpc.insecure_channel(address) as channel:
        factory = channel.unary_stream if streaming else channel.unary_unary
        call = factory(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)

        @RAW
        @given(payload=st.binary(max_size=300))
        def fuzz(payload):
            code = _code(lambda: call(payload, timeout=20))
            seen[code.name] = seen.get(code.name, 0) + 1
            assert code not in FORBIDDEN, f"{method} with {payload!r} -> {code}"

        fuzz()
    print(method, seen)
    _assert_healthy(address)


@pytest.mark.parametrize("method", ["/ganworks.v1.Generator/Generate", "/ganworks.v1.Generator/GenerateStream", "/ganworks.v1.Generator/DescribeModel", "/ganworks.v1.Generator/Translate"])
def test_generator_answers_malformed_bytes_with_a_deliberate_status(generator, method):
    _fuzz_with_malformed_bytes(generator.address, method, streaming=method.endswith("Stream"))


# -- the evaluator ------------------------------------------------------------------------------------------

from ganworks.api import evaluator_pb2 as epb  # noqa: E402
from ganworks.api import evaluator_pb2_grpc  # noqa: E402
from tests.faults.harness import Evaluator, write_run_json  # noqa: E402
from tests.s3server import free_port  # noqa: E402


def _start_evaluator(root, *extra: str) -> Evaluator:
    """An evaluator whose generator address has nothing behind it: accepted jobs fail fast, the API is what is fuzzed."""
    store = open_store(str(root / "store"))
    write_run_json(store, "r")
    publish_tiny(store, "r", 100)
    return Evaluator(store.url, "", root / "logs", f"127.0.0.1:{free_port()}", continuous=False, extra=("--max-queue-size", "4", *extra)).start()


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    service = _start_evaluator(tmp_path_factory.mktemp("fuzz-evaluator"))
    yield service
    service.stop()


def evaluate_requests():
    return st.builds(
        epb.EvaluateRequest,
        run=st.sampled_from(["r", "", "nope", "../r", "r" * 200]),
        version=st.one_of(st.sampled_from([0, 100, 7, -1]), st.integers(-(2**63), 2**63 - 1)),
        num_samples=small_or_any_int32,
        metrics=st.lists(st.sampled_from(["fid", "kid", "prdc", "is", "diversity", "mode_coverage", "memorization", "", "bogus"]), max_size=4),
        extractor=st.sampled_from(["", "digits-classifier", "inception-v3-fid", "nope"]),
        resize_mode=st.sampled_from(["", "legacy-pytorch", "clean", "nearest"]),
        seed=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
        params=st.dictionaries(st.sampled_from(["kid.subset_size", "kid.num_subsets", "prdc.nearest_k", "x", ""]), floats, max_size=3),
    )


def _call_evaluator(stub, method: str, request, text: str, limit: int, metadata=None) -> grpc.StatusCode:
    """One call of `method` built from the fuzzed values; its status code."""
    if method == "Evaluate":
        return _code(lambda: stub.Evaluate(request, timeout=20, metadata=metadata))
    if method == "ListEvaluations":
        return _code(lambda: stub.ListEvaluations(epb.ListEvaluationsRequest(run=request.run, limit=limit), timeout=20, metadata=metadata))
    return _code(lambda: getattr(stub, method)(epb.GetEvaluationRequest(id=text), timeout=20, metadata=metadata))


def test_evaluator_answers_thousands_of_fuzzed_requests_without_internal_errors_and_stays_healthy(evaluator):
    seen: dict[str, int] = {}
    with grpc.insecure_channel(evaluator.address) as channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)

        @FUZZ
        @given(request=evaluate_requests(), method=st.sampled_from(["Evaluate", "GetEvaluation", "WatchEvaluation", "ListEvaluations"]), text=st.text(max_size=40), limit=small_or_any_int32)
        def fuzz(request, method, text, limit):
            code = _call_evaluator(stub, method, request, text, limit)
            seen[code.name] = seen.get(code.name, 0) + 1
            assert code not in FORBIDDEN, f"{method}({request}) -> {code}"

        fuzz()
    print("evaluator status codes:", seen)
    assert evaluator.process.running
    _assert_healthy(evaluator.address)
    assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0


@pytest.mark.parametrize("method", ["/ganworks.v1.Evaluator/Evaluate", "/ganworks.v1.Evaluator/GetEvaluation", "/ganworks.v1.Evaluator/WatchEvaluation", "/ganworks.v1.Evaluator/ListEvaluations"])
def test_evaluator_answers_malformed_bytes_with_a_deliberate_status(evaluator, method):
    _fuzz_with_malformed_bytes(evaluator.address, method, streaming=method.endswith("WatchEvaluation"))


TOKEN = "fuzz-token-0123456789"


@pytest.fixture(scope="module")
def evaluator_with_auth(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-evaluator-auth")
    token_file = root / "token"
    token_file.write_text(TOKEN)
    service = _start_evaluator(root, "--auth-token-file", str(token_file))
    yield service
    service.stop()


def test_an_evaluator_with_auth_refuses_every_call_without_the_token_and_answers_the_rest_deliberately(evaluator_with_auth):
    seen: dict[tuple[str, str], int] = {}
    with grpc.insecure_channel(evaluator_with_auth.address) as channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)

        @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(request=evaluate_requests(), method=st.sampled_from(["Evaluate", "GetEvaluation", "WatchEvaluation", "ListEvaluations"]),
               credential=st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), st.just(TOKEN), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)))
        def fuzz(request, method, credential):
            metadata = None if credential is None else [("authorization", credential)]
            code = _call_evaluator(stub, method, request, request.run, 0, metadata)
            authorized = credential == f"Bearer {TOKEN}"
            seen[(authorized, code.name)] = seen.get((authorized, code.name), 0) + 1
            assert code not in FORBIDDEN, f"{method}({request}) with {credential!r} -> {code}"
            assert (code == grpc.StatusCode.UNAUTHENTICATED) != authorized, f"{method} with {credential!r} -> {code}"

        fuzz()
    print("evaluator with auth, (authorized, status code):", seen)
    assert evaluator_with_auth.process.running
    _assert_healthy(evaluator_with_auth.address)
    assert seen.get((True, "OK"), 0) > 0 and seen.get((False, "UNAUTHENTICATED"), 0) > 0
