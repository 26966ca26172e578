"""The `ganworks` command: one entry point, each command implemented by the part that owns it.

The command table names modules, imported only when their command runs, so `ganworks --help` is fast
and the services stay independent of each other. Each module has `configure(parser)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import Any, Sequence

from ganworks import __version__
from ganworks.errors import GanworksError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("trainer.cli", "train a GAN with Ray DDP workers and publish snapshots to the store"),
    "generator": ("generator_service.cli", "the generator service: `ganworks generator serve`"),
    "generate": ("generator_service.client_cli", "ask a generator service for images (writes a grid PNG or .npz)"),
    "evaluator": ("evaluator_service.cli", "the evaluator service: `ganworks evaluator serve | fit-extractor`"),
    "evaluate": ("evaluator_service.client_cli", "evaluate a run's snapshot through an evaluator service and print the metrics"),
    "up": ("ganworks.system.up", "run the whole system locally: Ray trainer, generator, evaluator, one store"),
    "demo": ("ganworks.system.demo", "train, serve, evaluate for a few minutes on the CPU and show the results"),
    "runs": ("ganworks.system.runs", "list runs, their snapshots and metrics in a store"),
}


class CommandError(GanworksError):
    """A command-line argument is wrong; the message names the flag."""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (Kubernetes, `ganworks up` stopping its children) ends in the same orderly stop as Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument("--store", help="store URL: a folder, file:///path or s3://bucket/prefix (env GANWORKS_STORE; default ./ganworks-store)")
    group.add_argument("--s3-endpoint", help="S3/MinIO endpoint host:port or http(s)://host:port (env GANWORKS_S3_ENDPOINT)")
    group.add_argument("--s3-region", help="S3 region (env GANWORKS_S3_REGION; default us-east-1)")


def store_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"store": args.store, "s3_endpoint": getattr(args, "s3_endpoint", None), "s3_region": getattr(args, "s3_region", None)}


def open_store_from_args(args: argparse.Namespace):
    from ganworks.settings import StoreSettings, load_settings
    from ganworks.store import open_store
    from ganworks.telemetry import register_secrets

    settings = load_settings(StoreSettings, store_overrides(args))
    register_secrets([settings.s3_secret_key])
    return open_store(settings=settings)


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganworks",
        description="Train GANs with Ray DDP, serve their snapshots over gRPC, evaluate them (FID, KID, P/R, ...).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()) + "\n\nRun `ganworks COMMAND --help` for a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"ganworks {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    top = _top_parser()
    ns = top.parse_args(argv)
    if ns.command is None:
        top.print_help()
        return 2
    module_name, text = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"ganworks {ns.command}: not built yet ({module_name} is missing)", file=sys.stderr)
            return 3
        raise
    parser = argparse.ArgumentParser(prog=f"ganworks {ns.command}", description=text)
    module.configure(parser)
    args = parser.parse_args(ns.rest)
    args.log_level = ns.log_level
    from ganworks.telemetry import setup_logging

    setup_logging(ns.log_level, component=ns.command)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except GanworksError as exc:
        logging.getLogger("ganworks").debug("command failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
