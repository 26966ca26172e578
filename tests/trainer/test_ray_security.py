"""A local Ray cluster started by ganworks takes a fresh token: Ray's ports listen on the node's address, so
without it anyone on the network could submit code."""

from __future__ import annotations

import logging

from trainer.driver import enable_ray_token_auth


def test_a_local_cluster_gets_token_auth_with_a_fresh_token_that_is_never_logged():
    env: dict[str, str] = {}
    enable_ray_token_auth(env)
    other: dict[str, str] = {}
    enable_ray_token_auth(other)

    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) >= 32
    assert other["RAY_AUTH_TOKEN"] != env["RAY_AUTH_TOKEN"]
    from ganworks.telemetry import RedactSecrets

    record = logging.LogRecord("ray", logging.WARNING, __file__, 1, "token %s", (env["RAY_AUTH_TOKEN"],), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "token ***"


def test_an_explicit_ray_auth_mode_is_respected():
    env = {"RAY_AUTH_MODE": "disabled"}
    enable_ray_token_auth(env)

    assert env == {"RAY_AUTH_MODE": "disabled"}
