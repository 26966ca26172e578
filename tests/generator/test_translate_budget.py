"""Translate budgets: a live `ganworks generator serve` process refuses a PNG bomb from its headers, before decoding,
and stops decoding when a call's deadline passes. CPU is read from the server's /proc entry, never timed by the test."""

from __future__ import annotations

import io
import os
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from ganworks.api import generator_pb2 as pb
from ganworks.api import generator_pb2_grpc
from generator_service.translate import StopWhen, decode_images
from tests.generator.conftest import start_server_process, stop_process
from tests.generator.test_translate import publish_pair

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has spent, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def settled_cpu(pid: int, deadline_s: float = 120) -> float:
    """The server's CPU once it stops spending it (two readings 1 s apart within 0.1 s), polled with a deadline."""
    end, last = time.monotonic() + deadline_s, cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - last < 0.1:
            return now
        last = now
    raise AssertionError(f"the server kept spending CPU for {deadline_s} s")


def blank_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@pytest.fixture
def cyclegan_server(local_store, monkeypatch):
    """A `ganworks generator serve` process serving the tiny cyclegan 'cg'; env overrides are set before calling it."""
    publish_pair(local_store)
    started = []

    def start(**env):
        for name, value in env.items():
            monkeypatch.setenv(f"GANWORKS_GENERATOR_{name.upper()}", str(value))
        process, port, _ = start_server_process(local_store.url, "cg", "--metrics-port", "0")
        started.append(process)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 2**20)])
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = generator_pb2_grpc.GeneratorStub(channel)
        _wait_serving(stub)
        return process, stub

    yield start
    for process in started:
        stop_process(process)


def _wait_serving(stub) -> None:
    end = time.monotonic() + 60
    while True:
        try:
            stub.DescribeModel(pb.DescribeModelRequest(model="cg"), timeout=10)
            return
        except grpc.RpcError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_a_15_mb_png_bomb_is_refused_from_its_headers_for_under_a_second_of_server_cpu(cyclegan_server):
    process, stub = cyclegan_server()
    bomb = blank_png(4096)  # 16.7 Mpx of zeros in about 16 KB
    request = pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=[bomb] * 960, resize=True)
    assert 14 * 2**20 < request.ByteSize() < 16 * 2**20
    before = settled_cpu(process.pid)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Translate(request, timeout=60)
    spent = settled_cpu(process.pid) - before
    print(f"server CPU for the refused bomb: {spent:.2f} s")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "translate_max_request_pixels" in caught.value.details() and "nothing was decoded" in caught.value.details()
    assert spent < 1.0, f"the server spent {spent:.2f} s of CPU on a refused request"


def test_one_image_above_the_pixel_or_byte_limit_is_refused_naming_the_setting(local_store, serve):
    publish_pair(local_store)
    server = serve(local_store, ["cg"], translate_max_image_pixels=32 * 32, translate_max_image_bytes=4096)
    with server.client() as client:
        for images, setting in (([blank_png(64)], "translate_max_image_pixels"), ([blank_png(16), bytes(5000)], "translate_max_image_bytes")):
            with pytest.raises(grpc.RpcError) as caught:
                client.call("Translate", pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=images, resize=True))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and setting in caught.value.details()
        answer = client.call("Translate", pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=[blank_png(32)], resize=True))
    assert len(answer.images) == 1  # within every limit: served


def test_decoding_stops_when_the_calls_deadline_passes(cyclegan_server):
    # A budget raised far enough to admit 300 images of 4096², each about 0.08 s of CPU to decode and resize (about 24 s in all).
    process, stub = cyclegan_server(translate_max_request_pixels=2**40)
    request = pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=[blank_png(4096)] * 300, resize=True)
    before = settled_cpu(process.pid)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Translate(request, timeout=1.0)
    spent = settled_cpu(process.pid) - before
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Decoding all 300 costs over 20 s of CPU; stopped at the deadline it costs about the deadline.
    print(f"server CPU after the deadline test: {spent:.2f} s")
    assert spent < 5.0, f"the server spent {spent:.2f} s of CPU decoding after the caller gave up"


def test_decode_images_stops_before_the_next_image_once_the_call_is_cancelled():
    request = pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=[blank_png(16)] * 3)
    stop = StopWhen(None)
    stop.cancelled.set()
    from generator_service.validation import RequestError

    with pytest.raises(RequestError) as caught:
        decode_images(request, 16, 1, "cg", stop)
    assert caught.value.code == grpc.StatusCode.CANCELLED
    assert decode_images(request, 16, 1, "cg", StopWhen(time.monotonic() + 60)).shape == (3, 1, 16, 16)
    assert np.isfinite(decode_images(request, 16, 1, "cg")).all()


def test_crafted_png_headers_get_a_deliberate_status_never_internal(local_store, serve):
    """Seeded mutations of a valid PNG's signature, IHDR fields (sides, bit depth, colour type, interlace) and CRC."""
    import random
    import struct
    import zlib

    publish_pair(local_store)
    server = serve(local_store, ["cg"])
    rng = random.Random(34)
    good = blank_png(16)
    crafted = []
    for _ in range(60):
        data = bytearray(good)
        field = rng.choice(["side", "depth", "colour", "interlace", "crc", "byte", "cut"])
        if field == "side":
            offset = 16 + 4 * rng.randrange(2)  # width or height
            data[offset : offset + 4] = struct.pack(">I", rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 4097, 65535]))
        elif field == "depth":
            data[24] = rng.choice([0, 3, 7, 16, 255])
        elif field == "colour":
            data[25] = rng.choice([1, 5, 7, 255])
        elif field == "interlace":
            data[28] = rng.choice([1, 2, 255])
        elif field == "byte":
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif field == "cut":
            data = data[: rng.randrange(8, len(data))]
        if field != "crc":  # keep the IHDR checksum right, so the decoder reads what was crafted
            data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF) if len(data) >= 33 else data[29:33]
        else:
            data[29] ^= 0xFF
        crafted.append(bytes(data))
    with server.client(retries=0) as client:
        for data in crafted:
            try:
                client.call("Translate", pb.TranslateRequest(model="cg", direction=pb.DIRECTION_A_TO_B, images=[data], resize=True))
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT,), f"{exc.code()}: {exc.details()[:300]} for {data[:33].hex()}"
