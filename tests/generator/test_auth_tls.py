"""Security: bearer-token auth (health stays open for probes) and TLS from certificate files."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ganworks.generator_client import AsyncGeneratorClient, GeneratorClient
from tests.generator.conftest import publish
from tests.tlscerts import self_signed_certificate

TOKEN = "s3cret-token-for-tests"


def test_calls_without_or_with_a_wrong_token_are_unauthenticated(local_store, serve):
    publish(local_store, "r", 1)
    server = serve(local_store, ["r"], auth_token=TOKEN)
    for token, words in ((None, "needs a token"), ("wrong", "missing or wrong token")):
        with server.client(token=token, retries=0) as client, pytest.raises(grpc.RpcError) as err:
            client.generate("r", 1)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert words in err.value.details() and "authorization: Bearer" in err.value.details()
    with server.client(token=TOKEN, retries=0) as client:
        assert client.generate("r", 2, seed=1).images.shape[0] == 2
    with server.client(retries=0) as client, pytest.raises(grpc.RpcError) as err:
        client.generate_stream("r", 2)  # the streaming method is guarded too
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.health() == "SERVING"  # probes need no token
    assert server.metric("ganworks_generator_requests_total", code="UNAUTHENTICATED", method="Generate") == 2


def test_tls_server_answers_clients_that_trust_its_certificate_only(local_store, serve, tmp_path):
    publish(local_store, "r", 1)
    cert_file, key_file = self_signed_certificate(tmp_path)
    server = serve(local_store, ["r"], tls_cert=str(cert_file), tls_key=str(key_file), auth_token=TOKEN)
    override = [("grpc.ssl_target_name_override", "localhost")]
    with GeneratorClient(server.address, token=TOKEN, root_certificates=cert_file.read_bytes(), options=override, retries=0) as client:
        assert client.generate("r", 1, seed=0).version == 1
    with GeneratorClient(server.address, token=TOKEN, retries=0, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as err:
        plaintext.generate("r", 1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_asyncio_client_sends_the_token_over_tls_like_the_blocking_one(local_store, serve, tmp_path):
    publish(local_store, "r", 1)
    cert_file, key_file = self_signed_certificate(tmp_path)
    server = serve(local_store, ["r"], tls_cert=str(cert_file), tls_key=str(key_file), auth_token=TOKEN)

    async def calls():
        async with AsyncGeneratorClient(server.address, token=TOKEN, root_certificates=cert_file.read_bytes(), retries=0) as client:
            batch = await client.generate("r", 2, seed=1)
        async with AsyncGeneratorClient(server.address, root_certificates=cert_file.read_bytes(), retries=0) as client:
            try:
                await client.generate("r", 1)
            except grpc.RpcError as exc:
                return batch, exc.code()
        return batch, None

    batch, refused = asyncio.run(calls())

    assert batch.images.shape[0] == 2 and batch.version == 1
    assert refused == grpc.StatusCode.UNAUTHENTICATED
