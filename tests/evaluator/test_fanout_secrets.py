"""The evaluator's Ray fan-out never carries the generator token in task arguments: each worker reads its own."""

from __future__ import annotations

import cloudpickle
import pytest

from evaluator_service.errors import EvaluationError
from evaluator_service.fanout import TOKEN_ENV, extract_shard, shard_arguments, token_here
from evaluator_service.sampler import GeneratorTarget

TOKEN = "generator-token-5b1e0c"


def test_the_task_arguments_ray_serialises_hold_no_token_but_say_a_worker_needs_one():
    target = GeneratorTarget("127.0.0.1:1", auth_token=TOKEN, root_certificates=b"-----BEGIN CERTIFICATE-----")
    calls = shard_arguments(target, "r", 1, 0, [0, 2, 4], 256, 1000, {"id": "x"}, "legacy-pytorch", 64, 1)

    assert len(calls) == 2 and all(call[1] is True for call in calls)  # the worker must find a token of its own
    serialised = cloudpickle.dumps(calls)  # what ray.remote(...).remote(*args) puts in the object store
    assert TOKEN.encode() not in serialised
    assert calls[0][0].address == "127.0.0.1:1" and calls[0][0].root_certificates == target.root_certificates


def test_a_worker_reads_the_token_from_its_environment_or_file_and_refuses_to_run_without_one(monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV + "_FILE", raising=False)
    assert token_here() == ""
    with pytest.raises(EvaluationError, match=TOKEN_ENV):
        extract_shard(GeneratorTarget("127.0.0.1:1"), True, "r", 1, 0, range(0, 1), 256, 10, {}, "legacy-pytorch", 64, 1)

    secret_file = tmp_path / "token"
    secret_file.write_text(TOKEN + "\n")
    monkeypatch.setenv(TOKEN_ENV + "_FILE", str(secret_file))
    assert token_here() == TOKEN
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert token_here() == "from-env"
