"""Translate: a published cyclegan snapshot served through a real gRPC server; PNG or raw images in, translated images out."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from ganworks.api import generator_pb2 as pb
from ganworks.checkpoint import publish_snapshot
from ganworks.images import encode_png, to_uint8
from ganworks.models import get_family
from tests.generator.conftest import publish

PARAMS = {"image_size": 16, "channels": 1, "width": 4, "blocks": 1, "d_width": 4, "d_layers": 2, "domain_a": "sneakers", "domain_b": "boots"}


def publish_pair(store, run: str = "cg", step: int = 1):
    family = get_family("cyclegan")
    params = family.validate(PARAMS)
    torch.manual_seed(3)
    pair = family.build_generator(params)
    publish_snapshot(store, run=run, step=step, generator_state=pair.state_dict(), architecture="cyclegan", architecture_params=params, dataset_id="pair-test")
    return family, pair.eval()


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def test_an_image_translates_the_same_alone_and_in_any_batch_and_as_the_model_does_offline(local_store, serve):
    family, pair = publish_pair(local_store)
    server = serve(local_store, ["cg"], max_batch_size=8, max_queue_delay_ms=30)
    images = _pixels(6)
    with server.client() as client:
        alone = client.translate("cg", images[:1], "a_to_b").images
        with ThreadPoolExecutor(5) as pool:  # calls that share batches with other images and the other direction
            mixed = [pool.submit(client.translate, "cg", images[: 1 + k], "a_to_b") for k in range(5)]
            backwards = pool.submit(client.translate, "cg", images, "b_to_a")
            results = [f.result().images for f in mixed]
            backwards = backwards.result().images
        as_png = client.translate("cg", [encode_png(images[0])], "a_to_b").images
    for result in results:
        assert np.array_equal(result[0], alone[0])
    offline = client_free_translate(family, pair, images[:5], "a_to_b")  # another batch shape: float sums may round one step apart
    assert np.abs(results[-1].astype(int) - offline).max() <= 1
    assert np.array_equal(as_png, alone)
    assert alone.shape == (1, 16, 16, 1) and alone.dtype == np.uint8
    assert not np.array_equal(backwards[0], alone[0])  # the other generator


def client_free_translate(family, pair, pixels: np.ndarray, direction: str) -> np.ndarray:
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.inference_mode():
        return to_uint8(family.translate(pair, x, direction))


def _png(size: tuple[int, int], mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "I;16") else (128,) * len(mode)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("images, extra, message", [
    ([_png((28, 28), "L")], {}, "image 0 is 28×28×1 (height×width×channels); model 'cg' takes 16×16×1: send images of that size, or set resize"),
    ([_png((16, 16), "L"), _png((16, 16), "RGB")], {}, "image 1 is 16×16×3"),
    ([_png((16, 16), "RGBA")], {}, "image 0 is a 'RGBA' PNG"),
    ([b"not a png"], {}, "image 0 is not a readable PNG file"),
    ([_png((16, 16), "L")[:45]], {}, "image 0 is not a readable PNG file"),  # cut inside its pixel data
    ([bytes(10)], {"input_format": pb.OUTPUT_FORMAT_UINT8, "shape": [16, 16, 1]}, "image 0 has 10 bytes; shape [16, 16, 1] needs 256"),
    ([_png((16, 16), "L")], {"direction": pb.DIRECTION_UNSPECIFIED}, "direction must be DIRECTION_A_TO_B (1) or DIRECTION_B_TO_A (2)"),
    ([], {}, "give between 1 and"),
])
def test_bad_images_and_requests_are_invalid_argument_with_a_message_that_says_what_to_change(local_store, serve, images, extra, message):
    publish_pair(local_store)
    server = serve(local_store, ["cg"])
    request = pb.TranslateRequest(model="cg", images=images, **{"direction": pb.DIRECTION_A_TO_B, **extra})
    with server.client() as client, pytest.raises(grpc.RpcError) as caught:
        client.call("Translate", request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_resize_converts_a_wrong_size_rgb_png_and_the_answer_has_the_models_size(local_store, serve):
    publish_pair(local_store)
    server = serve(local_store, ["cg"])
    with server.client() as client:
        result = client.translate("cg", [_png((40, 30), "RGB")], "b_to_a", resize=True)
    assert result.images.shape == (1, 16, 16, 1)


def test_translate_on_a_noise_model_and_generate_on_a_translation_model_are_failed_precondition(local_store, serve):
    publish_pair(local_store)
    publish(local_store, "noise", 1)
    server = serve(local_store, ["cg", "noise"])
    with server.client() as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.translate("noise", _pixels(1), "a_to_b")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "call Generate" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            client.generate("cg", 1, seed=1)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "call Translate" in caught.value.details()


def test_ganworks_translate_writes_the_translated_png_and_names_a_refusal(local_store, serve, tmp_path, capsys):
    from ganworks.cli import main
    from ganworks.images import decode_png

    family, pair = publish_pair(local_store)
    server = serve(local_store, ["cg"])
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    source.write_bytes(encode_png(_pixels(1)[0]))
    assert main(["translate", "--address", server.address, "--run", "cg", "--direction", "a_to_b", str(source), "--out", str(out)]) == 0
    assert np.abs(decode_png(out.read_bytes()).astype(int) - client_free_translate(family, pair, _pixels(1), "a_to_b")[0]).max() <= 1
    assert "translated" in capsys.readouterr().out
    big = tmp_path / "big.png"
    big.write_bytes(_png((28, 28), "L"))
    assert main(["translate", "--address", server.address, "--run", "cg", "--direction", "b_to_a", str(big), "--out", str(tmp_path / "x.png")]) == 2
    assert "INVALID_ARGUMENT: image 0 is 28×28×1" in capsys.readouterr().err


def test_the_inference_protocol_translates_an_images_input_as_translate_does_and_needs_a_direction(local_store, serve):
    from ganworks.api import inference_pb2 as oip
    from ganworks.api import inference_pb2_grpc as oip_grpc

    publish_pair(local_store)
    server = serve(local_store, ["cg"])
    images = _pixels(3, seed=5)
    request = oip.ModelInferRequest(model_name="cg", raw_input_contents=[images.tobytes()])
    request.inputs.add(name="images", datatype="UINT8", shape=list(images.shape))
    with server.client() as client:
        expected = client.translate("cg", images, "b_to_a").images
    with grpc.insecure_channel(server.address) as channel:
        infer = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        with pytest.raises(grpc.RpcError) as caught:
            infer(request, timeout=30)
        request.parameters["direction"].string_param = "b_to_a"
        response = infer(request, timeout=30)
        metadata = oip_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(oip.ModelMetadataRequest(name="cg"), timeout=30)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("images", "UINT8", [-1, 16, 16, 1])]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "set the string parameter direction to a_to_b or b_to_a" in caught.value.details()
    assert list(response.outputs[0].shape) == [3, 16, 16, 1]
    assert np.array_equal(np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(3, 16, 16, 1), expected)
