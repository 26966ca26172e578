"""`ganworks up`: the whole system on this machine until Ctrl-C, with a live status line."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ganworks.commandline import CommandError, add_store_flags, stop_on_sigterm
from orchestration.local import LocalSystem, store_env_from_args, Status, SystemOptions


def add_system_flags(parser: argparse.ArgumentParser, defaults: SystemOptions) -> None:
    add_store_flags(parser)
    parser.add_argument("--run", default=defaults.run, help=f"run id; the same id resumes the run (default {defaults.run})")
    parser.add_argument("--dataset", default=defaults.dataset, help="digits, a .npz file, an image folder or a store URL (default digits)")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help=f"square image size, a power of two 16–128 (default {defaults.image_size})")
    parser.add_argument("--unconditional", action="store_true", help="train without class labels")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help=f"Ray DDP workers (default {defaults.num_workers})")
    parser.add_argument("--snapshot-every", type=int, default=defaults.snapshot_every, help=f"publish a snapshot every N steps (default {defaults.snapshot_every})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"global batch size (default {defaults.batch_size})")
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help=f"generated samples per evaluation (default {defaults.eval_samples})")
    parser.add_argument("--workdir", default=defaults.workdir, help=f"where logs and results go (default {defaults.workdir})")


def options_from_args(args: argparse.Namespace, **extra) -> SystemOptions:
    for flag, value in (("--num-workers", args.num_workers), ("--snapshot-every", args.snapshot_every), ("--batch-size", args.batch_size), ("--eval-samples", args.eval_samples)):
        if value < 1:
            raise CommandError(f"{flag} must be at least 1, got {value}")
    return SystemOptions(
        store=args.store or SystemOptions.store, run=args.run, dataset=args.dataset, image_size=args.image_size, conditional=not args.unconditional,
        num_workers=args.num_workers, snapshot_every=args.snapshot_every, batch_size=args.batch_size, eval_samples=args.eval_samples, workdir=args.workdir, **extra,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    add_system_flags(parser, SystemOptions())
    parser.add_argument("--steps", type=int, default=SystemOptions.steps, help="stop training after this many steps (default: run until Ctrl-C)")


def status_line(status: Status) -> Table:
    def fmt(value, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"step [bold]{fmt(status.step, '.0f')}[/]",
        f"{fmt(status.images_per_second, '.0f')} img/s",
        f"snapshot [bold]{fmt(status.latest_snapshot, 'd')}[/]",
        f"FID {fmt(status.latest_fid, '.3g')} (step {fmt(status.evaluated_step, '.0f')})",
        f"generator {status.generator_qps:.1f} req/s",
        "" if status.trainer_running else "[yellow]trainer stopped[/]",
    )
    return table


def print_addresses(console: Console, system: LocalSystem) -> None:
    table = Table(title="ganworks is up", show_header=False)
    for name, value in system.addresses().items():
        table.add_row(name, value)
    console.print(table)


def run(args: argparse.Namespace) -> int:
    console = Console()
    system = LocalSystem(options_from_args(args, steps=args.steps), env=store_env_from_args(args))
    stop_on_sigterm()
    try:
        with console.status("starting Ray, the trainer, the generator and the evaluator…"):
            system.start()
        print_addresses(console, system)
        with Live(status_line(system.status()), console=console, refresh_per_second=1) as live:
            while True:
                system.check_alive()
                live.update(status_line(system.status()))
                time.sleep(2)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        system.stop()
        console.print("stopped; nothing left running")
