"""Settings: flags override the environment, which overrides defaults; bad values name the variable."""

from __future__ import annotations

import dataclasses

import pytest

from ganworks.errors import ConfigError
from ganworks.settings import describe, load_settings, secret


@dataclasses.dataclass
class Example:
    port: int = 50051
    delay: float = 0.005
    debug: bool = False
    runs: list[str] = dataclasses.field(default_factory=list)
    token: str = secret()


def test_flags_override_environment_which_overrides_defaults():
    env = {"GANWORKS_PORT": "6000", "GANWORKS_DELAY": "0.5", "GANWORKS_RUNS": "a, b"}

    settings = load_settings(Example, {"port": 7000}, env=env)

    assert (settings.port, settings.delay, settings.runs, settings.debug) == (7000, 0.5, ["a", "b"], False)


def test_a_malformed_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="GANWORKS_PORT='many' is not a valid int"):
        load_settings(Example, env={"GANWORKS_PORT": "many"})


def test_booleans_accept_the_usual_spellings_and_refuse_others():
    assert load_settings(Example, env={"GANWORKS_DEBUG": "yes"}).debug is True
    with pytest.raises(ConfigError, match="GANWORKS_DEBUG"):
        load_settings(Example, env={"GANWORKS_DEBUG": "maybe"})


def test_secrets_never_appear_in_repr_or_descriptions():
    settings = load_settings(Example, env={"GANWORKS_TOKEN": "hunter2-secret"})

    assert "hunter2-secret" not in repr(settings)
    assert describe(settings)["token"] == "***"


def test_unknown_override_names_are_refused():
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings(Example, {"prot": 1})
