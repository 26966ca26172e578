"""The image's HEALTHCHECK: asks the ganworks server this container runs whether it serves (compose reads it).

A generator or evaluator (`ganworks generator serve`, `ganworks evaluator serve`) is asked over plaintext
grpc.health.v1 on its health port (GANWORKS_<SERVER>_HEALTH_PORT), or on its API port when it has none; the
generator answers SERVING once every configured model is loaded. Any other command (train, ray start,
fit-extractor) has nothing to ask and counts as healthy. Usage: healthcheck.py [CMDLINE_FILE] (default
/proc/1/cmdline, the container's main process).
"""

from __future__ import annotations

import os
import sys

SERVERS = {"generator": ("GANWORKS_GENERATOR_", 50051), "evaluator": ("GANWORKS_EVALUATOR_", 50052)}


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def target(args: list[str], env: dict[str, str]) -> int | None:
    """The port to ask, or None when the command is not a ganworks server."""
    for server, (prefix, default_port) in SERVERS.items():
        if server in args and "serve" in args[args.index(server):]:
            health = int(env.get(prefix + "HEALTH_PORT", "-1"))
            if health >= 0:
                return health
            return int(_flag(args, "--port") or env.get(prefix + "PORT") or default_port)
    return None


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/proc/1/cmdline"
    with open(path, "rb") as file:
        args = [part.decode() for part in file.read().split(b"\0") if part]
    port = target(args, dict(os.environ))
    if port is None:
        return 0
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3).status
    except grpc.RpcError as exc:
        print(f"health check on port {port} failed: {exc.code().name}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"port {port}: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
