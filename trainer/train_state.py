"""The resume state in a Ray Train checkpoint folder: G, D, G_ema, both optimizers and RNG states as safetensors, counters as JSON. No pickle."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ganworks.errors import CheckpointFormatError

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def _save(tensors: dict[str, torch.Tensor], path: pathlib.Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state_dict split into tensors (per parameter index) and JSON (hyperparameters)."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"{index}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


RANK_STATE_FILE = "rank_state.safetensors"


def save_train_state(folder: pathlib.Path, *, generator, discriminator, generator_ema, g_optimizer, d_optimizer,
                     rng_states: list[torch.Tensor], counters: dict[str, Any], rank_states: list[dict[str, torch.Tensor]] | None = None) -> None:
    """rank_states: a family's own per-worker tensors (cyclegan's history pools), one dict per rank."""
    folder = pathlib.Path(folder)
    _save(generator.state_dict(), folder / "generator.safetensors")
    _save(discriminator.state_dict(), folder / "discriminator.safetensors")
    if generator_ema is not None:  # None: a model trained without G_ema (ctgan)
        _save(generator_ema.state_dict(), folder / "generator_ema.safetensors")
    meta = {}
    for name, optimizer in (("g_optimizer", g_optimizer), ("d_optimizer", d_optimizer)):
        tensors, meta[name] = _optimizer_tensors(optimizer)
        _save(tensors, folder / f"{name}.safetensors")
    _save({f"rank{rank}": state for rank, state in enumerate(rng_states)}, folder / "rng.safetensors")
    if rank_states:
        _save({f"rank{rank}.{name}": value for rank, tensors in enumerate(rank_states) for name, value in tensors.items()}, folder / RANK_STATE_FILE)
    (folder / STATE_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **counters, **meta}, indent=2))


def load_train_state(folder: pathlib.Path, *, generator, discriminator, generator_ema, g_optimizer, d_optimizer) -> tuple[dict[str, Any], dict[int, torch.Tensor]]:
    """Loads the networks and optimizers in place; returns the counters and the per-rank RNG states."""
    folder = pathlib.Path(folder)
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"the training checkpoint in {folder} has no readable {STATE_FILE}: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointFormatError(f"training checkpoint format {meta.get('format_version')!r} is not {FORMAT_VERSION}; start a new run id")
    generator.load_state_dict(load_file(str(folder / "generator.safetensors")))
    discriminator.load_state_dict(load_file(str(folder / "discriminator.safetensors")))
    if generator_ema is not None:
        generator_ema.load_state_dict(load_file(str(folder / "generator_ema.safetensors")))
    for name, optimizer in (("g_optimizer", g_optimizer), ("d_optimizer", d_optimizer)):
        optimizer.load_state_dict(_optimizer_state(load_file(str(folder / f"{name}.safetensors")), meta[name]))
    rng = {int(key[4:]): value for key, value in load_file(str(folder / "rng.safetensors")).items()}
    return meta, rng


def load_rank_states(folder: pathlib.Path) -> dict[int, dict[str, torch.Tensor]]:
    """The per-worker tensors save_train_state wrote (rank -> name -> tensor); empty for a checkpoint without them."""
    path = pathlib.Path(folder) / RANK_STATE_FILE
    if not path.exists():
        return {}
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        rank, _, name = key.partition(".")
        out.setdefault(int(rank[4:]), {})[name] = value
    return out
