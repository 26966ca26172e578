"""GenerateRecords: table rows from a published ctgan snapshot, as Arrow IPC or CSV, seeded per row, conditioned."""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

from ganworks.api import generator_pb2 as pb
from ganworks.checkpoint import load_snapshot, publish_snapshot
from ganworks.errors import CheckpointFormatError
from ganworks.tabular.data import Column, Schema, TabularDataset
from ganworks.tabular.synthesizer import TabularModel
from tests.generator.conftest import publish
from trainer.ctgan import fit

SMALL = {"latent_dim": 8, "g_width": 16, "d_width": 16, "pac": 4, "max_modes": 3}


def _table(n=160):
    rng = np.random.default_rng(0)
    default = np.where(rng.random(n) < 0.2, "Yes", "No").astype(object)
    columns = {"default": default, "student": rng.random(n) < 0.3, "balance": np.where(default == "Yes", rng.normal(1800, 100, n), rng.normal(800, 200, n)),
               "cards": rng.integers(1, 6, n).astype(float)}
    schema = Schema((Column("default", "categorical"), Column("student", "boolean"), Column("balance", "continuous"), Column("cards", "integer")), target="default")
    return TabularDataset(columns=columns, schema=schema, id="tiny-credit", source="test")


@pytest.fixture(scope="module")
def model() -> TabularModel:
    return fit(_table(), epochs=2, batch_size=40, seed=0, **SMALL)


def publish_table(store, run: str, model: TabularModel, step: int = 1, with_transformer: bool = True):
    return publish_snapshot(store, run=run, step=step, generator_state=model.generator.state_dict(), architecture="ctgan", architecture_params=model.params,
                            dataset_id="tiny-credit", files=model.snapshot_files() if with_transformer else None)


