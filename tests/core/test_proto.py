"""The committed stubs in ganworks/api are exactly what `make proto` generates from proto/."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_proto", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_what_make_proto_generates(tmp_path):
    fresh = {p.name: p.read_text() for p in _generator().generate(tmp_path)}
    committed = {p.name: p.read_text() for p in (ROOT / "ganworks" / "api").glob("*_pb2*.py*")}

    assert sorted(fresh) == sorted(committed), "stub files differ: run `make proto` and commit ganworks/api"
    drifted = [name for name in fresh if fresh[name] != committed[name]]
    assert not drifted, f"{drifted} differ from proto/: run `make proto` and commit ganworks/api"


def test_stubs_import_and_carry_the_versioned_package():
    from ganworks.api import evaluator_pb2, generator_pb2

    assert generator_pb2.DESCRIPTOR.package == "ganworks.v1"
    assert "Generate" in generator_pb2.DESCRIPTOR.services_by_name["Generator"].methods_by_name
    assert "WatchEvaluation" in evaluator_pb2.DESCRIPTOR.services_by_name["Evaluator"].methods_by_name
