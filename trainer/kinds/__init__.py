"""One module per kind of run (ganworks.models.KINDS). Each fills in the few entry points the trainer needs:

    plan(options, store_settings, family, store, began, source) -> TrainPlan
        the options valid for the kind, its data loaded and checked, its privacy rules, run.json's dataset record
    worker_config(plan, put) -> dict
        what the workers get besides the options: under "dataset", "ref" (the training data, through Ray's object store), and the kind's own keys
    Run(config, opts, family, params, rank, world, device, privacy)
        a worker's networks, data and step; trainer/loop.py, the one worker loop, drives it (resume, reports,
        snapshots, checkpoints, the stop and the privacy budget) and never asks which kind it runs

A new kind is one more module here and one line in KINDS.
"""

from __future__ import annotations

from types import ModuleType

from trainer.kinds import image, table, translation

KINDS: dict[str, ModuleType] = {"image": image, "table": table, "translation": translation}
