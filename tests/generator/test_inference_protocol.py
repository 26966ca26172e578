"""The Open Inference Protocol v2 (KServe / Triton gRPC) on the generator's port: tritonclient works unchanged.

tritonclient's own inference.* protos and ganworks' cannot share one process (the protobuf runtime refuses
two files defining the same message names), so tritonclient runs in a child process, as a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import grpc
import numpy as np
import pytest

from ganworks.api import inference_pb2 as oip
from ganworks.api import inference_pb2_grpc as oip_grpc
from tests.generator.conftest import CONDITIONAL, publish

DESCRIBE_PROTO = """
import json, sys
def messages(descriptors, out):
    for m in descriptors:
        out[m.full_name] = sorted([f.name, f.number, f.type, f.message_type.full_name if f.message_type else ""] for f in m.fields)
        messages(m.nested_types, out)
    return out
from tritonclient.grpc import service_pb2 as p
service = p.DESCRIPTOR.services_by_name["GRPCInferenceService"]
print(json.dumps({"messages": messages(p.DESCRIPTOR.message_types_by_name.values(), {}),
                  "methods": {m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods}}))
"""


def _tritonclient(address: str, body: str, tmp_path) -> dict:
    """Runs `body` in a child process with `client` (a tritonclient.grpc client of address); returns its `result` dict."""
    script = "import json, sys\nimport numpy as np\nimport tritonclient.grpc as tc\nfrom tritonclient.utils import InferenceServerException\n"
    script += f"client = tc.InferenceServerClient({address!r})\nresult = {{}}\n" + textwrap.dedent(body)
    script += f"\nnp.savez({str(tmp_path / 'arrays.npz')!r}, **{{k: v for k, v in result.items() if isinstance(v, np.ndarray)}})"
    script += "\nprint(json.dumps({k: v for k, v in result.items() if not isinstance(v, np.ndarray)}))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(tmp_path / "arrays.npz", allow_pickle=False) as arrays:
        result.update({k: arrays[k] for k in arrays.files})
    return result


def _infer(server, request: oip.ModelInferRequest, **kwargs) -> oip.ModelInferResponse:
    with grpc.insecure_channel(server.address) as channel:
        return oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30, **kwargs)


def _seed_request(seeds, datatype="UINT64", raw=True, model="r", **fields) -> oip.ModelInferRequest:
    tensor = oip.ModelInferRequest.InferInputTensor(name="seed", datatype=datatype, shape=[len(seeds)])
    request = oip.ModelInferRequest(model_name=model, inputs=[tensor], **fields)
    dtype = "<u8" if datatype == "UINT64" else "<i8"
    if raw:
        request.raw_input_contents.append(np.asarray(seeds, dtype=dtype).tobytes())
    elif datatype == "UINT64":
        request.inputs[0].contents.uint64_contents.extend(seeds)
    else:
        request.inputs[0].contents.int64_contents.extend(seeds)
    return request


def _pixels(response: oip.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], dtype=np.uint8).reshape(response.outputs[0].shape)


def test_the_inference_proto_is_wire_compatible_with_tritonclients_own():
    done = subprocess.run([sys.executable, "-c", DESCRIBE_PROTO], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    ours = {}
    for name, descriptor in oip.DESCRIPTOR.message_types_by_name.items():
        stack = [descriptor]
        while stack:
            m = stack.pop()
            ours[m.full_name] = sorted([f.name, f.number, f.type, f.message_type.full_name if f.message_type else ""] for f in m.fields)
            stack.extend(m.nested_types)
    service = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {name: theirs["messages"].get(name) for name in ours} == ours
    assert {m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods} == {m.name: theirs["methods"][m.name] for m in service.methods}


def test_tritonclient_model_infer_gives_the_same_pixels_as_generate_for_the_same_seed_and_version(local_store, serve, tmp_path):
    publish(local_store, "r", 7)
    server = serve(local_store, ["r"])
    seeds = [3, 11, 2**63 + 5]
    result = _tritonclient(server.address, f"""
        seeds = tc.InferInput("seed", [3], "UINT64")
        seeds.set_data_from_numpy(np.array({seeds}, dtype=np.uint64))
        answer = client.infer("r", [seeds], model_version="7", outputs=[tc.InferRequestedOutput("images")])
        result["images"] = answer.as_numpy("images")
        result["version"] = answer.get_response().model_version
        result["live"], result["ready"] = client.is_server_live(), client.is_server_ready()
        result["model_ready"] = client.is_model_ready("r")
    """, tmp_path)
    with server.client() as client:
        expected = np.concatenate([client.generate("r", 1, seed=s, version=7, output="uint8").images for s in seeds])
    assert result["version"] == "7"
    assert result["images"].dtype == np.uint8 and result["images"].shape == (3, 16, 16, 1)
    assert np.array_equal(result["images"], expected)
    assert result["live"] and result["ready"] and result["model_ready"]


def test_tritonclient_model_metadata_describes_inputs_and_outputs(local_store, serve, tmp_path):
    publish(local_store, "c", 3, params=CONDITIONAL)
    server = serve(local_store, ["c"])
    result = _tritonclient(server.address, """
        meta = client.get_model_metadata("c", as_json=True)
        result["meta"] = meta
        result["server"] = client.get_server_metadata(as_json=True)
    """, tmp_path)
    meta = result["meta"]
    assert meta["name"] == "c" and meta["versions"] == ["3"] and meta["platform"] == "ganworks_dcgan"
    assert meta["inputs"] == [
        {"name": "seed", "datatype": "UINT64", "shape": ["-1"]},
        {"name": "latents", "datatype": "FP32", "shape": ["-1", "16"]},
        {"name": "class_labels", "datatype": "INT64", "shape": ["-1"]},
    ]
    assert meta["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": ["-1", "16", "16", "1"]}]
    assert result["server"]["name"] == "ganworks"


def test_tritonclient_sees_invalid_argument_naming_the_expected_dtype(local_store, serve, tmp_path):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    result = _tritonclient(server.address, """
        seeds = tc.InferInput("seed", [2], "FP32")
        seeds.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        try:
            client.infer("r", [seeds])
        except InferenceServerException as exc:
            result["status"], result["message"] = exc.status(), exc.message()
    """, tmp_path)
    assert result["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "input 'seed' must be UINT64 or INT64, got FP32" in result["message"]


def test_typed_int64_seeds_give_the_same_images_as_raw_uint64_seeds(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    raw = _infer(server, _seed_request([5, 6]))
    typed = _infer(server, _seed_request([5, 6], datatype="INT64", raw=False))
    assert np.array_equal(_pixels(raw), _pixels(typed))
    assert raw.model_version == "1"


def test_typed_output_contents_when_the_requested_output_is_not_binary(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    request = _seed_request([8, 9])
    request.outputs.add(name="images").parameters["binary_data"].bool_param = False
    typed = _infer(server, request)
    raw = _infer(server, _seed_request([8, 9]))
    assert not typed.raw_output_contents
    assert np.array_equal(np.asarray(typed.outputs[0].contents.uint_contents, np.uint8).reshape(typed.outputs[0].shape), _pixels(raw))


def test_latents_and_class_labels_give_what_generate_gives_for_them(local_store, serve):
    publish(local_store, "c", 2, params=CONDITIONAL)
    server = serve(local_store, ["c"])
    latents = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    labels = np.array([1, 4, 9], dtype=np.int32)
    request = oip.ModelInferRequest(
        model_name="c",
        inputs=[
            oip.ModelInferRequest.InferInputTensor(name="latents", datatype="FP32", shape=[3, 16]),
            oip.ModelInferRequest.InferInputTensor(name="class_labels", datatype="INT32", shape=[3]),
        ],
        raw_input_contents=[latents.tobytes(), labels.tobytes()],
    )
    request.parameters["truncation"].double_param = 0.5
    response = _infer(server, request)
    with server.client() as client:
        expected = client.generate("c", 3, latents=latents, labels=labels.tolist(), truncation=0.5, output="uint8")
    assert np.array_equal(_pixels(response), expected.images)


BAD_TENSORS = [
    ("an unknown input", lambda r: setattr(r.inputs[0], "name", "noise"), "input 'noise' is unknown; this model takes seed (UINT64 or INT64, [N]) or latents"),
    ("a wrong dtype", lambda r: setattr(r.inputs[0], "datatype", "INT32"), "input 'seed' must be UINT64 or INT64, got INT32"),
    ("a wrong rank", lambda r: r.inputs[0].shape.append(1), "input 'seed' must have shape [N], got [2, 1]"),
    ("a short raw buffer", lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 8), "raw contents of input 'seed' have 8 bytes; UINT64 [2] needs 16"),
    ("a wrong latent size", None, "input 'latents' must be FP32 [N, 16] for model 'r' (version 1), got [2, 8]"),
    ("no seed and no latents", lambda r: r.ClearField("inputs") or r.ClearField("raw_input_contents"), "give exactly one of the inputs seed and latents"),
    ("an unknown output", lambda r: r.outputs.add(name="pixels"), "output 'pixels' is unknown; this model has one output, 'images'"),
    ("a truncation out of range", lambda r: setattr(r.parameters["truncation"], "double_param", 1.5), "truncation must be in (0, 1]"),
    ("a non-numeric version", lambda r: setattr(r, "model_version", "latest"), "model_version must be empty (the routed default) or a published step number"),
]


def test_bad_tensors_get_invalid_argument_saying_what_was_expected(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"])
    for what, spoil, expected in BAD_TENSORS:
        if spoil is None:
            request = oip.ModelInferRequest(model_name="r", inputs=[oip.ModelInferRequest.InferInputTensor(name="latents", datatype="FP32", shape=[2, 8])])
            request.raw_input_contents.append(np.zeros((2, 8), np.float32).tobytes())
        else:
            request = _seed_request([1, 2])
            spoil(request)
        with pytest.raises(grpc.RpcError) as err:
            _infer(server, request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert expected in err.value.details(), (what, err.value.details())
    assert server.metric("ganworks_generator_requests_total", code="INVALID_ARGUMENT", method="ModelInfer") == len(BAD_TENSORS)


def test_model_infer_needs_the_token_like_generate_and_is_counted(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], auth_token="s3cret-token")
    with pytest.raises(grpc.RpcError) as err:
        _infer(server, _seed_request([1]))
    answer = _infer(server, _seed_request([1]), metadata=[("authorization", "Bearer s3cret-token")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _pixels(answer).shape == (1, 16, 16, 1)
    assert server.metric("ganworks_generator_requests_total", code="OK", method="ModelInfer") == 1
    assert server.metric("ganworks_generator_samples_total", model="r") == 1
