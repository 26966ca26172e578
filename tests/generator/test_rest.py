"""The Open Inference Protocol over HTTP/REST (KServe v2 + Triton's binary tensor extension): tritonclient.http and curl
work against it unchanged, give Generate's pixels, and bad requests get a 4xx with a message, never a 5xx."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from tests.generator.conftest import CONDITIONAL, publish

TOKEN = "rest-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def rest(local_store, serve):
    publish(local_store, "c", 4, params=CONDITIONAL)
    server = serve(local_store, ["c"], rest_port=0, auth_token=TOKEN)
    server.rest_url = f"127.0.0.1:{server.server.rest_port}"
    return server


def _generate(server, seeds, **kwargs) -> np.ndarray:
    with server.client(token=TOKEN) as client:
        return np.concatenate([client.generate("c", 1, seed=s, output="uint8", **kwargs).images for s in seeds])


def _curl(*args: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    """curl's status, response headers (lower-case names) and body."""
    done = subprocess.run(["curl", "-sS", "-D", "-", *args], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_tritonclient_http_gives_generates_pixels_with_binary_and_with_json_tensors(rest):
    seeds = np.array([3, 11, 2**63 + 5], dtype=np.uint64)
    client = th.InferenceServerClient(rest.rest_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("c", headers=dict(AUTH)) and client.is_model_ready("c", "4", headers=dict(AUTH))
        meta = client.get_model_metadata("c", headers=dict(AUTH))
        answers = {}
        for binary in (True, False):
            tensor = th.InferInput("seed", [3], "UINT64")
            tensor.set_data_from_numpy(seeds, binary_data=binary)
            result = client.infer("c", [tensor], model_version="4", outputs=[th.InferRequestedOutput("images", binary_data=binary)], headers=dict(AUTH))
            answers[binary] = result.as_numpy("images")
    finally:
        client.close()
    expected = _generate(rest, [int(s) for s in seeds], version=4)
    assert meta["versions"] == ["4"] and meta["inputs"][0] == {"name": "seed", "datatype": "UINT64", "shape": [-1]}
    assert meta["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 16, 16, 1]}]
    assert answers[True].dtype == np.uint8 and np.array_equal(answers[True], expected)
    assert np.array_equal(answers[False], expected)
    assert rest.metric("ganworks_generator_requests_total", code="OK", method="ModelInfer") == 2


def test_curl_health_metadata_and_json_and_binary_infer_give_generates_pixels(rest, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    base, auth = f"http://{rest.rest_url}", ["-H", f"Authorization: Bearer {TOKEN}"]
    assert _curl(f"{base}/v2/health/live")[0] == 200 and _curl(f"{base}/v2/health/ready")[0] == 200
    status, _, body = _curl(f"{base}/v2/models/c", *auth)
    assert status == 200 and json.loads(body)["platform"] == "ganworks_dcgan"
    latents = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    request = {"inputs": [{"name": "latents", "datatype": "FP32", "shape": [2, 16], "data": latents.tolist()},
                          {"name": "class_labels", "datatype": "INT64", "shape": [2], "data": [3, 7]}],
               "parameters": {"truncation": 0.7}, "outputs": [{"name": "images", "parameters": {"binary_data": False}}]}
    status, _, body = _curl("-X", "POST", f"{base}/v2/models/c/versions/4/infer", *auth, "-H", "Content-Type: application/json", "--data-binary", "@-",
                            data=json.dumps(request).encode())
    answer = json.loads(body)
    json_pixels = np.asarray(answer["outputs"][0]["data"], dtype=np.uint8).reshape(answer["outputs"][0]["shape"])
    head = json.dumps({"inputs": [{"name": "latents", "datatype": "FP32", "shape": [2, 16], "parameters": {"binary_data_size": latents.nbytes}},
                                  {"name": "class_labels", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}],
                       "parameters": {"truncation": 0.7}, "outputs": [{"name": "images", "parameters": {"binary_data": True}}]}).encode()
    status_b, headers, body = _curl("-X", "POST", f"{base}/v2/models/c/infer", *auth, "-H", f"Inference-Header-Content-Length: {len(head)}",
                                    "-H", "Content-Type: application/octet-stream", "--data-binary", "@-",
                                    data=head + latents.tobytes() + np.array([3, 7], "<i8").tobytes())
    split = int(headers["inference-header-content-length"])
    output = json.loads(body[:split])["outputs"][0]
    binary_pixels = np.frombuffer(body[split:], np.uint8).reshape(output["shape"])
    with rest.client(token=TOKEN) as client:
        expected = client.generate("c", 2, latents=latents, labels=[3, 7], truncation=0.7, output="uint8").images
    assert (status, answer["model_version"], status_b, output["parameters"]["binary_data_size"]) == (200, "4", 200, 2 * 16 * 16)
    assert np.array_equal(json_pixels, expected) and np.array_equal(binary_pixels, expected)


def _post(rest, body: bytes, headers: dict | None = None, path: str = "/v2/models/c/infer") -> tuple[int, str]:
    import http.client

    connection = http.client.HTTPConnection(rest.rest_url.split(":")[0], int(rest.rest_url.split(":")[1]), timeout=30)
    try:
        connection.request("POST", path, body=body, headers={**AUTH, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _seed_json(shape, data, datatype="UINT64") -> bytes:
    return json.dumps({"inputs": [{"name": "seed", "datatype": datatype, "shape": shape, "data": data}]}).encode()


REFUSED = [
    ("no token", dict(body=_seed_json([1], [1]), headers={"Authorization": ""}), 401, "this server needs a token"),
    ("a wrong token", dict(body=_seed_json([1], [1]), headers={"Authorization": "Bearer nope"}), 401, "missing or wrong token"),
    ("a shape that does not match the data", dict(body=_seed_json([2], [1])), 400, "input 'seed' has 1 values; UINT64 [2] needs 2"),
    ("a seed of shape [0]", dict(body=_seed_json([0], [])), 400, "input 'seed' has N = 0"),
    ("a rank-2 seed", dict(body=_seed_json([1, 1], [[1]])), 400, "input 'seed' must have shape [N], got [1, 1]"),
    ("a negative dimension", dict(body=_seed_json([-1], [1])), 400, "needs 'shape', a list of integers"),
    ("a class label beyond INT32", dict(body=json.dumps({"inputs": [{"name": "seed", "datatype": "UINT64", "shape": [1], "data": [1]},
                                                              {"name": "class_labels", "datatype": "INT32", "shape": [1], "data": [2**40]}]}).encode()), 400, "outside INT32's range"),
    ("text for a seed", dict(body=_seed_json([1], ["x"])), 400, "must be a (nested) list of integers"),
    ("not JSON", dict(body=b"{nope"), 400, "the request is not valid JSON"),
    ("a JSON list", dict(body=b"[1, 2]"), 400, "must be a JSON object"),
    ("a 19-digit version", dict(body=_seed_json([1], [1]), path="/v2/models/c/versions/9999999999999999999/infer"), 400, "up to 18 digits"),
    ("an unknown model", dict(body=_seed_json([1], [1]), path="/v2/models/" + "m" * 5000 + "/infer"), 404, "is not served here"),
    ("a binary size beyond the body", dict(body=b'{"inputs": [{"name": "seed", "datatype": "UINT64", "shape": [1], "parameters": {"binary_data_size": 8}}]}',
                                            headers={"Inference-Header-Content-Length": "200"}), 400, "Inference-Header-Content-Length must be"),
    ("a body above 16 MiB", dict(body=b" " * (16 * 2**20 + 1)), 413, "above this server's limit of 16777216"),
    ("a timeout of 0", dict(body=json.dumps({"inputs": json.loads(_seed_json([1], [1]))["inputs"], "parameters": {"timeout": 0}}).encode()), 400,
     "parameter timeout must be a whole number of microseconds"),
    ("a timeout as text", dict(body=json.dumps({"inputs": json.loads(_seed_json([1], [1]))["inputs"], "parameters": {"timeout": "1s"}}).encode()), 400,
     "parameter timeout must be a whole number of microseconds"),
]


def test_rest_refuses_bad_requests_with_a_4xx_and_a_message_never_a_5xx(rest):
    for what, request, status, message in REFUSED:
        got, text = _post(rest, **request)
        assert got == status and message in text, (what, got, text[:300])
        assert len(text) < 600, (what, len(text))
    assert rest.metric("ganworks_generator_requests_total", code="INTERNAL", method="ModelInfer") == 0


def test_a_call_whose_timeout_passes_gets_504_and_one_with_time_enough_its_images(rest):
    """Triton's request parameter timeout (microseconds) bounds a REST call, which has no transport deadline."""
    body = lambda timeout: json.dumps({"inputs": json.loads(_seed_json([2], [1, 2]))["inputs"], "parameters": {"timeout": timeout}}).encode()  # noqa: E731
    status, text = _post(rest, body(1))
    assert status == 504 and "timeout of 1 microseconds passed before its samples were ready" in text, (status, text[:300])
    status, text = _post(rest, body(60_000_000))
    assert status == 200 and json.loads(text)["outputs"][0]["shape"][0] == 2, (status, text[:300])


def test_a_chunked_body_above_the_limit_is_refused_with_413(rest):
    import http.client

    host, port = rest.rest_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunk = b" " * 2**20
    try:
        connection.request("POST", "/v2/models/c/infer", body=(chunk for _ in range(17)), headers=AUTH, encode_chunked=True)
        response = connection.getresponse()
        status, text = response.status, response.read().decode()
    except (BrokenPipeError, ConnectionResetError):  # the server may close before the client has sent it all
        status, text = 413, "above this server's limit (connection closed while sending)"
    finally:
        connection.close()
    assert status == 413 and "above this server's limit" in text, (status, text[:200])
    assert rest.metric("ganworks_generator_requests_total", code="INTERNAL", method="ModelInfer") == 0


def test_tritonclient_http_sees_the_refusal_message(rest):
    client = th.InferenceServerClient(rest.rest_url)
    try:
        tensor = th.InferInput("seed", [2], "FP32")
        tensor.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("c", [tensor], headers=dict(AUTH))
    finally:
        client.close()
    assert "input 'seed' must be UINT64 or INT64, got FP32" in caught.value.message()


def test_the_metrics_port_answers_metrics_only(rest):
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{rest.server.metrics_port}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as page:
        assert page.status == 200 and b"ganworks_generator_requests_total" in page.read()
    for path in ("/", "/v2/health/live", "/metricsx", "/metrics/../x"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}{path}", timeout=10)
        assert caught.value.code == 404, path
