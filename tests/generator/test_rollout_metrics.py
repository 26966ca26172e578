"""Request metrics by model and rollout track: a canary's errors and latency can be told from the stable step's."""

from __future__ import annotations

import grpc
import pytest

from ganworks.rollout import CANARY, RolloutPolicy, write_policy
from tests.generator.conftest import publish


def test_calls_are_counted_by_the_model_and_track_that_answered_them(local_store, serve):
    for step in (1, 2):
        publish(local_store, "r", step)
    write_policy(local_store, "r", RolloutPolicy(CANARY, stable=1, candidate=2, fraction=0.3))
    server = serve(local_store, ["r"])
    with server.client(retries=0) as client:
        served = [client.generate("r", 1, seed=seed).version for seed in range(60)]
        pinned = client.generate("r", 1, seed=0, version=1).version
        with pytest.raises(grpc.RpcError) as err:
            client.generate("r", 0)  # refused before it is routed: no model or track to blame
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and pinned == 1 and set(served) == {1, 2}

    def routed(track: str) -> float:
        # /metrics lists labels in name order.
        return server.metric("ganworks_generator_routed_requests_total", code="OK", method="Generate", model="r", track=track)

    assert routed("candidate") == served.count(2) and routed("stable") == served.count(1) and routed("pinned") == 1
    latency = server.metric("ganworks_generator_routed_request_latency_seconds_count", method="Generate", model="r", track="candidate")
    assert latency == served.count(2)
    # The per-method counter still counts every call, the refused one too.
    assert server.metric("ganworks_generator_requests_total", code="OK", method="Generate") == 61
    assert server.metric("ganworks_generator_requests_total", code="INVALID_ARGUMENT", method="Generate") == 1
    assert "track=" not in "".join(line for line in server.metrics_text().splitlines() if 'code="INVALID_ARGUMENT"' in line and "routed" in line)
