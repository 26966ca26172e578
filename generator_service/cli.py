"""`ganworks generator serve | promote | rollback`: runs the service until SIGTERM/SIGINT; changes a run's rollout policy."""

from __future__ import annotations

import argparse
import asyncio

from ganworks.commandline import CommandError, add_store_flags, open_store_from_args, read_token_file
from ganworks.grpcauth import add_server_security_flags
from ganworks.rpc import serve_until_signalled
from ganworks.settings import load_settings
from generator_service.settings import ENV_PREFIX, GeneratorSettings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the snapshots of one or more runs over gRPC")
    add_store_flags(serve)
    serve.add_argument("--runs", help="comma-separated run ids to serve (env GANWORKS_GENERATOR_RUNS)")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="gRPC port, 0 picks a free one (default 50051)")
    serve.add_argument("--metrics-port", type=int, help="/metrics port, 0 picks a free one, -1 turns it off (default 9311)")
    serve.add_argument("--rest-port", type=int, help="port of the Open Inference Protocol over HTTP/REST (KServe v2), 0 picks a free one, -1 turns it off (default -1)")
    serve.add_argument("--max-batch-size", type=int, help="most samples in one model call (default 64)")
    serve.add_argument("--max-queue-delay-ms", type=float, help="longest wait for a batch to fill, from its first request (default 5)")
    serve.add_argument("--max-queue-size", type=int, help="most samples waiting; more get RESOURCE_EXHAUSTED (default 1024)")
    serve.add_argument("--max-samples-per-request", type=int, help="most samples one call may ask for (default 1024)")
    serve.add_argument("--keep-versions", type=int, help="snapshots kept loaded per run for pinned calls (default 3)")
    serve.add_argument("--max-reloads-per-minute", type=int, help="loads of not-loaded versions for pinned calls, per model and minute (default 6)")
    serve.add_argument("--poll-seconds", type=float, help="how often LATEST is checked (default 2)")
    serve.add_argument("--device", help="auto, cpu, cuda, cuda:N (default auto)")
    serve.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: torch's choice)")
    serve.add_argument("--no-fast-path", dest="fast_path", action="store_const", const=False, help="serve the eager model instead of the fastest form that draws the same pixels (env GANWORKS_GENERATOR_FAST_PATH=false)")
    serve.add_argument("--grace-seconds", type=float, help="time in-flight calls get to finish on SIGTERM (default 20)")
    add_server_security_flags(serve, ENV_PREFIX)
    promote = sub.add_parser("promote", help="serve STEP of RUN to every replica (or, with --canary F, to a fraction F of unpinned calls)")
    add_store_flags(promote)
    promote.add_argument("run", help="run id")
    promote.add_argument("step", type=int, help="published snapshot step to promote")
    promote.add_argument("--canary", type=float, help="fraction in (0, 1) of unpinned calls (chosen by seed) that get STEP; the rest keep the stable step")
    rollback = sub.add_parser("rollback", help="go back to the previous verified stable step of RUN (ends a canary)")
    add_store_flags(rollback)
    rollback.add_argument("run", help="run id")


def run(args: argparse.Namespace) -> int:
    if args.action in ("promote", "rollback"):
        from generator_service.rollout_cli import change_policy

        print(change_policy(open_store_from_args(args), args.action, args.run, getattr(args, "step", None), getattr(args, "canary", None)))
        return 0
    if args.action != "serve":
        raise CommandError("say what to do: `ganworks generator serve --runs R --store URL`, `promote RUN STEP [--canary F]` or `rollback RUN` (see --help)")
    overrides = {
        "runs": [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None,
        "host": args.host, "port": args.port, "metrics_port": args.metrics_port, "rest_port": args.rest_port,
        "max_batch_size": args.max_batch_size, "max_queue_delay_ms": args.max_queue_delay_ms, "max_queue_size": args.max_queue_size,
        "max_samples_per_request": args.max_samples_per_request, "keep_versions": args.keep_versions, "max_reloads_per_minute": args.max_reloads_per_minute, "poll_seconds": args.poll_seconds,
        "device": args.device, "torch_threads": args.torch_threads, "fast_path": args.fast_path, "grace_seconds": args.grace_seconds,
        "auth_token": read_token_file("--auth-token-file", args.auth_token_file), "tls_cert": args.tls_cert, "tls_key": args.tls_key,
    }
    settings = load_settings(GeneratorSettings, overrides, prefix=ENV_PREFIX)
    if not settings.runs:
        raise CommandError("--runs is required: the run ids whose snapshots to serve (or env GANWORKS_GENERATOR_RUNS)")
    store = open_store_from_args(args)
    asyncio.run(_serve(settings, store))
    return 0


async def _serve(settings: GeneratorSettings, store) -> None:
    from generator_service.server import GeneratorServer

    await serve_until_signalled(GeneratorServer(settings, store), "generator", settings.host)
