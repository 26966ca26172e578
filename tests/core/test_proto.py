"""The committed stubs in ganworks/api are exactly what `make proto` generates from proto/."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pathlib
import re

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
    assert not drifted, (
        f"{drifted} differ from proto/: run `make proto` and commit ganworks/api. The committed stubs were made by "
        f"grpcio-tools {_made_by(committed)}; this run's is {importlib.metadata.version('grpcio-tools')} "
        f"(requirements/lock.txt pins {_locked_tools()}: `make venv` installs exactly that)"
    )


def _made_by(stubs: dict[str, str]) -> str:
    """The grpcio-tools release that wrote a set of stubs: each *_pb2_grpc.py records it."""
    found = {m.group(1) for text in stubs.values() for m in re.finditer(r"^GRPC_GENERATED_VERSION = '([^']+)'", text, re.M)}
    return ", ".join(sorted(found)) or "an unknown version"


def _locked_tools() -> str:
    m = re.search(r"^grpcio-tools==(\S+)", (ROOT / "requirements" / "lock.txt").read_text(), flags=re.M)
    return m.group(1) if m else "nothing"


def test_the_stubs_were_made_by_the_locked_grpcio_tools():
    committed = {p.name: p.read_text() for p in (ROOT / "ganworks" / "api").glob("*_pb2_grpc.py")}
    assert _made_by(committed) == _locked_tools(), "run `make venv` then `make proto`, and commit ganworks/api"


def test_stubs_import_and_carry_the_versioned_package():
    from ganworks.api import evaluator_pb2, generator_pb2

    assert generator_pb2.DESCRIPTOR.package == "ganworks.v1"
    assert "Generate" in generator_pb2.DESCRIPTOR.services_by_name["Generator"].methods_by_name
    assert "WatchEvaluation" in evaluator_pb2.DESCRIPTOR.services_by_name["Evaluator"].methods_by_name
