"""Table models (CTGAN): rows drawn from (seed, index) with an optional condition; GenerateRecords."""

from __future__ import annotations

import json

import numpy as np
import torch

from ganworks.errors import CheckpointError
from ganworks.tabular.synthesizer import TabularModel
from ganworks.tabular.transformer import DiscreteEncoding
from generator_service.kinds.base import ServingKind


class TableKind(ServingKind):
    name = "table"
    makes = "table rows"
    answered_by = "GenerateRecords"
    calls = frozenset({"GenerateRecords"})

    def attach(self, snapshot) -> TabularModel:
        """The transformer and sampling beside the generator (CheckpointFormatError when the snapshot lacks them)."""
        return TabularModel.from_snapshot(snapshot)

    def compute(self, model, parts, padded, output_kind):
        """Each row's noise, condition and Gumbel draws from (seed, index), one forward pass, then encoded rows (the
        servicer decodes them). The generator is in eval mode, so BatchNorm uses its trained statistics and no row
        depends on its batch-mates or on the zero padding."""
        tabular = model.tabular
        inputs = [tabular.inputs(p.job.seed, p.job.first_index + p.start, p.count, p.job.condition) for p in parts]
        size = sum(p.count for p in parts)
        z = np.concatenate([i[0] for i in inputs] + [np.zeros((padded - size, tabular.params["latent_dim"]), dtype=np.float32)])
        cond = None
        if inputs[0][1] is not None:
            cond = torch.from_numpy(np.concatenate([i[1] for i in inputs] + [np.zeros((padded - size, inputs[0][1].shape[1]), dtype=np.float32)])).to(model.device)
        with torch.inference_mode():
            raw = model.generator(torch.from_numpy(z).to(model.device), cond)[:size].float().cpu().numpy()
        rows, offset = [], 0
        for part, (_, _, uniform) in zip(parts, inputs):
            rows.append(tabular.finish(raw[offset : offset + part.count], uniform, part.job.condition))
            offset += part.count
        return np.concatenate(rows), None

    def warm_up(self, model, shapes, fast_path, max_batch_size):
        tabular, m = model.tabular, model.manifest
        for size in reversed(shapes):
            z = torch.zeros(size, m.latent_dim, device=model.device)
            cond = torch.zeros(size, tabular.sampler.cond_dim, device=model.device) if tabular.sampler.cond_dim else None
            with torch.inference_mode():
                out = model.generator(z, cond)
            if not torch.isfinite(out).all():
                raise CheckpointError(f"snapshot {m.step} of model {m.run!r} produces NaN/inf rows on zero noise; it is refused")

    def columns_json(self, model) -> str:
        """The columns (name, kind, a categorical's levels) and the target."""
        transformer = model.tabular.transformer
        columns = [{"name": enc.name, "kind": enc.kind, **({"levels": enc.levels} if isinstance(enc, DiscreteEncoding) else {})} for enc in transformer.encodings]
        return json.dumps({"columns": columns, "target": transformer.schema.target})


TABLE = TableKind()
