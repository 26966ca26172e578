"""One module per kind of run (ganworks.models.KINDS), each with the same two entry points:

    check_run_info(dataset, where) -> None                          run.json's dataset record has what this kind needs
    plan(store, request, settings, datasets, info, step) -> Plan   the request checked and resolved for this kind
    run(store, plan, settings, extractors, progress) -> dict        the evaluation run and its report written

evaluator_service/evaluation.py picks the module by the run's kind and never asks what the kind is.
"""

from __future__ import annotations

from types import ModuleType

from evaluator_service.kinds import image, table, translation

KINDS: dict[str, ModuleType] = {"image": image, "table": table, "translation": translation}
