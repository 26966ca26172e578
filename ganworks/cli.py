"""The `ganworks` command: one entry point that lists the commands and dispatches to the part that owns each.

The command table names modules, imported only when their command runs, so `ganworks --help` is fast
and the services stay independent of each other. Each module has `configure(parser)` and `run(args)`.
Nothing imports this module; what commands share lives in `ganworks.commandline`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ganworks import __version__
from ganworks.errors import GanworksError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("trainer.cli", "train a GAN with Ray DDP workers and publish snapshots to the store"),
    "generator": ("generator_service.cli", "the generator service: `ganworks generator serve`"),
    "generate": ("generator_service.client_cli", "ask a generator service for images (writes a grid PNG or .npz)"),
    "translate": ("generator_service.translate_cli", "translate images with a served translation model (cyclegan), PNG in, PNG out"),
    "evaluator": ("evaluator_service.cli", "the evaluator service: `ganworks evaluator serve | fit-extractor | import-inception`"),
    "evaluate": ("evaluator_service.client_cli", "evaluate a run's snapshot through an evaluator service and print the metrics"),
    "up": ("orchestration.up", "run the whole system locally: Ray trainer, generator, evaluator, one store"),
    "demo": ("orchestration.demo", "train, serve, evaluate for a few minutes on the CPU and show the results"),
    "runs": ("orchestration.runs", "list runs, their snapshots and metrics in a store; one run in detail"),
    "augment": ("orchestration.augment", "write a training set: real data plus generated examples of its rare classes, with a sidecar that rebuilds it"),
    "report": ("orchestration.report", "write a run's report: an HTML page of metric and training curves and every snapshot's grid"),
}


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
    from ganworks.telemetry import redact, setup_logging

    setup_logging(ns.log_level, component=ns.command)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except GanworksError as exc:
        logging.getLogger("ganworks").debug("command failed", exc_info=True)
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
