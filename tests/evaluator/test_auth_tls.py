"""The evaluator's security and shutdown: bearer token on every Evaluator call (health and reflection open),
TLS from certificate files, and a SIGTERM drain of `ganworks evaluator serve`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ganworks.api import evaluator_pb2 as pb
from ganworks.api import evaluator_pb2_grpc
from tests.evaluator.conftest import RUN
from tests.probes import health
from tests.tlscerts import self_signed_certificate

TOKEN = "evaluator-token-for-tests"


def _code(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def test_every_evaluator_call_needs_the_token_while_health_and_reflection_stay_open(start_evaluator):
    evaluator = start_evaluator(generator="127.0.0.1:9", auth_token=TOKEN)
    stub = evaluator.stub  # a channel that sends no token
    calls = {
        "Evaluate": lambda md: stub.Evaluate(pb.EvaluateRequest(run="no-such-run"), timeout=30, metadata=md),
        "GetEvaluation": lambda md: stub.GetEvaluation(pb.GetEvaluationRequest(id="x"), timeout=10, metadata=md),
        "WatchEvaluation": lambda md: stub.WatchEvaluation(pb.GetEvaluationRequest(id="x"), timeout=10, metadata=md),
        "ListEvaluations": lambda md: stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=10, metadata=md),
    }
    for name, call in calls.items():
        for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)]):
            assert _code(lambda: call(metadata)) == grpc.StatusCode.UNAUTHENTICATED, (name, metadata)
    authorized = [("authorization", f"Bearer {TOKEN}")]
    assert _code(lambda: calls["Evaluate"](authorized)) == grpc.StatusCode.NOT_FOUND  # through the check, to the servicer
    assert _code(lambda: calls["ListEvaluations"](authorized)) == grpc.StatusCode.OK
    assert health(evaluator.channel) == "SERVING"
    listing = reflection_pb2_grpc.ServerReflectionStub(evaluator.channel).ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    assert "ganworks.v1.Evaluator" in {s.name for s in next(listing).list_services_response.service}


def test_a_tls_evaluator_answers_clients_that_trust_its_certificate_and_refuses_plaintext(start_evaluator, tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)
    evaluator = start_evaluator(generator="127.0.0.1:9", tls_cert=str(cert_file), tls_key=str(key_file), auth_token=TOKEN)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_file.read_bytes())
    with grpc.secure_channel(evaluator.address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)
        assert stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")]).evaluations == []
    assert _code(lambda: evaluator.stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_ganworks_evaluate_reaches_a_tls_evaluator_with_its_token_file_and_ca_and_is_refused_without_the_token(start_evaluator, tmp_path, capsys, monkeypatch):
    from ganworks.cli import main

    cert_file, key_file = self_signed_certificate(tmp_path)
    evaluator = start_evaluator(generator="127.0.0.1:9", tls_cert=str(cert_file), tls_key=str(key_file), auth_token=TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("GANWORKS_EVALUATOR_AUTH_TOKEN", raising=False)
    secure = ["evaluate", "--address", evaluator.address, "--run", "no-such-run", "--tls-ca", str(cert_file)]

    assert main([*secure, "--auth-token-file", str(token_file)]) == 1
    assert "answered NOT_FOUND: unknown run 'no-such-run'" in capsys.readouterr().err  # through TLS and the token check, to the servicer
    assert main(secure) == 1
    assert "answered UNAUTHENTICATED" in capsys.readouterr().err


def test_the_token_never_reaches_the_log(start_evaluator, caplog):
    with caplog.at_level("DEBUG"):
        start_evaluator(generator="127.0.0.1:9", auth_token=TOKEN)
    assert TOKEN not in caplog.text and "auth on" in caplog.text


@pytest.mark.slow
def test_sigterm_drains_the_evaluator_refusing_new_calls_finishing_the_watched_job_and_exits_cleanly(store_url, generator, tmp_path):
    from ganworks.testing.faultproxy import FaultProxy
    from orchestration.processes import free_port

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    # The generator's address answers only after the SIGTERM: the job is surely in flight when the drain begins.
    generator_port = free_port()
    cmd = [sys.executable, "-m", "ganworks.cli", "--log-level", "WARNING", "evaluator", "serve", "--store", store_url, "--host", "127.0.0.1", "--port", "0",
           "--metrics-port", "-1", "--generator", f"127.0.0.1:{generator_port}", "--auth-token-file", str(token_file), "--grace-seconds", "120"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANWORKS_EVALUATOR_GENERATOR_RETRY_SECONDS": "120"}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    proxy = None
    try:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", process.stdout.readline())
        assert match, "`ganworks evaluator serve` did not start"
        with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
            stub = evaluator_pb2_grpc.EvaluatorStub(channel)
            authorized = [("authorization", f"Bearer {TOKEN}")]
            job = stub.Evaluate(pb.EvaluateRequest(run=RUN, num_samples=50, metrics=["fid"]), timeout=60, metadata=authorized)
            watch = stub.WatchEvaluation(pb.GetEvaluationRequest(id=job.id), timeout=120, metadata=authorized)
            assert next(watch).id == job.id  # a watch is in flight when the signal comes
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while health(channel) == "SERVING":
                assert time.monotonic() < deadline, "health still SERVING after SIGTERM"
                time.sleep(0.1)
            assert _code(lambda: stub.ListEvaluations(pb.ListEvaluationsRequest(), timeout=5, metadata=authorized)) == grpc.StatusCode.UNAVAILABLE
            proxy = FaultProxy("127.0.0.1", int(generator.address.rsplit(":", 1)[1]), port=generator_port)
            rest = list(watch)  # the watch goes on through the drain, to the job's end
        assert rest and rest[-1].state == pb.EVALUATION_STATE_SUCCEEDED and "fid" in rest[-1].metrics, rest[-1:]
        assert process.wait(60) == 0
    finally:
        if proxy is not None:
            proxy.close()
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
