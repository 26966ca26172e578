"""The generator client's retry policy, shared by its blocking and asyncio forms: what is tried again, and until when."""

from __future__ import annotations

import grpc

from ganworks.generator_client import GeneratorClient, RetryPolicy


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_unavailable_is_tried_again_until_the_attempts_are_spent_with_growing_bounded_waits():
    attempts = RetryPolicy(attempts=4, initial_delay=0.1, max_delay=0.3).start()

    delays = [attempts.delay_after(Refused(grpc.StatusCode.UNAVAILABLE)) for _ in range(4)]

    assert delays[3] is None
    assert 0.05 <= delays[0] <= 0.15 and all(0 < d <= 0.3 for d in delays[:3])


def test_a_caller_error_is_never_tried_again():
    attempts = RetryPolicy(attempts=10).start()

    assert attempts.delay_after(Refused(grpc.StatusCode.INVALID_ARGUMENT)) is None


def test_a_spent_time_budget_ends_the_retries_whatever_the_attempts_left():
    attempts = RetryPolicy(attempts=0, total_seconds=1e-9).start()

    assert attempts.delay_after(Refused(grpc.StatusCode.UNAVAILABLE)) is None


def test_the_client_never_shows_its_token():
    client = GeneratorClient("127.0.0.1:9", token="very-secret")
    try:
        assert "very-secret" not in repr(client) and "***" in repr(client)
    finally:
        client.close()
