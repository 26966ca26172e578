"""Tabular datasets: built-in tables, CSV/Parquet files, schema inference and overrides, and their errors."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ganworks.errors import DatasetError
from ganworks.tabular.data import TabularSchemaError, load_table


def _write_csv(path, text):
    path.write_text(text)
    return str(path)


def test_credit_default_is_ten_thousand_card_holders_with_a_rare_default():
    table = load_table("credit-default")
    assert len(table) == 10_000
    assert [(c.name, c.kind) for c in table.schema.columns] == [
        ("default", "categorical"), ("student", "categorical"), ("balance", "continuous"), ("income", "continuous")]
    assert table.schema.target == "default"
    assert np.mean(table.columns["default"] == "Yes") == pytest.approx(0.0333)


def test_credit_card_mixes_integers_and_categories_and_drops_the_row_id():
    table = load_table("credit-card")
    kinds = {c.name: c.kind for c in table.schema.columns}
    assert "ID" not in kinds and kinds["Cards"] == "integer" and kinds["Income"] == "continuous" and kinds["Ethnicity"] == "categorical"
    assert set(table.columns["Gender"]) == {"Male", "Female"}  # the CSV's " Male" is stripped


def test_breast_cancer_has_569_patients_30_measurements_and_a_diagnosis():
    table = load_table("breast-cancer")
    assert (len(table), len(table.schema.columns), table.schema.target) == (569, 31, "diagnosis")
    assert set(table.columns["diagnosis"]) == {"malignant", "benign"}


def test_train_and_test_splits_are_disjoint_fixed_and_have_their_own_ids():
    train, test, again = load_table("credit-card", split="train"), load_table("credit-card", split="test"), load_table("credit-card", split="train")
    assert (len(train), len(test)) == (320, 80)
    assert train.id == again.id and train.id != test.id
    assert np.array_equal(train.columns["Income"], again.columns["Income"])


def test_csv_and_parquet_of_the_same_table_load_alike_with_inferred_kinds(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "age,score,smoker,city,flag\n30,1.5,true,Oslo,1\n41,2.25,false,Rome,0\n52,3.0,true,Oslo,1\n")
    pq.write_table(pa.table({"age": [30, 41, 52], "score": [1.5, 2.25, 3.0], "smoker": [True, False, True], "city": ["Oslo", "Rome", "Oslo"], "flag": [1, 0, 1]}), tmp_path / "t.parquet")
    from_csv, from_parquet = load_table(csv), load_table(str(tmp_path / "t.parquet"))
    assert [(c.name, c.kind) for c in from_csv.schema.columns] == [
        ("age", "integer"), ("score", "continuous"), ("smoker", "boolean"), ("city", "categorical"), ("flag", "boolean")]
    assert from_csv.schema == from_parquet.schema
    assert from_csv.columns["smoker"].tolist() == [True, False, True]


def test_a_schema_file_overrides_kinds_and_names_the_target(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "cards,income,y\n1,10.5,a\n2,20.5,b\n3,30.5,a\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": {"cards": "categorical"}, "target": "y"}))
    table = load_table(csv, schema_file=schema)
    assert table.schema.kind("cards") == "categorical" and table.columns["cards"].tolist() == ["1", "2", "3"]
    assert table.schema.target == "y"


def _loans(folder: pathlib.Path, rows: int = 100) -> str:
    """A CSV whose row id must be dropped and whose card count is a category, as its sidecar says."""
    lines = ["ID,cards,income,y"] + [f"{i},{1 + i % 3},{1000 + 37 * i}.5,{'yes' if i % 4 == 0 else 'no'}" for i in range(rows)]
    path = _write_csv(folder / "loans.csv", "\n".join(lines) + "\n")
    (folder / "loans.schema.json").write_text(json.dumps({"columns": {"ID": "drop", "cards": "categorical"}, "target": "y"}))
    return path


def test_a_schema_file_beside_the_table_is_applied_by_the_trainer_and_an_explicit_one_wins(tmp_path, capsys):
    from ganworks.cli import main

    csv = _loans(tmp_path)
    table = load_table(csv, split="train")

    assert table.schema.names == ["cards", "income", "y"] and table.schema.kind("cards") == "categorical" and table.schema.target == "y"
    code = main(["train", "--dry-run", "--store", str(tmp_path / "store"), "--run", "loans", "--model", "ctgan", "--dataset", csv, "--batch-size", "20"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # What the trainer planned with is what anyone loading the same spec gets (the evaluator does): the same id.
    assert json.loads(out)["dataset"]["id"] == table.id and json.loads(out)["dataset"]["schema"]["target"] == "y"
    explicit = tmp_path / "other.json"
    explicit.write_text(json.dumps({"columns": {"ID": "drop"}}))
    assert load_table(csv, schema_file=explicit).schema.kind("cards") == "integer"


def test_a_broken_schema_file_beside_the_table_is_refused_naming_it(tmp_path):
    csv = _loans(tmp_path)
    (tmp_path / "loans.schema.json").write_text('{"columns": ')
    with pytest.raises(TabularSchemaError, match=f"schema file {tmp_path / 'loans.schema.json'}: not valid JSON"):
        load_table(csv)


@pytest.mark.parametrize("column, said", [
    ({"income": {"kind": "continuous", "range": [5000, 100]}}, "column 'income': 'range' must be [low, high] with low < high"),
    ({"income": {"kind": "continuous", "range": ["0", "100"]}}, "column 'income': 'range' must be [low, high] with low < high"),
    ({"y": {"kind": "categorical", "range": [0, 1]}}, "column 'y': 'range' must be [low, high] with low < high, for a continuous or integer column"),
    ({"income": {"kind": "continuous", "range": [0, 2000]}}, "column 'income' holds 2036.5, outside its declared range [0, 2000]"),
    ({"y": {"kind": "categorical", "levels": ["no"]}}, "column 'y' holds 'yes', which its declared levels do not list"),
    ({"y": {"kind": "categorical", "levels": ["no", "no", "yes"]}}, "column 'y': 'levels' must be a list of distinct strings"),
    ({"y": {"kind": "categorical", "level": ["no", "yes"]}}, "column 'y' has unknown schema key(s) ['level']"),
], ids=["range-backwards", "range-as-text", "range-of-a-category", "value-outside-range", "level-not-declared", "levels-repeated", "unknown-key"])
def test_declared_public_ranges_and_levels_must_fit_their_column_and_the_data(tmp_path, column, said):
    csv = _loans(tmp_path)
    (tmp_path / "loans.schema.json").write_text(json.dumps({"columns": {"ID": "drop", **column}}))
    with pytest.raises(TabularSchemaError) as refused:
        load_table(csv)
    assert said in str(refused.value)


def test_declared_ranges_and_levels_are_part_of_the_schema_and_its_id(tmp_path):
    csv = _loans(tmp_path)
    plain = load_table(csv)
    (tmp_path / "loans.schema.json").write_text(json.dumps({"columns": {"ID": "drop", "cards": "categorical", "income": {"kind": "continuous", "range": [0, 10000]},
                                                                        "y": {"kind": "categorical", "levels": ["yes", "no", "maybe"]}}, "target": "y"}))
    declared = load_table(csv)
    assert declared.schema.columns[1].range == (0.0, 10000.0) and declared.schema.columns[2].levels == ("yes", "no", "maybe")
    assert declared.id != plain.id and type(declared.schema).from_json(declared.schema.to_json()) == declared.schema
    assert plain.schema.to_json()["columns"][0] == {"name": "cards", "kind": "categorical"}  # nothing declared: the JSON (and ids) of before


def test_a_missing_file_is_a_dataset_error_that_says_what_to_give(tmp_path):
    with pytest.raises(DatasetError, match="not found: give one of .*credit-default.*csv or .parquet"):
        load_table(str(tmp_path / "nope.csv"))


def test_a_schema_naming_an_unknown_column_is_refused(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "a,b\n1,x\n2,y\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": {"c": "continuous"}}))
    with pytest.raises(TabularSchemaError, match=r"names column\(s\) \['c'\] that the table does not have; columns: \['a', 'b'\]") as err:
        load_table(csv, schema_file=schema)
    assert err.value.column == "c"


def test_an_all_missing_column_is_refused_with_how_to_drop_it(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "a,empty\n1,\n2,\n")
    with pytest.raises(TabularSchemaError, match="column 'empty' is missing in every row; drop it"):
        load_table(csv)


def test_a_categorical_with_more_levels_than_allowed_is_refused_and_the_limit_is_configurable(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "name\n" + "\n".join(f"n{i}" for i in range(6)) + "\n")
    with pytest.raises(TabularSchemaError, match="'name' has 6 levels, more than max_categories=5"):
        load_table(csv, max_categories=5)
    assert len(load_table(csv, max_categories=6)) == 6


def test_a_number_column_declared_with_text_values_names_the_value(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "a\nx\ny\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": {"a": "continuous"}}))
    with pytest.raises(TabularSchemaError, match="column 'a' is declared continuous but holds 'x'"):
        load_table(csv, schema_file=schema)


def test_rows_with_a_missing_number_are_left_out_and_counted(tmp_path):
    csv = _write_csv(tmp_path / "t.csv", "a,b\n1,x\n,y\n3,\n")
    table = load_table(csv)
    assert table.dropped_rows == 1
    assert table.columns["b"].tolist() == ["x", "<missing>"]


def test_a_table_is_read_from_a_store_url_and_a_missing_object_is_named(s3, tmp_path):
    import os
    from unittest import mock

    from ganworks.store import open_store

    url = s3.new_bucket_url("data")
    store = open_store(url, settings=s3.store_settings())
    store.put_file("t.csv", pathlib.Path(_write_csv(tmp_path / "t.csv", "a,b\n1,x\n2,y\n")))
    store.put_file("loans.csv", pathlib.Path(_loans(tmp_path)))
    store.put_file("loans.schema.json", tmp_path / "loans.schema.json")
    store.put_bytes("broken.csv", b"a,b\n1,x\n")
    store.put_bytes("broken.schema.json", b"[]")
    bucket = url.split("/")[2]
    with mock.patch.dict(os.environ, s3.env()):
        table = load_table(f"s3://{bucket}/data/t.csv")
        loans = load_table(f"s3://{bucket}/data/loans.csv")  # its sidecar comes from the store with it
        with pytest.raises(DatasetError, match=f"s3://{bucket}/data/gone.csv: no such object in the store"):
            load_table(f"s3://{bucket}/data/gone.csv")
        with pytest.raises(TabularSchemaError, match=f"schema file s3://{bucket}/data/broken.schema.json: expected an object"):
            load_table(f"s3://{bucket}/data/broken.csv")
    assert table.columns["b"].tolist() == ["x", "y"]
    assert loans.schema.names == ["cards", "income", "y"] and loans.schema == load_table(str(tmp_path / "loans.csv")).schema


def test_a_file_url_names_a_local_table(tmp_path):
    assert len(load_table("file://" + _write_csv(tmp_path / "t.csv", "a\n1\n2\n"))) == 2