def test_records_come_as_an_arrow_stream_that_pyarrow_reads_with_the_tables_columns_and_types(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    with server.client() as client:
        response = client.call("GenerateRecords", pb.GenerateRecordsRequest(model="t", num_rows=50, seed=3, format=pb.RECORD_FORMAT_ARROW))
    table = pyarrow.ipc.open_stream(response.data).read_all()
    assert table.num_rows == 50 and response.num_rows == 50 and response.seed == 3 and response.version == 1
    assert table.schema.names == list(response.columns) == ["default", "student", "balance", "cards"]
    assert [table.schema.field(n).type for n in table.schema.names] == [pa.string(), pa.bool_(), pa.float64(), pa.int64()]
    assert set(table.column("default").to_pylist()) <= {"No", "Yes"}
    assert all(1 <= c <= 5 for c in table.column("cards").to_pylist())


def test_the_same_seed_gives_the_same_rows_alone_in_shared_batches_as_a_prefix_and_as_the_model_offline(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"], max_batch_size=8, max_queue_delay_ms=30)
    with server.client() as client:
        alone = client.generate_records("t", 30, seed=77).table
        with ThreadPoolExecutor(6) as pool:
            others = [pool.submit(client.generate_records, "t", n, seed=1000 + n) for n in (1, 5, 3, 9)]
            mixed = [pool.submit(client.generate_records, "t", 30, seed=77) for _ in range(3)]
            results = [f.result().table for f in mixed]
            [f.result() for f in others]
        prefix = client.generate_records("t", 7, seed=77).table
        other_seed = client.generate_records("t", 30, seed=78).table
    for result in results:
        assert result.equals(alone)
    assert prefix.equals(alone.slice(0, 7))
    assert not other_seed.column("balance").equals(alone.column("balance"))
    offline = model.sample(30, seed=77)
    assert np.array_equal(alone.column("balance").to_numpy(), offline["balance"])
    assert alone.column("default").to_pylist() == list(offline["default"])


def test_a_condition_gives_every_row_the_value_and_csv_reads_back_with_a_header(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    with server.client() as client:
        rows = client.generate_records("t", 200, seed=1, condition="default=Yes", format="csv")
        students = client.generate_records("t", 100, seed=1, condition=("student", "True"))
    parsed = list(csv.DictReader(io.StringIO(rows.data.decode())))
    assert len(parsed) == 200 and list(parsed[0]) == ["default", "student", "balance", "cards"]
    assert {row["default"] for row in parsed} == {"Yes"}
    assert set(students.table.column("student").to_pylist()) == {True}


def test_bad_conditions_and_sizes_are_invalid_argument_naming_what_is_allowed(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"], max_samples_per_request=500)
    with server.client() as client:
        cases = [
            (dict(condition="default=Maybe"), r"default = 'Maybe' is not a value of default; allowed: \['No', 'Yes'\]"),
            (dict(condition="balance=3"), r"conditions name a categorical or boolean column, one of \['default', 'student'\]"),
        ]
        for kwargs, message in cases:
            with pytest.raises(grpc.RpcError) as caught:
                client.generate_records("t", 10, **kwargs)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert re.search(message, caught.value.details()), caught.value.details()
        two = pb.GenerateRecordsRequest(model="t", num_rows=5, conditions=[pb.Condition(column="default", value="Yes"), pb.Condition(column="student", value="True")])
        with pytest.raises(grpc.RpcError, match="at most one condition"):
            client.call("GenerateRecords", two)
        with pytest.raises(grpc.RpcError, match="num_rows must be between 1 and this server's maximum of 500"):
            client.generate_records("t", 501)


def test_image_and_table_models_refuse_each_others_calls_with_the_call_to_use(local_store, serve, model):
    publish_table(local_store, "t", model)
    publish(local_store, "img", 1)
    server = serve(local_store, ["t", "img"])
    with server.client() as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.generate("t", 2)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "call GenerateRecords" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            client.generate_records("img", 2)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "call Generate or GenerateStream" in caught.value.details()


def test_describe_lists_the_columns_kinds_levels_and_target_of_a_table_model(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    with server.client() as client:
        info = client.describe("t")
    described = json.loads(info.columns_json)
    assert described["target"] == "default" and info.architecture == "ctgan" and info.dataset_id == "tiny-credit"
    assert described["columns"][0] == {"name": "default", "kind": "categorical", "levels": ["No", "Yes"]}
    assert described["columns"][2] == {"name": "balance", "kind": "continuous"}


def test_records_pass_the_same_auth_and_count_in_the_same_metrics(local_store, serve, model):
    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"], auth_token="s3cret-token")
    with server.client() as anonymous:
        with pytest.raises(grpc.RpcError) as caught:
            anonymous.generate_records("t", 3)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with server.client(token="s3cret-token") as client:
        client.generate_records("t", 40, seed=2)
    assert server.metric("ganworks_generator_requests_total", code="OK", method="GenerateRecords") == 1
    assert server.metric("ganworks_generator_requests_total", code="UNAUTHENTICATED", method="GenerateRecords") == 1
    assert server.metric("ganworks_generator_samples_total", model="t") == 40


def test_a_table_snapshot_without_its_transformer_is_refused(local_store, model):
    publish_table(local_store, "t", model, with_transformer=False)
    with pytest.raises(CheckpointFormatError, match="ctgan model without transformer.json; re-publish it with its transformer"):
        TabularModel.from_snapshot(load_snapshot(local_store, "t"))


def test_ganworks_generate_writes_conditioned_rows_as_csv_or_arrow_and_names_misused_flags(local_store, serve, model, tmp_path, capsys):
    from ganworks.cli import main

    publish_table(local_store, "t", model)
    server = serve(local_store, ["t"])
    rows_csv, rows_arrow = tmp_path / "rows.csv", tmp_path / "rows.arrow"
    base = ["generate", "--address", server.address, "--run", "t", "-n", "30", "--seed", "4", "--condition", "default=Yes"]
    assert main([*base, "--out", str(rows_csv)]) == 0
    assert "wrote 30 rows (default, student, balance, cards) of model t version 1 (seed 4)" in capsys.readouterr().out
    assert main([*base, "--out", str(rows_arrow)]) == 0
    from_csv = list(csv.DictReader(io.StringIO(rows_csv.read_text())))
    from_arrow = pyarrow.ipc.open_stream(rows_arrow.read_bytes()).read_all()
    assert len(from_csv) == from_arrow.num_rows == 30 and {r["default"] for r in from_csv} == {"Yes"}
    assert [float(r["balance"]) for r in from_csv] == pytest.approx(from_arrow.column("balance").to_pylist())

    capsys.readouterr()
    assert main([*base[:-2], "--condition", "default=Maybe", "--out", str(tmp_path / "x.csv")]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert main([*base[:-2], "--condition", "default", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--condition 'default': give COLUMN=VALUE" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.png")]) == 2
    assert "--condition is for tabular models" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.png").exists()
