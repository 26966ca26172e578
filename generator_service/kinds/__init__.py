"""The kinds of model the generator serves, one module each (image, table, translation), behind ServingKind.

A new kind is a module here with its ServingKind and one entry in KINDS; the servicer, the batcher and the
server reach a kind's behaviour only through serving_kind(model).
"""

from __future__ import annotations

from ganworks.models import get_family
from generator_service.kinds.base import ServingKind
from generator_service.kinds.image import IMAGE
from generator_service.kinds.table import TABLE
from generator_service.kinds.translation import TRANSLATION

KINDS: dict[str, ServingKind] = {kind.name: kind for kind in (IMAGE, TABLE, TRANSLATION)}
# Every Open Inference Protocol input some kind takes: a request's headers are checked against these before routing.
OIP_INPUTS = {name: spec for kind in KINDS.values() for name, spec in kind.inputs.items()}
OIP_INPUTS_HELP = "; or ".join(kind.inputs_help for kind in KINDS.values() if kind.inputs_help)


def kind_of(family) -> str:
    """The family's declared kind (ganworks.models.registry)."""
    return family.kind


def serving_kind(model) -> ServingKind:
    """How the generator serves a loaded model (anything with a .family)."""
    return KINDS[kind_of(model.family)]


def attach(snapshot):
    """What a snapshot's kind loads beside its generator (ModelManager keeps it as LoadedModel.tabular)."""
    return KINDS[kind_of(get_family(snapshot.manifest.architecture))].attach(snapshot)


__all__ = ["KINDS", "OIP_INPUTS", "OIP_INPUTS_HELP", "ServingKind", "attach", "kind_of", "serving_kind"]
