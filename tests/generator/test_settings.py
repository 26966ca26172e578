"""Generator settings: flags over GANWORKS_GENERATOR_* environment over defaults, and clear refusals."""

from __future__ import annotations

import pytest

from ganworks.errors import ConfigError
from ganworks.settings import load_settings
from generator_service.batcher import batch_shapes
from generator_service.settings import ENV_PREFIX, GeneratorSettings


def test_flags_override_environment_which_overrides_defaults():
    env = {"GANWORKS_GENERATOR_RUNS": "a, b", "GANWORKS_GENERATOR_MAX_BATCH_SIZE": "32", "GANWORKS_GENERATOR_PORT": "6000"}
    settings = load_settings(GeneratorSettings, {"port": 7000}, env=env, prefix=ENV_PREFIX)
    assert (settings.runs, settings.max_batch_size, settings.port, settings.max_queue_delay_ms) == (["a", "b"], 32, 7000, 5.0)


def test_token_comes_from_a_mounted_file_and_stays_out_of_repr(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("abc-123-secret\n")
    settings = load_settings(GeneratorSettings, env={"GANWORKS_GENERATOR_AUTH_TOKEN_FILE": str(token_file)}, prefix=ENV_PREFIX)
    assert settings.auth_token == "abc-123-secret" and "abc-123" not in repr(settings)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms must be >= 0"),
        ({"max_samples_per_request": 2048, "max_queue_size": 1024}, "could never be admitted"),
        ({"tls_cert": "cert.pem"}, "needs both --tls-cert and --tls-key"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_name_to_fix(values, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        GeneratorSettings(**values)


def test_a_malformed_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="GANWORKS_GENERATOR_MAX_BATCH_SIZE"):
        load_settings(GeneratorSettings, env={"GANWORKS_GENERATOR_MAX_BATCH_SIZE": "lots"}, prefix=ENV_PREFIX)


def test_batches_are_padded_to_few_shapes_that_cover_every_size():
    shapes = batch_shapes(64)
    assert shapes == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert all(next(s for s in shapes if s >= n) - n < 8 for n in range(1, 65))
    assert batch_shapes(5) == [1, 2, 4, 5]
