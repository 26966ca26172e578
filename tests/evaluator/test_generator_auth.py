"""An evaluator reaches a generator that has bearer-token auth and TLS on, with the token and CA it is configured with."""

from __future__ import annotations

from evaluator_service.settings import ENV_PREFIX, EvaluatorSettings
from ganworks.api import evaluator_pb2 as pb
from ganworks.settings import describe, load_settings
from tests.evaluator.conftest import RUN, GeneratorProcess
from tests.tlscerts import self_signed_certificate

SUCCEEDED, FAILED = pb.EVALUATION_STATE_SUCCEEDED, pb.EVALUATION_STATE_FAILED
TOKEN = "evaluator-test-token"


def test_evaluations_sample_over_tls_with_the_token_and_fail_naming_the_setting_without_it(start_evaluator, store_url, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    (tmp_path / "token").write_text(TOKEN + "\n")
    generator = GeneratorProcess(store_url, [RUN], tmp_path / "generator.log", env={
        "GANWORKS_GENERATOR_AUTH_TOKEN_FILE": str(tmp_path / "token"), "GANWORKS_GENERATOR_TLS_CERT": str(cert), "GANWORKS_GENERATOR_TLS_KEY": str(key)})
    try:
        with_token = start_evaluator(generator=generator.address, generator_auth_token=TOKEN, generator_tls_ca=str(cert))
        accepted = with_token.evaluate(run=RUN, version=1, num_samples=150, metrics=["fid"])
        without_token = start_evaluator(generator=generator.address, generator_tls_ca=str(cert), generator_retry_seconds=1.0)
        refused = without_token.evaluate(run=RUN, version=1, num_samples=150, metrics=["fid"])
    finally:
        generator.stop()

    assert accepted.state == SUCCEEDED, accepted.error
    assert accepted.metrics["fid"] > 0
    assert refused.state == FAILED and "UNAUTHENTICATED" in refused.error and "GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN" in refused.error
    assert TOKEN not in refused.error


def test_the_generator_token_comes_from_a_mounted_file_and_never_shows_in_the_settings(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = {f"{ENV_PREFIX}GENERATOR_AUTH_TOKEN_FILE": str(tmp_path / "token"), f"{ENV_PREFIX}GENERATOR_TLS_CA": "/etc/ganworks/ca.crt"}

    settings = load_settings(EvaluatorSettings, env=env, prefix=ENV_PREFIX)

    assert settings.generator_auth_token == TOKEN and settings.generator_tls_ca == "/etc/ganworks/ca.crt"
    assert TOKEN not in repr(settings) and describe(settings)["generator_auth_token"] == "***"


def test_evaluator_serve_refuses_a_missing_ca_file_or_an_empty_token_file_naming_the_flag(tmp_path, capsys):
    from ganworks.cli import main

    (tmp_path / "empty-token").write_text("\n")
    common = ["evaluator", "serve", "--store", str(tmp_path / "store"), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1"]

    missing_ca = main([*common, "--generator-tls-ca", str(tmp_path / "missing.crt")])
    missing_ca_error = capsys.readouterr().err
    empty_token = main([*common, "--generator-auth-token-file", str(tmp_path / "empty-token")])
    empty_token_error = capsys.readouterr().err

    assert missing_ca == 2 and "--generator-tls-ca" in missing_ca_error and "GANWORKS_EVALUATOR_GENERATOR_TLS_CA" in missing_ca_error
    assert empty_token == 2 and "--generator-auth-token-file" in empty_token_error and "is empty" in empty_token_error
