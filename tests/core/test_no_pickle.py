"""Nothing ganworks reads from a store or a checkpoint folder is unpickled: safetensors, JSON and pickle-free .npz only.

Two proofs: every load in the product code is written pickle-free (read from the source), and the loaders of
snapshots, resume state and reference statistics work with pickle made unusable.
"""

from __future__ import annotations

import ast
import io
import pathlib
import pickle

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("ganworks", "generator_service", "evaluator_service", "trainer", "orchestration")
PICKLERS = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
# The one exception, and why: nothing in a store or a checkpoint folder is read this way.
ALLOWED = {
    "evaluator_service/features/tf_import.py": "torch.jit.load",  # `ganworks evaluator import-inception FILE`: once, a file the operator names; writes safetensors
}


def _keyword(call: ast.Call, name: str):
    value = next((k.value for k in call.keywords if k.arg == name), None)
    return value.value if isinstance(value, ast.Constant) else value


def pickle_uses(source: str) -> list[str]:
    """Each place in `source` that can unpickle: an import of a pickler, torch.load without weights_only=True,
    np.load with allow_pickle=True, torch.jit.load."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
            found.append(f"line {node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = ast.unparse(node.func)
            if name.endswith("torch.load") and _keyword(node, "weights_only") is not True:
                found.append(f"line {node.lineno}: {name} without weights_only=True")
            elif name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") not in (None, False):
                found.append(f"line {node.lineno}: {name} with allow_pickle")
            elif name.endswith("jit.load"):
                found.append(f"line {node.lineno}: {name} (TorchScript archives hold pickles)")
    return found


def test_no_loader_in_the_product_code_can_unpickle():
    found = [f"{path.relative_to(ROOT)} {use}" for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
             for use in pickle_uses(path.read_text()) if not use.endswith(f"{ALLOWED.get(str(path.relative_to(ROOT)), '-')} (TorchScript archives hold pickles)")]
    assert found == [], "\n".join(found)


def test_the_source_check_sees_each_way_to_unpickle():
    source = ("import pickle\nfrom joblib import load\nimport torch, numpy as np\ntorch.load(f)\ntorch.load(f, weights_only=False)\n"
              "torch.load(f, weights_only=True)\nnp.load(f, allow_pickle=True)\nnp.load(f)\ntorch.jit.load(f)\n")
    assert [use.split(":")[0] for use in pickle_uses(source)] == ["line 1", "line 2", "line 4", "line 5", "line 7", "line 9"]


@pytest.fixture
def pickle_forbidden(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    class RefusingUnpickler(pickle.Unpickler):  # a class still: modules imported meanwhile may subclass it
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)


def test_snapshots_resume_state_and_reference_statistics_load_with_pickle_unusable(local_store, tmp_path, pickle_forbidden):
    from ganworks.checkpoint import load_snapshot, publish_snapshot
    from ganworks.models import build_discriminator, build_generator
    from trainer.ema import make_ema
    from trainer.train_state import load_train_state, save_train_state
    from evaluator_service.reference import ReferenceStats, _decode, _encode
    from evaluator_service.stats import FeatureStats

    # The check itself works: numpy's pickle path now fails.
    with pytest.raises(AssertionError, match="unpickled"):
        np.load(io.BytesIO(_npy_with_an_object()), allow_pickle=True)

    params = {"image_size": 16, "channels": 1, "latent_dim": 8, "width": 8}
    generator = build_generator("dcgan", **params)
    publish_snapshot(local_store, run="r", step=1, generator_state=generator.state_dict(), architecture="dcgan", architecture_params=params)
    assert load_snapshot(local_store, "r").manifest.step == 1

    nets = [generator, build_discriminator("dcgan", **params)]
    opts = [torch.optim.Adam(n.parameters()) for n in nets]
    save_train_state(tmp_path, generator=nets[0], discriminator=nets[1], generator_ema=make_ema(nets[0]), g_optimizer=opts[0], d_optimizer=opts[1],
                     rng_states=[torch.Generator().get_state()], counters={"step": 1, "images_seen": 16})
    meta, _ = load_train_state(tmp_path, generator=nets[0], discriminator=nets[1], generator_ema=make_ema(nets[0]), g_optimizer=opts[0], d_optimizer=opts[1])
    assert meta["step"] == 1

    features = np.random.RandomState(0).randn(4, 3)
    stats = FeatureStats(3, 4, features.sum(0), features.T @ features)
    ref = ReferenceStats("d", "e", "legacy", features.astype(np.float32), features.astype(np.float32), np.arange(4), stats)
    assert _decode(_encode(ref), "d", "e", "legacy", 4).stats.count == 4


def _npy_with_an_object() -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return out.getvalue()
