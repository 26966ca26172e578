"""Security: bearer-token auth (health stays open for probes) and TLS from certificate files."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from generator_service.client import GeneratorClient
from tests.generator.conftest import publish

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


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_server_answers_clients_that_trust_its_certificate_only(local_store, serve, tmp_path):
    publish(local_store, "r", 1)
    cert_file, key_file = _self_signed(tmp_path)
    server = serve(local_store, ["r"], tls_cert=str(cert_file), tls_key=str(key_file), auth_token=TOKEN)
    override = [("grpc.ssl_target_name_override", "localhost")]
    with GeneratorClient(server.address, token=TOKEN, root_certificates=cert_file.read_bytes(), options=override, retries=0) as client:
        assert client.generate("r", 1, seed=0).version == 1
    with GeneratorClient(server.address, token=TOKEN, retries=0, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as err:
        plaintext.generate("r", 1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
