"""Every GANWORKS_* variable that deploy/ sets is one a component reads (a typo would be silently ignored)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ganworks.settings import PREFIX, StoreSettings
from tests.deploy import artifacts
from tests.deploy.artifacts import of_kind, rendered
from tests.deploy.tools import DEPLOY


def _known_variables() -> set[str]:
    from evaluator_service.settings import ENV_PREFIX as EVALUATOR, EvaluatorSettings
    from generator_service.settings import ENV_PREFIX as GENERATOR, GeneratorSettings
    from trainer.config import ENV_PREFIX as TRAINER, TrainOptions

    known = set()
    for cls, prefix in ((StoreSettings, PREFIX), (GeneratorSettings, GENERATOR), (EvaluatorSettings, EVALUATOR), (TrainOptions, TRAINER)):
        for field in dataclasses.fields(cls):
            name = prefix + field.name.upper()
            known.add(name)
            if field.metadata.get("secret"):
                known.add(name + "_FILE")
    return known


def _set_in_deploy() -> dict[str, str]:
    found = {}
    for overlay in artifacts.OVERLAYS:
        for config in of_kind(rendered(overlay), "ConfigMap"):
            for key in config.get("data", {}):
                found.setdefault(key, f"{overlay}: ConfigMap {config['metadata']['name']}")
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for key in service.get("environment", {}):
            found.setdefault(key, f"compose service {name}")
    return {key: where for key, where in found.items() if key.startswith(PREFIX)}


def test_every_ganworks_variable_deploy_sets_is_read_by_a_component():
    known = _known_variables()
    unknown = {key: where for key, where in _set_in_deploy().items() if key not in known}
    assert not unknown, f"variables no settings class reads: {unknown}"


@pytest.mark.parametrize("variable", ["GANWORKS_STORE", "GANWORKS_S3_ENDPOINT", "GANWORKS_GENERATOR_MAX_CONNECTION_AGE_SECONDS", "GANWORKS_EVALUATOR_CONTINUOUS"])
def test_the_settings_that_wire_the_system_are_set(variable):
    assert variable in _set_in_deploy()
