"""A live evaluator meets a store with a link out of it and requests with huge values: it refuses them without
quoting the linked file or more than a short prefix of the value."""

from __future__ import annotations

import pathlib

import grpc
import pytest

from ganworks.api import evaluator_pb2 as pb
from tests.evaluator.conftest import write_run_json

SECRET = "db_password=hunter2-7f3a9c"


def test_a_latest_linked_to_a_file_outside_the_store_is_refused_without_its_content(evaluator, shared_store, tmp_path):
    outside = tmp_path / "app.env"
    outside.write_text(SECRET + "\n")
    write_run_json(shared_store, "evil")
    (pathlib.Path(shared_store.root) / "runs" / "evil" / "LATEST").symlink_to(outside)

    with pytest.raises(grpc.RpcError) as caught:
        evaluator.stub.Evaluate(pb.EvaluateRequest(run="evil", num_samples=50, metrics=["fid"]), timeout=60)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "symbolic link" in caught.value.details() and "outside the store" in caught.value.details()
    assert "hunter2" not in caught.value.details() and str(tmp_path) not in caught.value.details()


def test_a_one_megabyte_evaluation_id_or_run_comes_back_as_an_error_under_one_kilobyte(evaluator):
    huge = "x" * 2**20
    for call, request in ((evaluator.stub.GetEvaluation, pb.GetEvaluationRequest(id=huge)), (evaluator.stub.Evaluate, pb.EvaluateRequest(run=huge))):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=60)
        assert caught.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        assert len(caught.value.details().encode()) < 1024


def test_a_latest_that_holds_no_step_number_is_refused_without_quoting_it(evaluator, shared_store):
    write_run_json(shared_store, "garbled")
    shared_store.put_bytes("runs/garbled/LATEST", (SECRET + "\n").encode())

    with pytest.raises(grpc.RpcError) as caught:
        evaluator.stub.Evaluate(pb.EvaluateRequest(run="garbled", num_samples=50, metrics=["fid"]), timeout=60)

    assert caught.value.code() != grpc.StatusCode.INTERNAL and "does not hold a step number" in caught.value.details()
    assert "hunter2" not in caught.value.details()
